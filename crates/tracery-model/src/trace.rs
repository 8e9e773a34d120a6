//! Trace ids and header matches: the checks that CLI, controller and agents share, so a
//! trace id or a header means the same everywhere, and the one hex form they print.

use std::fmt;

use thiserror::Error;

/// Longest a request may stay frozen, in seconds: a forgotten freeze must not hold a
/// production request for long. The agent's `freeze::MAX_FREEZE` is the same limit.
pub const MAX_FREEZE_SECONDS: u64 = 600;
/// How long a request stays frozen when `--freeze-timeout` is not given.
pub const DEFAULT_FREEZE_SECONDS: u64 = 60;

/// A trace id or header the user gave that cannot scope a breakpoint.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeError {
    /// Not 32 (or 16) hex digits.
    #[error("{text:?} is not a trace id: expected 32 hex digits (or 16 for a B3 64-bit id)")]
    TraceIdSyntax {
        /// What was given.
        text: String,
    },
    /// All zero, which W3C trace context declares invalid.
    #[error("the all-zero trace id is invalid (W3C trace context); pass the id of a real request")]
    TraceIdZero,
    /// No `=` between name and value.
    #[error("--header {text:?} is not NAME=VALUE, e.g. --header x-tenant=acme")]
    HeaderSyntax {
        /// What was given.
        text: String,
    },
    /// The name is not an HTTP token.
    #[error(
        "--header name {name:?} is not an HTTP header name: use letters, digits and !#$%&'*+-.^_`|~"
    )]
    HeaderName {
        /// The name given.
        name: String,
    },
    /// The value is empty.
    #[error("--header {name}= has no value; give the value the request carries")]
    HeaderValue {
        /// The name given.
        name: String,
    },
}

/// The 16 bytes of a trace id given as 32 hex digits, or 16 (a B3 64-bit id, left-padded
/// with zeros); surrounding blanks are ignored, case is not significant.
pub fn parse_trace_id(text: &str) -> Result<[u8; 16], ScopeError> {
    let s = text.trim();
    if !(s.len() == 32 || s.len() == 16) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ScopeError::TraceIdSyntax { text: s.to_owned() });
    }
    let mut id = [0u8; 16];
    let start = 16 - s.len() / 2;
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        id[start + i] = (hex_digit(pair[0]) << 4) | hex_digit(pair[1]);
    }
    if id == [0; 16] {
        return Err(ScopeError::TraceIdZero);
    }
    Ok(id)
}

/// A trace id in the form the wire and the store use: 32 lowercase hex digits.
pub fn normalize_trace_id(text: &str) -> Result<String, ScopeError> {
    Ok(hex(&parse_trace_id(text)?))
}

fn hex_digit(b: u8) -> u8 {
    // Only called on checked hex digits, so the fallback never happens.
    char::from(b).to_digit(16).map_or(0, |d| d as u8)
}

/// Checks a header match: the name is an HTTP token (RFC 9110), the value is not empty.
pub fn check_header(name: &str, value: &str) -> Result<(), ScopeError> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(tchar) {
        return Err(ScopeError::HeaderName {
            name: name.to_owned(),
        });
    }
    if value.is_empty() {
        return Err(ScopeError::HeaderValue {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Lowercase hex of an id's bytes, as the wire, the store and the CLI show trace and
/// span ids.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A trace or span id as the kernel reports it; `None` when all zero (no request known).
pub fn hex_id(bytes: &[u8]) -> Option<String> {
    bytes.iter().any(|b| *b != 0).then(|| hex(bytes))
}

/// A W3C trace id (16 bytes; B3 64-bit ids are left-padded with zeros).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    /// Parses 32 (or 16, B3 short form) hex digits; all-zero ids are invalid (W3C).
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        parse_trace_id(s).map(Self)
    }

    /// The id as the kernel reports it, `None` when all zero (no trace known).
    pub fn from_kernel(raw: [u8; 16]) -> Option<Self> {
        (raw != [0; 16]).then_some(Self(raw))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_normalize_and_bad_ones_say_why() {
        assert_eq!(
            normalize_trace_id(" 4BF92F3577B34DA6A3CE929D0E0E4736 ").unwrap(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            normalize_trace_id("a3ce929d0e0e4736").unwrap(),
            "0000000000000000a3ce929d0e0e4736"
        );
        assert!(matches!(
            parse_trace_id("xyz"),
            Err(ScopeError::TraceIdSyntax { .. })
        ));
        assert!(matches!(
            parse_trace_id(&"0".repeat(32)),
            Err(ScopeError::TraceIdZero)
        ));
        assert!(parse_trace_id(&"g".repeat(32)).is_err());
    }

    #[test]
    fn ids_print_as_lowercase_hex_and_zero_is_unknown() {
        let id = TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let short = TraceId::parse("a3ce929d0e0e4736").unwrap();
        assert_eq!(short.to_string(), "0000000000000000a3ce929d0e0e4736");
        assert_eq!(hex_id(&[0; 8]), None);
        assert_eq!(hex_id(&[0, 0xab]).as_deref(), Some("00ab"));
        assert_eq!(TraceId::from_kernel([0; 16]), None);
    }
}
