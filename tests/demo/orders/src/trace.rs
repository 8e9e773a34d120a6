//! W3C trace context (`traceparent: 00-<trace id>-<parent id>-<flags>`).

use std::fmt;

use axum::http::HeaderMap;

/// A parsed `traceparent` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: the caller's span.
    pub span_id: String,
    pub flags: String,
}

impl TraceParent {
    /// The request's `traceparent`, if present and well formed.
    pub fn from_headers(h: &HeaderMap) -> Option<Self> {
        Self::parse(h.get("traceparent")?.to_str().ok()?)
    }

    /// Parses version 00 of the header.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('-');
        let (v, t, p, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |x: &str, n: usize| x.len() == n && x.bytes().all(|b| b.is_ascii_hexdigit());
        if v != "00" || !hex(t, 32) || !hex(p, 16) || !hex(f, 2) || parts.next().is_some() {
            return None;
        }
        Some(Self {
            trace_id: t.to_ascii_lowercase(),
            span_id: p.to_ascii_lowercase(),
            flags: f.to_ascii_lowercase(),
        })
    }

    /// The header for an outgoing call: same trace, a new span id for this hop.
    pub fn child(&self) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // Unique enough for a demo: time mixed with the parent span.
        let parent = u64::from_str_radix(&self.span_id, 16).unwrap_or(0);
        let span = (nanos ^ parent.rotate_left(17)) | 1;
        Self {
            trace_id: self.trace_id.clone(),
            span_id: format!("{span:016x}"),
            flags: self.flags.clone(),
        }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_makes_children() {
        let p =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(p.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let c = p.child();
        assert_eq!(c.trace_id, p.trace_id);
        assert_ne!(c.span_id, p.span_id);
        assert_eq!(TraceParent::parse(&c.to_string()), Some(c));
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none()
        );
        assert!(TraceParent::parse("00-xyz-00f067aa0ba902b7-01").is_none());
    }
}
