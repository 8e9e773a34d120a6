//! Snapshots on the wire: conversions to and from `tracery.v1.Snapshot`, beside the domain
//! type they convert (the proto crate cannot depend on the agent).

use std::time::SystemTime;

use tracery_proto::{convert::ConvertError, v1};

use crate::snapshot::{Location, Snapshot, StackFrame};

impl From<Snapshot> for v1::Snapshot {
    fn from(s: Snapshot) -> Self {
        v1::Snapshot {
            id: 0,
            breakpoint_id: s.breakpoint_id,
            pid: s.pid,
            tid: s.tid,
            time: Some(s.time.into()),
            location: Some(v1::Location {
                function: s.location.function,
                file: s.location.file,
                line: s.location.line,
                address: s.location.address,
            }),
            variables: s.variables.into_iter().map(Into::into).collect(),
            stack: s
                .stack
                .into_iter()
                .map(|f| v1::StackFrame {
                    function: f.function,
                    file: f.file,
                    line: f.line,
                    address: f.address,
                    inlined: f.inlined,
                })
                .collect(),
            trace_id: s.trace_id,
            span_id: s.span_id,
            language: v1::Language::from(s.language).into(),
        }
    }
}

impl TryFrom<v1::Snapshot> for Snapshot {
    type Error = ConvertError;

    fn try_from(s: v1::Snapshot) -> Result<Self, ConvertError> {
        let time = s.time.ok_or(ConvertError::Missing {
            field: "Snapshot.time",
        })?;
        let time = SystemTime::try_from(time).map_err(|e| ConvertError::Invalid {
            field: "Snapshot.time",
            value: e.to_string(),
            reason: "not a representable time",
        })?;
        let loc = s.location.ok_or(ConvertError::Missing {
            field: "Snapshot.location",
        })?;
        let language = v1::Language::try_from(s.language).map_err(|_| ConvertError::Invalid {
            field: "Snapshot.language",
            value: s.language.to_string(),
            reason: "unknown language",
        })?;
        Ok(Snapshot {
            breakpoint_id: s.breakpoint_id,
            pid: s.pid,
            tid: s.tid,
            time,
            location: Location {
                function: loc.function,
                file: loc.file,
                line: loc.line,
                address: loc.address,
            },
            variables: s
                .variables
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
            stack: s
                .stack
                .into_iter()
                .map(|f| StackFrame {
                    function: f.function,
                    file: f.file,
                    line: f.line,
                    address: f.address,
                    inlined: f.inlined,
                })
                .collect(),
            trace_id: s.trace_id,
            span_id: s.span_id,
            language: language.try_into()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tracery_dwarf::{SourceLanguage, Value, VarKind, Variable};

    use super::*;

    #[test]
    fn a_snapshot_survives_the_wire_and_keeps_its_json() {
        let s = Snapshot {
            breakpoint_id: 7,
            pid: 42,
            tid: 43,
            time: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_763_000_000_123_456_789),
            location: Location {
                function: "orders::process_order".into(),
                file: "/src/orders.rs".into(),
                line: 39,
                address: 0x55_0000_1234,
            },
            variables: vec![Variable {
                name: "total".into(),
                kind: VarKind::Local,
                type_name: "u64".into(),
                value: Value::UInt(60),
                frame: None,
            }],
            stack: vec![StackFrame {
                function: "orders::process_order".into(),
                file: Some("/src/orders.rs".into()),
                line: Some(39),
                address: 0x55_0000_1234,
                inlined: false,
            }],
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: None,
            language: SourceLanguage::Rust,
        };
        let json = s.to_json();
        let wire = v1::Snapshot::from(s);
        let back = Snapshot::try_from(wire).unwrap();
        assert_eq!(back.to_json(), json);
    }

    #[test]
    fn a_snapshot_without_time_is_refused_by_name() {
        let err = Snapshot::try_from(v1::Snapshot::default()).unwrap_err();
        assert!(err.to_string().contains("Snapshot.time"), "{err}");
    }
}
