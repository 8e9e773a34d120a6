//! `Snapshot`, its `Location`, `StackFrame`s and source language ↔ `tracery_model`.

use std::time::SystemTime;

use tracery_model::{Location, PodRef, Snapshot, SourceLanguage, StackFrame};

use super::ConvertError;
use crate::v1;

impl From<SourceLanguage> for v1::Language {
    fn from(lang: SourceLanguage) -> Self {
        match lang {
            SourceLanguage::C => v1::Language::C,
            SourceLanguage::Cpp => v1::Language::Cpp,
            SourceLanguage::Rust => v1::Language::Rust,
            SourceLanguage::Go => v1::Language::Go,
            SourceLanguage::JavaScript => v1::Language::Javascript,
            SourceLanguage::Python => v1::Language::Python,
        }
    }
}

impl TryFrom<v1::Language> for SourceLanguage {
    type Error = ConvertError;

    fn try_from(lang: v1::Language) -> Result<Self, ConvertError> {
        match lang {
            v1::Language::C => Ok(SourceLanguage::C),
            v1::Language::Cpp => Ok(SourceLanguage::Cpp),
            v1::Language::Rust => Ok(SourceLanguage::Rust),
            v1::Language::Go => Ok(SourceLanguage::Go),
            v1::Language::Javascript => Ok(SourceLanguage::JavaScript),
            v1::Language::Python => Ok(SourceLanguage::Python),
            v1::Language::Unspecified => Err(ConvertError::missing("Snapshot.language")),
        }
    }
}

impl From<Location> for v1::Location {
    fn from(loc: Location) -> Self {
        v1::Location {
            function: loc.function,
            file: loc.file,
            line: loc.line,
            address: loc.address,
        }
    }
}

impl From<v1::Location> for Location {
    fn from(loc: v1::Location) -> Self {
        Location {
            function: loc.function,
            file: loc.file,
            line: loc.line,
            address: loc.address,
        }
    }
}

impl From<StackFrame> for v1::StackFrame {
    fn from(f: StackFrame) -> Self {
        v1::StackFrame {
            function: f.function,
            file: f.file,
            line: f.line,
            address: f.address,
            inlined: f.inlined,
        }
    }
}

impl From<v1::StackFrame> for StackFrame {
    fn from(f: v1::StackFrame) -> Self {
        StackFrame {
            function: f.function,
            file: f.file,
            line: f.line,
            address: f.address,
            inlined: f.inlined,
        }
    }
}

/// The store id is 0: the controller assigns it when it stores the snapshot.
impl From<Snapshot> for v1::Snapshot {
    fn from(s: Snapshot) -> Self {
        v1::Snapshot {
            id: 0,
            breakpoint_id: s.breakpoint_id,
            pid: s.pid,
            tid: s.tid,
            time: Some(s.time.into()),
            location: Some(s.location.into()),
            variables: s.variables.into_iter().map(Into::into).collect(),
            stack: s.stack.into_iter().map(Into::into).collect(),
            trace_id: s.trace_id,
            span_id: s.span_id,
            language: v1::Language::from(s.language).into(),
            databases: s.databases.into_iter().map(Into::into).collect(),
            pod: s.pod.map(|p| v1::PodRef {
                namespace: p.namespace,
                pod: p.pod,
                container: p.container,
                node: p.node,
            }),
        }
    }
}

impl TryFrom<v1::Snapshot> for Snapshot {
    type Error = ConvertError;

    fn try_from(s: v1::Snapshot) -> Result<Self, ConvertError> {
        let time = s.time.ok_or(ConvertError::missing("Snapshot.time"))?;
        let time = SystemTime::try_from(time)
            .map_err(|e| ConvertError::invalid("Snapshot.time", e, "not a representable time"))?;
        let location = s
            .location
            .ok_or(ConvertError::missing("Snapshot.location"))?;
        let language = v1::Language::try_from(s.language).map_err(|_| {
            ConvertError::invalid("Snapshot.language", s.language, "unknown language")
        })?;
        Ok(Snapshot {
            breakpoint_id: s.breakpoint_id,
            pid: s.pid,
            tid: s.tid,
            time,
            location: location.into(),
            variables: s
                .variables
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
            stack: s.stack.into_iter().map(Into::into).collect(),
            trace_id: s.trace_id,
            span_id: s.span_id,
            language: language.try_into()?,
            databases: s
                .databases
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
            pod: s.pod.map(|p| PodRef {
                namespace: p.namespace,
                pod: p.pod,
                container: p.container,
                node: p.node,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tracery_model::{Value, VarKind, Variable};

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
            databases: vec![tracery_model::DatabaseRead {
                database: "shop".into(),
                kind: "postgres".into(),
                query: "SELECT id FROM orders WHERE customer = {order.customer}".into(),
                params: vec![("order.customer".into(), serde_json::json!("ada"))],
                rows: vec![serde_json::json!({"id": 7})],
                truncated: false,
                read_at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_763_000_000_123_456),
                consistency: serde_json::json!({"method": "repeatable_read"}),
                error: None,
            }],
            pod: Some(tracery_model::PodRef {
                namespace: "shop".into(),
                pod: "orders-7d9f8-x2k4p".into(),
                container: "orders".into(),
                node: "node-a".into(),
            }),
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
