//! Values bound to capture placeholders, resolved by the caller from the captured values.

use serde::Serialize;

/// One placeholder's value. The caller resolves each `{path}` against the hit's value tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Param {
    /// A null pointer or a missing optional value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too large for `Int`, or from an unsigned source type.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Text(String),
    /// Raw bytes (a byte array or a non-UTF-8 string); JSON shows them as `\x` hex.
    #[serde(serialize_with = "serialize_hex")]
    Bytes(Vec<u8>),
}

impl Param {
    /// The value as PostgreSQL's text input takes it, or `None` for `Null`.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Self::Null => None,
            Self::Bool(b) => Some(b.to_string()),
            Self::Int(i) => Some(i.to_string()),
            Self::UInt(u) => Some(u.to_string()),
            Self::Float(f) if f.is_nan() => Some("NaN".into()),
            Self::Float(f) if f.is_infinite() => {
                Some(if *f > 0.0 { "Infinity" } else { "-Infinity" }.into())
            }
            Self::Float(f) => Some(f.to_string()),
            Self::Text(s) => Some(s.clone()),
            Self::Bytes(b) => Some(hex(b)),
        }
    }

    /// A short name of the variant for error messages (`an integer`, `a string`, ...).
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Int(_) | Self::UInt(_) => "an integer",
            Self::Float(_) => "a float",
            Self::Text(_) => "a string",
            Self::Bytes(_) => "bytes",
        }
    }
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Param {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<bool> for Param {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<f64> for Param {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

/// `\x0102ff`: PostgreSQL's bytea text form, used for bytes in JSON everywhere here.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn serialize_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(bytes))
}
