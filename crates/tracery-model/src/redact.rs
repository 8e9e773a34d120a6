//! Redaction on the node: values whose variable, field, key, column or header name looks
//! secret are replaced by [`Value::Redacted`] before a snapshot, a held message or a
//! database row leaves the process that captured it.
//!
//! Names match by words, not substrings. A name is split into lowercase words at `_`,
//! `-`, `.`, spaces, camelCase humps and letter/digit edges (`userPassword` → `user
//! password`, `X-API-Key` → `x api key`, `cvv2` → `cvv 2`). A rule of one or more words
//! (`token`, `api_key`) matches when those words follow one another in the name, where:
//! - the first may be the end of a longer word (`accesstoken`, `userpassword`), so names
//!   run together in lowercase still match;
//! - the last may carry a plural `s` (`tokens`, `cookies`);
//! - a one-word name may also be the rule's words run together (`cardnumber`, `apikey`).
//!
//! So `token` redacts `AuthToken`, `x-auth-token`, `csrftoken` and `tokens`, but not
//! `tokenizer_count`. A false positive costs a hidden value and a false negative leaks one,
//! so the suffix rule leans toward hiding.
//!
//! `--when` conditions are evaluated on the node, on the raw values (kernel and agent):
//! only what leaves the node is redacted.

mod json;
pub mod message;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use serde::Deserialize;

use crate::snapshot::Snapshot;
use crate::value::{Value, Variable};

/// Rules on unless `[redaction] defaults = false`: names that commonly hold credentials
/// or card and identity numbers.
pub const DEFAULT_RULES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "card_number",
    "cvv",
    "ssn",
];

/// The `[redaction]` section of `tracery.toml`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedactionConfig {
    /// Rules added to the defaults (`["iban", "private_key"]`).
    #[serde(default)]
    pub rules: Vec<String>,
    /// `false` turns the default rules off; absent or `true` keeps them.
    pub defaults: Option<bool>,
}

/// A rule that names no word.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("[redaction] rule {rule:?} has no letters or digits; give a name such as \"iban\" or \"private_key\"")]
pub struct RuleError {
    /// The rule as written.
    pub rule: String,
}

/// One rule: its text (what a redacted value shows) and its words.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    label: String,
    words: Vec<String>,
    joined: String,
}

impl Rule {
    fn new(text: &str) -> Result<Self, RuleError> {
        let words = words(text);
        if words.is_empty() {
            return Err(RuleError { rule: text.into() });
        }
        Ok(Self {
            label: text.trim().to_lowercase(),
            joined: words.concat(),
            words,
        })
    }

    fn matches(&self, name: &[String]) -> bool {
        let tail = |w: &str, r: &str| {
            w.ends_with(r) || w.strip_suffix('s').is_some_and(|w| w.ends_with(r))
        };
        if name.iter().any(|w| tail(w, &self.joined)) {
            return true;
        }
        let n = self.words.len();
        let last = &self.words[n - 1];
        n > 1
            && name.windows(n).any(|win| {
                win[0].ends_with(&self.words[0])
                    && win[1..n - 1] == self.words[1..n - 1]
                    && (&win[n - 1] == last || win[n - 1].strip_suffix('s') == Some(last))
            })
    }
}

/// The rules in force: which names are secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redaction {
    rules: Vec<Rule>,
}

impl Default for Redaction {
    /// The default rules.
    fn default() -> Self {
        Self::from_config(&RedactionConfig::default()).expect("default rules are valid")
    }
}

impl Redaction {
    /// The rules `config` asks for: the defaults (unless turned off) and its own.
    pub fn from_config(config: &RedactionConfig) -> Result<Self, RuleError> {
        let defaults = if config.defaults.unwrap_or(true) {
            DEFAULT_RULES
        } else {
            &[]
        };
        let rules = defaults
            .iter()
            .copied()
            .chain(config.rules.iter().map(String::as_str))
            .map(Rule::new)
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// No rules at all: nothing is redacted.
    pub fn none() -> Self {
        Self { rules: Vec::new() }
    }

    /// The rules' texts, for `status` and logs.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.label.as_str())
    }

    /// The rule `name` matches, if any.
    pub fn rule_for(&self, name: &str) -> Option<&str> {
        if self.rules.is_empty() {
            return None;
        }
        let w = words(name);
        self.rules
            .iter()
            .find(|r| r.matches(&w))
            .map(|r| r.label.as_str())
    }

    /// Redacts every variable, field and map entry of a snapshot, and its database rows.
    pub fn snapshot(&self, s: &mut Snapshot) {
        self.variables(&mut s.variables);
        for db in &mut s.databases {
            for row in &mut db.rows {
                self.json(row);
            }
        }
    }

    /// Redacts variables whose name matches, and matching fields at any depth.
    pub fn variables(&self, vars: &mut [Variable]) {
        for v in vars {
            match self.rule_for(&v.name) {
                Some(rule) => v.value = Value::redacted(rule),
                None => self.value(&mut v.value),
            }
        }
    }

    /// Redacts the fields, variant fields and string-keyed map entries of `v` that match.
    pub fn value(&self, v: &mut Value) {
        match v {
            Value::Struct { fields, .. } | Value::Enum { fields, .. } => {
                for (name, field) in fields {
                    match self.rule_for(name) {
                        Some(rule) => *field = Value::redacted(rule),
                        None => self.value(field),
                    }
                }
            }
            Value::Array { items, .. } => {
                for item in items {
                    if !self.map_entry(item) {
                        self.value(item);
                    }
                }
            }
            Value::Pointer {
                target: Some(t), ..
            } => self.value(t),
            Value::Interface { value: Some(i), .. } => self.value(i),
            _ => {}
        }
    }

    /// A map entry (`{key, value}` with a string key) whose key matches: its value is
    /// redacted and true returned.
    fn map_entry(&self, item: &mut Value) -> bool {
        let Value::Struct { fields, .. } = item else {
            return false;
        };
        let key = fields.iter().find_map(|(n, v)| match (n.as_str(), v) {
            ("key" | "k", Value::Str { text, .. }) => Some(text.as_str()),
            _ => None,
        });
        let Some(rule) = key.and_then(|k| self.rule_for(k)).map(str::to_owned) else {
            return false;
        };
        for (n, v) in fields.iter_mut() {
            if n == "value" || n == "v" {
                *v = Value::redacted(&rule);
            }
        }
        true
    }

    /// Redacts JSON rows: object members whose key matches, at any depth, and
    /// `{"field"|"key": NAME, "value": V}` pairs whose NAME matches (Redis hashes).
    pub fn json(&self, j: &mut serde_json::Value) {
        json::redact(self, j);
    }

    /// Redacts a held message's decoded preview; returns the raw texts removed, for
    /// [`message::scrub`] to take out of its undecoded first line.
    pub fn message(&self, m: &mut crate::wire::DecodedMessage) -> Vec<String> {
        message::redact(self, m)
    }
}

impl Value {
    /// A value hidden by the redaction rule `rule`.
    pub fn redacted(rule: &str) -> Self {
        Value::Redacted { rule: rule.into() }
    }
}

/// The JSON a redacted value shows: `{"redacted": RULE}`.
pub fn redacted_json(rule: &str) -> serde_json::Value {
    serde_json::json!({ "redacted": rule })
}

static ACTIVE: OnceLock<Redaction> = OnceLock::new();

/// Sets this process's rules, once, at start-up (from `[redaction]`). One process-wide
/// set because every path out of the node (hits, `trace eval`, held messages, database
/// rows) must apply the same rules, including paths built without the config at hand.
/// Returns false when rules were already in force.
pub fn install(rules: Redaction) -> bool {
    ACTIVE.set(rules).is_ok()
}

/// The rules in force: those installed, or the defaults, so a process that never read a
/// config still redacts.
pub fn active() -> &'static Redaction {
    ACTIVE.get_or_init(Redaction::default)
}

/// Lowercase words of a name: split at non-alphanumerics, camelCase humps
/// (`HTTPHeader` → `http header`) and letter/digit edges.
pub fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some(&p) = i.checked_sub(1).map(|j| &chars[j]) {
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let hump = c.is_uppercase()
                && (p.is_lowercase() || p.is_ascii_digit() || (p.is_uppercase() && next_lower));
            let digit_edge = p.is_alphanumeric() && (p.is_ascii_digit() != c.is_ascii_digit());
            if (hump || digit_edge) && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
