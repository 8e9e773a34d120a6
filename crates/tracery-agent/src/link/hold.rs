//! Held messages on the wire: what the agent reports of the messages it holds, and the
//! checks on a `HoldTrace` from the controller.

use std::time::SystemTime;

use tracery_proto::v1;

use crate::freeze::{HeldMessage, HoldRelease, TraceId, MAX_FREEZE};

impl From<HeldMessage> for v1::HeldMessage {
    fn from(m: HeldMessage) -> Self {
        let addr = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        v1::HeldMessage {
            trace_id: m.trace_id.to_string(),
            pid: m.pid,
            tid: m.tid,
            socket: m.socket,
            local: addr(m.local),
            peer: addr(m.peer),
            bytes: m.bytes,
            first_line: m.first_line,
            behind: m.behind,
            shared: m.shared,
            at: Some(m.at.into()),
        }
    }
}

impl From<HoldRelease> for v1::HoldRelease {
    fn from(r: HoldRelease) -> Self {
        v1::HoldRelease {
            trace_id: r.trace_id.to_string(),
            messages: r.messages,
            bytes: r.bytes,
            dropped_bytes: r.dropped_bytes,
            reason: v1::ReleaseReason::from(r.reason).into(),
            at: Some(r.at.into()),
        }
    }
}

/// The trace and deadline of a `HoldTrace`, the deadline capped at [`MAX_FREEZE`] from
/// `now`: a controller's mistake must not hold a node's requests for longer.
pub fn hold_request(h: &v1::HoldTrace, now: SystemTime) -> Result<(TraceId, SystemTime), String> {
    let trace = TraceId::parse(&h.trace_id)?;
    let deadline = h
        .deadline
        .ok_or_else(|| "HoldTrace.deadline is not set".to_string())
        .and_then(|d| {
            SystemTime::try_from(d).map_err(|e| format!("HoldTrace.deadline is invalid: {e}"))
        })?;
    Ok((trace, deadline.min(now + MAX_FREEZE)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::freeze::ReleaseReason;

    const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn a_held_message_keeps_every_field_and_unknown_addresses_are_empty() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_000_000);
        let m = HeldMessage {
            trace_id: TraceId::parse(T).unwrap(),
            pid: 10,
            tid: 11,
            socket: 1234,
            local: Some("10.0.0.2:41234".parse().unwrap()),
            peer: None,
            bytes: 57,
            first_line: "POST /pay HTTP/1.1".into(),
            behind: true,
            shared: true,
            at,
        };
        let w = v1::HeldMessage::from(m);
        assert_eq!(
            w,
            v1::HeldMessage {
                trace_id: T.into(),
                pid: 10,
                tid: 11,
                socket: 1234,
                local: "10.0.0.2:41234".into(),
                peer: String::new(),
                bytes: 57,
                first_line: "POST /pay HTTP/1.1".into(),
                behind: true,
                shared: true,
                at: Some(at.into()),
            }
        );
        let r = v1::HoldRelease::from(HoldRelease {
            trace_id: TraceId::parse(T).unwrap(),
            messages: 2,
            bytes: 114,
            dropped_bytes: 7,
            reason: ReleaseReason::Deadline,
            at,
        });
        assert_eq!(
            (r.messages, r.bytes, r.dropped_bytes, r.reason),
            (2, 114, 7, i32::from(v1::ReleaseReason::Deadline))
        );
    }

    #[test]
    fn a_hold_deadline_is_capped_and_a_bad_hold_says_why() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_000_000);
        let soon = now + Duration::from_secs(60);
        let hold = |deadline: Option<SystemTime>| v1::HoldTrace {
            trace_id: T.into(),
            deadline: deadline.map(Into::into),
        };
        let (trace, d) = hold_request(&hold(Some(soon)), now).unwrap();
        assert_eq!((trace.to_string().as_str(), d), (T, soon));
        let far = now + MAX_FREEZE * 10;
        assert_eq!(
            hold_request(&hold(Some(far)), now).unwrap().1,
            now + MAX_FREEZE
        );
        assert!(hold_request(&hold(None), now)
            .unwrap_err()
            .contains("deadline is not set"));
        let bad = v1::HoldTrace {
            trace_id: "xyz".into(),
            deadline: Some(soon.into()),
        };
        assert!(hold_request(&bad, now).is_err());
    }
}
