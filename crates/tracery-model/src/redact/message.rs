//! Redaction of held messages' previews, by the names their protocol gives values:
//! - HTTP: header values (`Authorization`, `Cookie`, `X-Api-Key`), query and form
//!   parameters, and members of a JSON body (scanned as text: the body is often cut);
//! - Redis: the argument after a matching name (`HSET k password V`,
//!   `SET session:token:1 V`), `AUTH`'s and `HELLO .. AUTH`'s credentials, JSON inside
//!   arguments;
//! - PostgreSQL: SQL literals and `Bind` parameters compared with or inserted into a
//!   matching column (`password_hash = $2`, `INSERT INTO t (name, token) VALUES ($1, $2)`),
//!   when the `Parse` of the bound statement is in the same preview.
//!
//! Each function returns the raw texts it removed, so [`scrub`] can take them out of the
//! message's undecoded first line too.

use super::Redaction;
use crate::wire::{DecodedMessage, HttpMessage, PgMessage, WireContent};

mod sql;

/// The text a redacted part of a message shows.
pub fn marker(rule: &str) -> String {
    format!("<redacted: {rule}>")
}

/// Redacts `m` in place; returns the raw texts removed.
pub fn redact(r: &Redaction, m: &mut DecodedMessage) -> Vec<String> {
    let mut removed = Vec::new();
    match &mut m.content {
        WireContent::Http(h) => http(r, h, &mut removed),
        WireContent::Redis(cmds) => {
            for c in cmds {
                redis(r, c, &mut removed);
            }
        }
        WireContent::Postgres(msgs) => postgres(r, msgs, &mut removed),
        // No names to go by; `scrub` still removes what other parts showed.
        WireContent::Raw { .. } => {}
    }
    removed.retain(|s| !s.is_empty());
    removed
}

/// `text` with every removed secret replaced, and a trailing cut start of one (a preview
/// that ends inside a secret) dropped.
pub fn scrub(text: &str, removed: &[String]) -> String {
    let mut out = text.to_owned();
    for s in removed {
        out = out.replace(s.as_str(), "<redacted>");
    }
    for s in removed {
        let cut = (1..s.len())
            .rev()
            .filter(|&n| s.is_char_boundary(n))
            .find(|&n| out.ends_with(&s[..n]) && n >= 3.min(s.len()));
        if let Some(n) = cut {
            out.truncate(out.len() - n);
            out.push_str("<redacted>");
            break;
        }
    }
    out
}

fn http(r: &Redaction, h: &mut HttpMessage, removed: &mut Vec<String>) {
    for (name, value) in &mut h.headers {
        if let Some(rule) = r.rule_for(name) {
            removed.push(std::mem::replace(value, marker(rule)));
        } else if name.eq_ignore_ascii_case("content-type") {
            continue;
        } else {
            *value = pairs(r, value, ';', removed);
        }
    }
    if let Some((path, query)) = h.path.split_once('?') {
        h.path = format!("{path}?{}", pairs(r, query, '&', removed));
    }
    let form = h.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("content-type") && v.contains("x-www-form-urlencoded")
    });
    h.body = if form {
        pairs(r, &h.body, '&', removed)
    } else {
        json_text(r, &h.body, removed)
    };
}

/// `k=v` pairs split by `sep` (query strings, forms, cookies in other headers).
fn pairs(r: &Redaction, text: &str, sep: char, removed: &mut Vec<String>) -> String {
    text.split(sep)
        .map(|part| match part.split_once('=') {
            Some((k, v)) => match r.rule_for(k) {
                Some(rule) => {
                    removed.push(v.to_owned());
                    format!("{k}={}", marker(rule))
                }
                None => part.to_owned(),
            },
            None => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(&sep.to_string())
}

fn redis(r: &Redaction, args: &mut [String], removed: &mut Vec<String>) {
    let cmd = args
        .first()
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    let hide = |a: &mut String, rule: &str, removed: &mut Vec<String>| {
        removed.push(std::mem::replace(a, marker(rule)));
    };
    // Credentials carry no field name: hidden under the `password` rule when it is on.
    if let Some(rule) = r.rule_for("password") {
        let from = match cmd.as_str() {
            "AUTH" => Some(1),
            "HELLO" => args
                .iter()
                .position(|a| a.eq_ignore_ascii_case("AUTH"))
                .map(|i| i + 1),
            _ => None,
        };
        if let Some(from) = from {
            for a in args.iter_mut().skip(from) {
                hide(a, rule, removed);
            }
            return;
        }
    }
    let mut i = 1;
    while i < args.len() {
        if let (Some(rule), true) = (r.rule_for(&args[i]), i + 1 < args.len()) {
            hide(&mut args[i + 1], rule, removed);
            i += 2;
            continue;
        }
        args[i] = json_text(r, &args[i], removed);
        i += 1;
    }
}

fn postgres(r: &Redaction, msgs: &mut [PgMessage], removed: &mut Vec<String>) {
    // Each statement's parameter columns, from its Parse in this preview.
    let mut columns: Vec<(String, Vec<Option<String>>)> = Vec::new();
    for m in msgs {
        match m.kind.as_str() {
            "Query" => m.sql = sql::redact_literals(r, &m.sql, removed),
            "Parse" => {
                let cols = sql::param_columns(&m.sql);
                m.sql = sql::redact_literals(r, &m.sql, removed);
                columns.retain(|(s, _)| *s != m.statement);
                columns.push((m.statement.clone(), cols));
            }
            "Bind" => {
                let Some((_, cols)) = columns.iter().find(|(s, _)| *s == m.statement) else {
                    continue;
                };
                for (i, p) in m.params.iter_mut().enumerate() {
                    let rule = cols.get(i).cloned().flatten().and_then(|c| r.rule_for(&c));
                    if let (Some(rule), Some(v)) = (rule, p.as_mut()) {
                        removed.push(std::mem::replace(v, marker(rule)));
                    }
                }
            }
            _ => {}
        }
    }
}

/// JSON text, possibly cut: members whose key matches get `"<redacted: RULE>"` as value.
pub fn json_text(r: &Redaction, text: &str, removed: &mut Vec<String>) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let key_end = string_end(b, i);
        let key = &text[i + 1..key_end.saturating_sub(1).max(i + 1)];
        let mut j = key_end;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= b.len() || b[j] != b':' {
            i = key_end;
            continue;
        }
        j += 1;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let Some(rule) = r.rule_for(key) else {
            i = j;
            continue;
        };
        let end = value_end(b, j);
        let raw = &text[j..end];
        removed.push(raw.trim_matches('"').to_owned());
        out.push_str(&text[copied..j]);
        out.push_str(&format!("\"{}\"", marker(rule)));
        copied = end;
        i = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// End (exclusive) of the JSON string starting at `b[start] == '"'`, or the text's end.
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// End (exclusive) of the JSON value at `start`: a string, a balanced object or array,
/// or a scalar; the text's end when it is cut.
fn value_end(b: &[u8], start: usize) -> usize {
    match b.get(start) {
        Some(b'"') => string_end(b, start),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = start;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        _ => (start..b.len())
            .find(|&i| matches!(b[i], b',' | b'}' | b']') || b[i].is_ascii_whitespace())
            .unwrap_or(b.len()),
    }
}
