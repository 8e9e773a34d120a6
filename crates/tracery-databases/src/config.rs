//! Named databases: `NAME=URL` from `--database`, `[databases.NAME]` from tracery.toml, and
//! URLs whose password never shows in any output.

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

use serde::Deserialize;

/// Which client reads a database, taken from its URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `redis://` or `rediss://` (TLS).
    Redis,
    /// `mongodb://` or `mongodb+srv://`.
    Mongodb,
}

impl DatabaseKind {
    /// The kind a URL scheme names, or `None` for a scheme Tracery cannot read.
    pub fn from_scheme(scheme: &str) -> Option<Self> {
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "redis" => Some(Self::Redis),
            "mongodb" | "mongodb+srv" => Some(Self::Mongodb),
            _ => None,
        }
    }

    /// The lower-case name used in output and JSON (`postgres`, `redis`, `mongodb`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Mongodb => "mongodb",
        }
    }
}

impl fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A database named once, by `--database NAME=URL` or `[databases.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// The name capture queries use (`shop` in `shop: SELECT ...`).
    pub name: String,
    /// Where it is; Debug and Display show it with the password replaced.
    pub url: DatabaseUrl,
}

impl DatabaseConfig {
    /// A named database from a URL, checking the name and the URL's scheme.
    pub fn new(name: &str, url: &str) -> Result<Self, ConfigError> {
        check_name(name)?;
        let url = DatabaseUrl::parse(url).map_err(|source| ConfigError::Url {
            name: name.to_owned(),
            source,
        })?;
        Ok(Self {
            name: name.to_owned(),
            url,
        })
    }

    /// Parses the `--database` flag's `NAME=URL`.
    pub fn parse_flag(flag: &str) -> Result<Self, ConfigError> {
        let Some((name, url)) = flag.split_once('=') else {
            return Err(ConfigError::FlagWithoutName {
                flag: redact_url_text(flag),
            });
        };
        Self::new(name.trim(), url.trim())
    }

    /// Which client reads this database.
    pub fn kind(&self) -> DatabaseKind {
        self.url.kind()
    }
}

impl FromStr for DatabaseConfig {
    type Err = ConfigError;

    fn from_str(flag: &str) -> Result<Self, Self::Err> {
        Self::parse_flag(flag)
    }
}

impl fmt::Display for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.url)
    }
}

/// A database URL. Holds the password; every way to print it shows `***` instead.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    text: String,
    kind: DatabaseKind,
    /// The password as written and percent-decoded, to scrub from driver messages.
    secrets: Vec<String>,
}

impl DatabaseUrl {
    /// Checks a URL's scheme and shape; the password stays inside.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(UrlError::NoScheme {
                url: redact_url_text(text),
            });
        };
        let kind = DatabaseKind::from_scheme(scheme).ok_or_else(|| UrlError::UnknownScheme {
            scheme: scheme.to_owned(),
        })?;
        let authority = authority(rest);
        let host = match authority.rfind('@') {
            Some(at) => &authority[at + 1..],
            None => authority,
        };
        // PostgreSQL may name its host in `?host=/socket/dir` instead.
        if host.is_empty() && !(kind == DatabaseKind::Postgres && rest.contains("host=")) {
            return Err(UrlError::NoHost {
                url: redact_url_text(text),
            });
        }
        let mut secrets = Vec::new();
        if let Some(password) = url_password(text) {
            secrets.push(password.to_owned());
            let decoded = percent_decode(password);
            if decoded != password {
                secrets.push(decoded);
            }
        }
        secrets.retain(|s| !s.is_empty());
        Ok(Self {
            text: text.to_owned(),
            kind,
            secrets,
        })
    }

    /// Which client reads this URL.
    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// The URL with its password replaced by `***`: safe to print, log or store.
    pub fn redacted(&self) -> String {
        redact_url_text(&self.text)
    }

    /// The URL with its password, for the database client only. Never print it.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// `message` with this URL's password (as written or percent-decoded) replaced by `***`.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.replace(&self.text, &self.redacted());
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The part of a URL (after `scheme://`) that holds user, password and hosts.
fn authority(rest: &str) -> &str {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// The password in `scheme://user:password@host` or in a `password=` query parameter.
fn url_password(text: &str) -> Option<&str> {
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = authority(rest);
    if let Some(at) = authority.rfind('@') {
        if let Some((_, password)) = authority[..at].split_once(':') {
            return Some(password);
        }
    }
    let query = rest.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("password="))
}

/// Replaces the password of any URL-looking text (and a `password=` parameter) with `***`.
pub fn redact_url_text(text: &str) -> String {
    let (prefix, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), text),
    };
    let auth = authority(rest);
    let after = &rest[auth.len()..];
    let auth = match auth.rfind('@') {
        Some(at) => match auth[..at].split_once(':') {
            Some((user, _)) => format!("{user}:***{}", &auth[at..]),
            None => auth.to_owned(),
        },
        None => auth.to_owned(),
    };
    let after = match after.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => after.to_owned(),
    };
    format!("{prefix}{auth}{after}")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::BadName {
            name: name.to_owned(),
        })
    }
}

/// One `[databases.NAME]` table of tracery.toml: `url`, or `url_env` naming an environment
/// variable that holds it (so a secret stays out of the file).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseEntry {
    /// The URL itself.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable that holds the URL.
    #[serde(default)]
    pub url_env: Option<String>,
}

impl fmt::Debug for DatabaseEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseEntry")
            .field("url", &self.url.as_deref().map(redact_url_text))
            .field("url_env", &self.url_env)
            .finish()
    }
}

impl DatabaseEntry {
    /// The database this table names, reading `url_env` from the environment.
    pub fn resolve(&self, name: &str) -> Result<DatabaseConfig, ConfigError> {
        self.resolve_with(name, |var| std::env::var(var).ok())
    }

    /// Like [`DatabaseEntry::resolve`], with the environment given as a lookup (for tests).
    pub fn resolve_with(
        &self,
        name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<DatabaseConfig, ConfigError> {
        match (&self.url, &self.url_env) {
            (Some(url), None) => DatabaseConfig::new(name, url),
            (None, Some(var)) => match env(var) {
                Some(url) => DatabaseConfig::new(name, &url),
                None => Err(ConfigError::MissingEnv {
                    name: name.to_owned(),
                    var: var.clone(),
                }),
            },
            (Some(_), Some(_)) => Err(ConfigError::BothUrlAndEnv {
                name: name.to_owned(),
            }),
            (None, None) => Err(ConfigError::NoUrl {
                name: name.to_owned(),
            }),
        }
    }
}

/// The `[databases]` section of tracery.toml: name to table.
pub type DatabasesSection = BTreeMap<String, DatabaseEntry>;

/// Resolves a `[databases]` section and `--database` flags (a flag replaces the table of
/// the same name) into one list, sorted by name.
pub fn resolve_databases(
    section: &DatabasesSection,
    flags: &[String],
) -> Result<Vec<DatabaseConfig>, ConfigError> {
    let mut all = BTreeMap::new();
    for (name, entry) in section {
        all.insert(name.clone(), entry.resolve(name)?);
    }
    for flag in flags {
        let config = DatabaseConfig::parse_flag(flag)?;
        all.insert(config.name.clone(), config);
    }
    Ok(all.into_values().collect())
}

/// Limits on one capture read; each has a default and a config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureLimits {
    /// How long a database's whole read may take, in milliseconds (default 2000). Sets
    /// PostgreSQL's `statement_timeout` and bounds every kind on the client side.
    pub statement_timeout_ms: u64,
    /// Rows kept per query (default 100); more sets `truncated`.
    pub max_rows: usize,
    /// JSON bytes kept per query result (default 256 KiB); more sets `truncated`.
    pub max_result_bytes: usize,
}

impl CaptureLimits {
    /// The statement timeout as a duration.
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }
}

impl Default for CaptureLimits {
    fn default() -> Self {
        Self {
            statement_timeout_ms: 2000,
            max_rows: 100,
            max_result_bytes: 256 * 1024,
        }
    }
}

/// Why a database URL is not usable.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// No `scheme://`.
    #[error("`{url}` has no scheme; write postgres://, redis:// or mongodb://")]
    NoScheme {
        /// The URL, redacted.
        url: String,
    },
    /// A scheme no client here reads.
    #[error(
        "unknown database scheme `{scheme}://`; use postgres://, postgresql://, redis://, \
         mongodb:// or mongodb+srv://"
    )]
    UnknownScheme {
        /// The scheme as written.
        scheme: String,
    },
    /// No host after `scheme://`.
    #[error("`{url}` names no host; write scheme://[user[:password]@]host[:port]/...")]
    NoHost {
        /// The URL, redacted.
        url: String,
    },
}

/// Why a database cannot be named as configured.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--database` without `NAME=`.
    #[error(
        "`--database {flag}` has no name; write --database NAME=URL, e.g. shop=postgres://host/db"
    )]
    FlagWithoutName {
        /// The flag's value, redacted.
        flag: String,
    },
    /// A name capture queries could not use.
    #[error("database name `{name}` must be non-empty letters, digits, `_` or `-`")]
    BadName {
        /// The name as written.
        name: String,
    },
    /// A bad URL.
    #[error("database `{name}`: bad URL")]
    Url {
        /// The database's name.
        name: String,
        /// What is wrong with it.
        #[source]
        source: UrlError,
    },
    /// `url_env` names an unset variable.
    #[error(
        "database `{name}`: environment variable {var} (its url_env) is not set; \
         export it or write url = \"...\""
    )]
    MissingEnv {
        /// The database's name.
        name: String,
        /// The variable's name.
        var: String,
    },
    /// Both `url` and `url_env`.
    #[error("[databases.{name}] has both url and url_env; keep one")]
    BothUrlAndEnv {
        /// The database's name.
        name: String,
    },
    /// Neither `url` nor `url_env`.
    #[error("[databases.{name}] has no url; add url = \"...\" or url_env = \"VAR\"")]
    NoUrl {
        /// The database's name.
        name: String,
    },
}
