//! Frozen threads, their releases, held messages and hold requests ↔
//! `tracery_model::freeze`.

use std::{net::SocketAddr, time::SystemTime};

use tracery_model::freeze::{
    FrozenThread, HeldMessage, HoldRelease, HoldRequest, ReleaseReason, Released, Suspension,
};
use tracery_model::TraceId;

use super::ConvertError;
use crate::v1;

impl From<FrozenThread> for v1::FrozenThread {
    fn from(f: FrozenThread) -> Self {
        let (suspended, not_suspended_reason) = match f.suspension {
            Suspension::Stopped => (true, String::new()),
            Suspension::Running(why) => (false, why),
        };
        v1::FrozenThread {
            trace_id: f.trace_id.to_string(),
            breakpoint_id: f.breakpoint_id,
            snapshot_sequence: f.snapshot_seq,
            pid: f.pid,
            tid: f.tid,
            location: f.location,
            frozen_at: Some(f.frozen_at.into()),
            deadline: Some(f.deadline.into()),
            suspended,
            not_suspended_reason,
        }
    }
}

impl From<ReleaseReason> for v1::ReleaseReason {
    fn from(r: ReleaseReason) -> Self {
        match r {
            ReleaseReason::Resumed => v1::ReleaseReason::Resumed,
            ReleaseReason::Deadline => v1::ReleaseReason::Deadline,
            ReleaseReason::ProcessExited => v1::ReleaseReason::ProcessExited,
            ReleaseReason::AgentExit => v1::ReleaseReason::AgentExit,
        }
    }
}

impl From<Released> for v1::Release {
    fn from(r: Released) -> Self {
        v1::Release {
            thread: Some(r.thread.into()),
            reason: v1::ReleaseReason::from(r.reason).into(),
            at: Some(r.at.into()),
        }
    }
}

/// Unknown addresses travel as empty strings.
impl From<HeldMessage> for v1::HeldMessage {
    fn from(m: HeldMessage) -> Self {
        let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        v1::HeldMessage {
            trace_id: m.trace_id.to_string(),
            pid: m.pid,
            tid: m.tid,
            socket: m.socket,
            local: addr(m.local),
            peer: addr(m.peer),
            bytes: m.bytes,
            first_line: m.first_line,
            decoded: m.decoded.map(Into::into),
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

impl TryFrom<&v1::HoldTrace> for HoldRequest {
    type Error = ConvertError;

    fn try_from(h: &v1::HoldTrace) -> Result<Self, ConvertError> {
        let trace_id = TraceId::parse(&h.trace_id)
            .map_err(|e| ConvertError::invalid_because("HoldTrace.trace_id", &h.trace_id, e))?;
        let deadline = h
            .deadline
            .ok_or(ConvertError::missing("HoldTrace.deadline"))?;
        let deadline = SystemTime::try_from(deadline).map_err(|e| {
            ConvertError::invalid("HoldTrace.deadline", e, "not a representable time")
        })?;
        Ok(HoldRequest { trace_id, deadline })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tracery_model::{
        freeze::MAX_FREEZE,
        wire::{DecodedMessage, HttpMessage, WireContent},
    };

    use super::*;

    const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn a_held_message_keeps_every_field_and_unknown_addresses_are_empty() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_000_000);
        let pay = DecodedMessage {
            content: WireContent::Http(HttpMessage {
                method: "POST".into(),
                path: "/pay".into(),
                headers: vec![("host".into(), "payments".into())],
                ..HttpMessage::default()
            }),
            truncated: true,
        };
        let m = HeldMessage {
            trace_id: TraceId::parse(T).unwrap(),
            pid: 10,
            tid: 11,
            socket: 1234,
            local: Some("10.0.0.2:41234".parse().unwrap()),
            peer: None,
            bytes: 57,
            first_line: "POST /pay HTTP/1.1".into(),
            decoded: Some(pay.clone()),
            behind: true,
            shared: true,
            at,
        };
        let w = v1::HeldMessage::from(m);
        let back = DecodedMessage::try_from(w.decoded.clone().unwrap()).unwrap();
        assert_eq!(back, pay);
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
                decoded: Some(pay.into()),
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
        let h = HoldRequest::try_from(&hold(Some(soon))).unwrap();
        assert_eq!(
            (h.trace_id.to_string().as_str(), h.capped_deadline(now)),
            (T, soon)
        );
        let far = HoldRequest::try_from(&hold(Some(now + MAX_FREEZE * 10))).unwrap();
        assert_eq!(far.capped_deadline(now), now + MAX_FREEZE);
        let err = HoldRequest::try_from(&hold(None)).unwrap_err();
        assert!(err.to_string().contains("HoldTrace.deadline"), "{err}");
        let bad = v1::HoldTrace {
            trace_id: "xyz".into(),
            deadline: Some(soon.into()),
        };
        let err = HoldRequest::try_from(&bad).unwrap_err();
        let text = tracery_model::error::chain(&err);
        assert!(text.contains("not a trace id"), "{text}");
    }

    #[test]
    fn a_frozen_thread_and_its_release_go_up_with_the_reason() {
        let thread = FrozenThread {
            trace_id: TraceId::parse(T).unwrap(),
            breakpoint_id: 3,
            snapshot_seq: 9,
            pid: 42,
            tid: 43,
            location: "level3 (orders.c:41)".into(),
            frozen_at: SystemTime::UNIX_EPOCH,
            deadline: SystemTime::UNIX_EPOCH + Duration::from_secs(60),
            suspension: Suspension::Running("Go code".into()),
        };
        let up = v1::Release::from(Released {
            thread,
            reason: ReleaseReason::Deadline,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(60),
        });
        let t = up.thread.unwrap();
        assert_eq!(t.trace_id, T);
        assert_eq!((t.pid, t.tid, t.snapshot_sequence), (42, 43, 9));
        assert!(!t.suspended);
        assert_eq!(t.not_suspended_reason, "Go code");
        assert_eq!(up.reason, i32::from(v1::ReleaseReason::Deadline));
    }
}
