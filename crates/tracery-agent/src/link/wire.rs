//! The agent's types on the wire: snapshots to and from `tracery.v1.Snapshot`,
//! breakpoints from `tracery.v1.Breakpoint`, and frozen threads and their releases to
//! `tracery.v1.{FrozenThread, Release}`, beside the domain types they convert (the proto
//! crate cannot depend on the agent).

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use tracery_dwarf::CaptureLimits;
use tracery_proto::{
    convert::ConvertError,
    v1::{self, breakpoint_spec},
};

use crate::{
    capture::snapshot::{Location, Snapshot, StackFrame},
    discovery::{DiscoveryError, Matcher, Services},
    freeze::{
        FreezeSpec, FrozenThread, ReleaseReason, Released, Suspension, TraceId, TraceScope,
        MAX_FREEZE,
    },
    manager::{BreakpointSpec, Target},
};

/// Why a breakpoint from the controller cannot be armed on this agent.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("breakpoint {id} has no spec; the controller sent an incomplete Arm")]
    MissingSpec { id: u64 },
    #[error("breakpoint {id} has no target; set it with --service, --exe or --pid")]
    MissingTarget { id: u64 },
    #[error(transparent)]
    Service(#[from] DiscoveryError),
    #[error("breakpoint {id} expires at an unrepresentable time ({reason})")]
    Expiry { id: u64, reason: String },
    #[error("breakpoint {id} is scoped to an invalid trace id: {reason}")]
    TraceId { id: u64, reason: String },
}

// The controller checks freeze timeouts against the proto crate's limit; the agent caps
// them with its own. They must be one limit.
const _: () = assert!(MAX_FREEZE.as_secs() == tracery_proto::trace::MAX_FREEZE_SECONDS);

impl BreakpointSpec {
    /// Converts a breakpoint the controller sent; service names are resolved through the
    /// agent's own `tracery.toml` definitions. Unset limits mean no limit (the controller
    /// has already filled in its defaults).
    pub fn from_wire(bp: v1::Breakpoint, services: &Services) -> Result<Self, SpecError> {
        let id = bp.id;
        let spec = bp.spec.ok_or(SpecError::MissingSpec { id })?;
        let target = match spec.target.ok_or(SpecError::MissingTarget { id })? {
            breakpoint_spec::Target::Service(name) => {
                Target::Matching(services.get(&name)?.clone())
            }
            breakpoint_spec::Target::Exe(path) => {
                // Processes report their resolved executable; match that, not a symlink.
                let path = PathBuf::from(path);
                Target::Matching(Matcher::Exe(std::fs::canonicalize(&path).unwrap_or(path)))
            }
            breakpoint_spec::Target::Pid(pid) => Target::Pid(pid),
        };
        let expires_at = bp
            .expires
            .map(SystemTime::try_from)
            .transpose()
            .map_err(|e| SpecError::Expiry {
                id,
                reason: e.to_string(),
            })?;
        let trace_id = spec
            .trace_id
            .as_deref()
            .map(TraceId::parse)
            .transpose()
            .map_err(|reason| SpecError::TraceId { id, reason })?;
        let scope = TraceScope {
            trace_id,
            header: spec.header.map(|h| (h.name, h.value)),
        };
        let freeze = spec.freeze.then(|| FreezeSpec {
            timeout: Duration::from_secs(
                spec.freeze_timeout_seconds
                    .unwrap_or(tracery_proto::trace::DEFAULT_FREEZE_SECONDS),
            )
            .min(MAX_FREEZE),
        });
        Ok(BreakpointSpec {
            id,
            target,
            location: spec.location,
            when: spec.when.filter(|w| !w.trim().is_empty()),
            hit_limit: spec.hit_limit.map_or(0, u64::from),
            rate_per_sec: spec.rate_per_second.unwrap_or(0),
            expires_at,
            limits: CaptureLimits::default(),
            scope,
            freeze,
        })
    }
}

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
    fn a_breakpoint_resolves_its_service_here_and_keeps_its_limits() {
        let services = Services::parse(
            "[services.orders]\nprocess = \"orders\"\n",
            "t.toml".as_ref(),
        )
        .unwrap();
        let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let bp = |target| v1::Breakpoint {
            id: 9,
            spec: Some(v1::BreakpointSpec {
                target: Some(target),
                location: "orders.rs:42".into(),
                when: Some("qty > 1".into()),
                hit_limit: Some(100),
                expire_seconds: Some(3600),
                rate_per_second: Some(10),
                ..Default::default()
            }),
            expires: Some(expires.into()),
            ..Default::default()
        };
        let spec = BreakpointSpec::from_wire(
            bp(breakpoint_spec::Target::Service("orders".into())),
            &services,
        )
        .unwrap();
        assert_eq!(
            spec.target,
            Target::Matching(Matcher::Process("orders".into()))
        );
        assert_eq!((spec.id, spec.hit_limit, spec.rate_per_sec), (9, 100, 10));
        assert_eq!(spec.when.as_deref(), Some("qty > 1"));
        assert_eq!(spec.expires_at, Some(expires));
        let err = BreakpointSpec::from_wire(
            bp(breakpoint_spec::Target::Service("billing".into())),
            &services,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown service \"billing\"; known services: orders"
        );
        let spec =
            BreakpointSpec::from_wire(bp(breakpoint_spec::Target::Pid(42)), &services).unwrap();
        assert_eq!(spec.target, Target::Pid(42));
    }

    #[test]
    fn scope_and_freeze_reach_the_manager_capped() {
        let bp = |spec: v1::BreakpointSpec| v1::Breakpoint {
            id: 3,
            spec: Some(v1::BreakpointSpec {
                target: Some(breakpoint_spec::Target::Pid(42)),
                location: "orders.c:41".into(),
                ..spec
            }),
            ..Default::default()
        };
        let services = Services::default();
        let spec = BreakpointSpec::from_wire(
            bp(v1::BreakpointSpec {
                trace_id: Some("a3ce929d0e0e4736".into()),
                header: Some(v1::HeaderMatch {
                    name: "x-tenant".into(),
                    value: "acme".into(),
                }),
                freeze: true,
                freeze_timeout_seconds: Some(20),
                ..Default::default()
            }),
            &services,
        )
        .unwrap();
        assert_eq!(
            spec.scope.trace_id.map(|t| t.to_string()).as_deref(),
            Some("0000000000000000a3ce929d0e0e4736")
        );
        assert_eq!(
            spec.scope.header,
            Some(("x-tenant".to_owned(), "acme".to_owned()))
        );
        assert_eq!(spec.freeze.unwrap().timeout, Duration::from_secs(20));
        let spec = BreakpointSpec::from_wire(
            bp(v1::BreakpointSpec {
                freeze: true,
                freeze_timeout_seconds: Some(100_000),
                ..Default::default()
            }),
            &services,
        )
        .unwrap();
        assert_eq!(spec.freeze.unwrap().timeout, MAX_FREEZE);
        let plain = BreakpointSpec::from_wire(bp(Default::default()), &services).unwrap();
        assert!(plain.scope.is_empty() && plain.freeze.is_none());
        let err = BreakpointSpec::from_wire(
            bp(v1::BreakpointSpec {
                trace_id: Some("xyz".into()),
                ..Default::default()
            }),
            &services,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a trace id"), "{err}");
    }

    #[test]
    fn a_frozen_thread_and_its_release_go_up_with_the_reason() {
        let thread = FrozenThread {
            trace_id: TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
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
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!((t.pid, t.tid, t.snapshot_sequence), (42, 43, 9));
        assert!(!t.suspended);
        assert_eq!(t.not_suspended_reason, "Go code");
        assert_eq!(up.reason, i32::from(v1::ReleaseReason::Deadline));
    }

    #[test]
    fn a_snapshot_without_time_is_refused_by_name() {
        let err = Snapshot::try_from(v1::Snapshot::default()).unwrap_err();
        assert!(err.to_string().contains("Snapshot.time"), "{err}");
    }
}
