//! Breakpoints from the controller (`tracery.v1.Breakpoint`), resolved against this
//! agent's own service definitions. Every other wire conversion lives in
//! `tracery-proto` (`convert/`).

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use tracery_dwarf::CaptureLimits;
use tracery_proto::v1::{self, breakpoint_spec};

use crate::{
    discovery::{DiscoveryError, Matcher, Services},
    freeze::{FreezeSpec, TraceId, TraceScope, MAX_FREEZE},
    manager::{BreakpointSpec, Target},
    pods::PodSelector,
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
    #[error(
        "breakpoint {id} chooses Kubernetes pods by label, and this agent runs outside a \
         cluster (no --kubernetes-node); target it with --exe or --pid"
    )]
    NotInCluster { id: u64 },
    #[error("breakpoint {id} expires at an unrepresentable time")]
    Expiry {
        id: u64,
        #[source]
        source: prost_types::TimestampError,
    },
    #[error("breakpoint {id} is scoped to an invalid trace id")]
    TraceId {
        id: u64,
        #[source]
        source: tracery_model::trace::ScopeError,
    },
}

// The controller checks freeze timeouts against the proto crate's limit; the agent caps
// them with its own. They must be one limit.
const _: () = assert!(MAX_FREEZE.as_secs() == tracery_proto::trace::MAX_FREEZE_SECONDS);

impl BreakpointSpec {
    /// Converts a breakpoint the controller sent; service names are resolved through the
    /// agent's own `tracery.toml` definitions, and pod selectors only in cluster mode
    /// (`cluster`). Unset limits mean no limit (the controller has already filled in its
    /// defaults).
    pub fn from_wire(
        bp: v1::Breakpoint,
        services: &Services,
        cluster: bool,
    ) -> Result<Self, SpecError> {
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
            breakpoint_spec::Target::Selector(_) if !cluster => {
                return Err(SpecError::NotInCluster { id })
            }
            breakpoint_spec::Target::Selector(s) => Target::Pods(PodSelector {
                namespace: match spec.namespace.trim() {
                    "" => "default".to_owned(),
                    ns => ns.to_owned(),
                },
                labels: s.match_labels.into_iter().collect(),
                container: Some(spec.container.trim())
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            }),
        };
        let expires_at = bp
            .expires
            .map(SystemTime::try_from)
            .transpose()
            .map_err(|source| SpecError::Expiry { id, source })?;
        let trace_id = spec
            .trace_id
            .as_deref()
            .map(TraceId::parse)
            .transpose()
            .map_err(|source| SpecError::TraceId { id, source })?;
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
            capture_paths: bp.capture_paths,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
            false,
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
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown service \"billing\"; known services: orders"
        );
        let spec =
            BreakpointSpec::from_wire(bp(breakpoint_spec::Target::Pid(42)), &services, false)
                .unwrap();
        assert_eq!(spec.target, Target::Pid(42));
    }

    #[test]
    fn a_selector_becomes_a_pod_target_in_cluster_mode_only() {
        let bp = |namespace: &str, container: &str| v1::Breakpoint {
            id: 5,
            spec: Some(v1::BreakpointSpec {
                target: Some(breakpoint_spec::Target::Selector(v1::LabelSelector {
                    match_labels: [("app".to_string(), "orders".to_string())].into(),
                })),
                location: "orders.go:42".into(),
                namespace: namespace.into(),
                container: container.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let services = Services::default();
        let spec = BreakpointSpec::from_wire(bp("shop", "orders"), &services, true).unwrap();
        assert_eq!(
            spec.target,
            Target::Pods(PodSelector {
                namespace: "shop".into(),
                labels: [("app".to_string(), "orders".to_string())].into(),
                container: Some("orders".into()),
            })
        );
        let spec = BreakpointSpec::from_wire(bp("", ""), &services, true).unwrap();
        let Target::Pods(selector) = spec.target else {
            panic!("{:?}", spec.target)
        };
        assert_eq!(
            (selector.namespace.as_str(), selector.container),
            ("default", None)
        );
        let err = BreakpointSpec::from_wire(bp("shop", ""), &services, false).unwrap_err();
        assert!(matches!(err, SpecError::NotInCluster { id: 5 }), "{err}");
        assert!(err.to_string().contains("--kubernetes-node"), "{err}");
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
            false,
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
            false,
        )
        .unwrap();
        assert_eq!(spec.freeze.unwrap().timeout, MAX_FREEZE);
        let plain = BreakpointSpec::from_wire(bp(Default::default()), &services, false).unwrap();
        assert!(plain.scope.is_empty() && plain.freeze.is_none());
        let err = BreakpointSpec::from_wire(
            bp(v1::BreakpointSpec {
                trace_id: Some("xyz".into()),
                ..Default::default()
            }),
            &services,
            false,
        )
        .unwrap_err();
        let text = tracery_model::error::chain(&err);
        assert!(text.contains("not a trace id"), "{text}");
    }
}
