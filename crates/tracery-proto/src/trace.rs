//! Trace scoping and freezing on the wire: the checks that CLI, controller and agents
//! share, so a trace id or a header means the same everywhere.

pub use tracery_model::trace::{
    check_header, normalize_trace_id, parse_trace_id, ScopeError, DEFAULT_FREEZE_SECONDS,
    MAX_FREEZE_SECONDS,
};

use crate::v1;

/// Parses `NAME=VALUE` (`--header`); the value is kept as given, blanks included.
pub fn parse_header(text: &str) -> Result<v1::HeaderMatch, ScopeError> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| ScopeError::HeaderSyntax {
            text: text.to_owned(),
        })?;
    let name = name.trim();
    check_header(name, value)?;
    Ok(v1::HeaderMatch {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

impl v1::ReleaseReason {
    /// How a person reads it: `resumed`, `deadline passed`, ...
    pub fn describe(self) -> &'static str {
        match self {
            v1::ReleaseReason::Unspecified => "released",
            v1::ReleaseReason::Resumed => "resumed",
            v1::ReleaseReason::Deadline => "deadline passed",
            v1::ReleaseReason::ProcessExited => "process exited",
            v1::ReleaseReason::AgentExit => "agent exited",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_need_a_token_name_and_a_value() {
        let h = parse_header("X-Tenant=acme corp").unwrap();
        assert_eq!(
            (h.name.as_str(), h.value.as_str()),
            ("X-Tenant", "acme corp")
        );
        assert!(matches!(
            parse_header("x-tenant"),
            Err(ScopeError::HeaderSyntax { .. })
        ));
        assert!(matches!(
            parse_header("x tenant=a"),
            Err(ScopeError::HeaderName { .. })
        ));
        assert!(matches!(
            parse_header("x-tenant="),
            Err(ScopeError::HeaderValue { .. })
        ));
    }
}
