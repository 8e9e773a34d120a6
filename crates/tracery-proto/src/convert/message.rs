//! Message events: agent (domain) to wire and back.

use std::{net::SocketAddr, time::SystemTime};

use tracery_model::{
    message::{MessageBatch, MessageEvent, MessageKind},
    TraceId,
};

use super::ConvertError;
use crate::v1;

impl From<MessageKind> for v1::MessageKind {
    fn from(k: MessageKind) -> Self {
        match k {
            MessageKind::Send => v1::MessageKind::Send,
            MessageKind::Recv => v1::MessageKind::Recv,
        }
    }
}

impl From<MessageEvent> for v1::MessageEvent {
    fn from(m: MessageEvent) -> Self {
        v1::MessageEvent {
            trace_id: m.trace_id.to_string(),
            kind: v1::MessageKind::from(m.kind).into(),
            local: m.local.to_string(),
            remote: m.remote.to_string(),
            seq: m.seq.unwrap_or(0),
            has_seq: m.seq.is_some(),
            bytes: m.bytes,
            pid: m.pid,
            tid: m.tid,
            task: m.task,
            time: Some(m.time.into()),
            held: m.held,
            process_name: m.process_name,
        }
    }
}

impl From<MessageBatch> for v1::MessageEvents {
    fn from(b: MessageBatch) -> Self {
        v1::MessageEvents {
            events: b.events.into_iter().map(Into::into).collect(),
            lost_total: b.lost_total,
        }
    }
}

impl TryFrom<&v1::MessageEvent> for MessageEvent {
    type Error = ConvertError;

    fn try_from(m: &v1::MessageEvent) -> Result<Self, ConvertError> {
        let trace_id = TraceId::parse(&m.trace_id)
            .map_err(|e| ConvertError::invalid_because("MessageEvent.trace_id", &m.trace_id, e))?;
        let kind = match v1::MessageKind::try_from(m.kind) {
            Ok(v1::MessageKind::Send) => MessageKind::Send,
            Ok(v1::MessageKind::Recv) => MessageKind::Recv,
            _ => return Err(ConvertError::missing("MessageEvent.kind")),
        };
        let addr = |field, s: &str| {
            s.parse::<SocketAddr>()
                .map_err(|_| ConvertError::invalid(field, s, "not IP:PORT"))
        };
        let time = m.time.ok_or(ConvertError::missing("MessageEvent.time"))?;
        let time = SystemTime::try_from(time).map_err(|e| {
            ConvertError::invalid("MessageEvent.time", e, "not a representable time")
        })?;
        Ok(MessageEvent {
            trace_id,
            kind,
            local: addr("MessageEvent.local", &m.local)?,
            remote: addr("MessageEvent.remote", &m.remote)?,
            seq: m.has_seq.then_some(m.seq),
            bytes: m.bytes,
            pid: m.pid,
            tid: m.tid,
            task: m.task,
            time,
            held: m.held,
            process_name: m.process_name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_message_event_round_trips_and_a_missing_seq_stays_missing() {
        let m = MessageEvent {
            trace_id: TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            kind: MessageKind::Send,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "[::1]:8080".parse().unwrap(),
            seq: None,
            bytes: 120,
            pid: 10,
            tid: 11,
            task: 0xc000_0010,
            time: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_763_000_000_123_456_789),
            held: true,
            process_name: "demo-orders".into(),
        };
        let wire = v1::MessageEvent::from(m.clone());
        assert!(!wire.has_seq);
        assert_eq!(MessageEvent::try_from(&wire).unwrap(), m);
        let with_seq = MessageEvent {
            seq: Some(0),
            ..m.clone()
        };
        assert_eq!(
            MessageEvent::try_from(&v1::MessageEvent::from(with_seq.clone())).unwrap(),
            with_seq
        );
        let mut bad = wire;
        bad.kind = 0;
        assert_eq!(
            MessageEvent::try_from(&bad).unwrap_err(),
            ConvertError::missing("MessageEvent.kind")
        );
    }
}
