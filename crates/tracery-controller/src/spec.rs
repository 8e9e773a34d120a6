//! Breakpoint specs: validation, the safe defaults, and the JSON form kept in the store.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tonic::Status;
use tracery_proto::trace::{
    check_header, normalize_trace_id, DEFAULT_FREEZE_SECONDS, MAX_FREEZE_SECONDS,
};
use tracery_proto::v1::{self, breakpoint_spec::Target};
use tracery_store::BreakpointRecord;

use crate::Defaults;

/// Default hit limit of a breakpoint that freezes: freezing a hundred requests by default
/// would surprise; more must be asked for with `--hits`.
pub(crate) const FREEZE_HIT_LIMIT: u32 = 1;

/// A spec with every limit filled in, as stored (`breakpoints.spec`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredSpec {
    pub target: StoredTarget,
    pub location: String,
    pub when: Option<String>,
    pub hit_limit: u32,
    pub expire_seconds: u64,
    pub rate_per_second: u32,
    /// Only hits of this trace (32 lowercase hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Only hits of requests carrying this header: (name, value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<(String, String)>,
    /// Seconds a hit's request stays frozen; `None` for a breakpoint that does not freeze.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_seconds: Option<u64>,
    /// `--capture` queries, as the user wrote them (`shop: SELECT ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<String>,
    /// Their placeholder paths, for the agents' scope check; filled by the caller once
    /// the queries are checked against the configured databases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capture_paths: Vec<String>,
    /// Cluster mode: the namespace of a `Service` or `Selector` target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Cluster mode: only this container of the selected pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// How a controller resolves `--service`: from tracery.toml on the agents, or through the
/// Kubernetes API.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TargetRules<'a> {
    /// Standalone or plain agents: service names defined in tracery.toml.
    Services(&'a [String]),
    /// Cluster mode: Services and pod labels of a namespace (checked by the caller
    /// against the API, which this synchronous check cannot reach).
    Kubernetes,
}

/// `BreakpointSpec.target`, as JSON (`{"service": "orders"}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StoredTarget {
    Service(String),
    Exe(String),
    Pid(u32),
    /// Pods by label (cluster mode).
    Selector(std::collections::BTreeMap<String, String>),
}

impl StoredSpec {
    /// Checks a user's spec and fills unset limits from `defaults`.
    pub fn from_request(
        spec: v1::BreakpointSpec,
        rules: TargetRules<'_>,
        defaults: &Defaults,
    ) -> Result<StoredSpec, Status> {
        let cluster = matches!(rules, TargetRules::Kubernetes);
        let (namespace, container) = cluster_scope(&spec, cluster)?;
        let target = match spec.target {
            None => {
                return Err(Status::invalid_argument(
                    "the breakpoint has no target; pass --service NAME, --exe PATH or --pid PID",
                ))
            }
            Some(Target::Service(name)) if cluster => {
                check_k8s_name(&name, "--service")?;
                StoredTarget::Service(name)
            }
            Some(Target::Service(name)) => {
                let TargetRules::Services(services) = rules else {
                    unreachable!("cluster mode is the arm above")
                };
                if !services.contains(&name) {
                    let known = if services.is_empty() {
                        "none".to_owned()
                    } else {
                        services.join(", ")
                    };
                    return Err(Status::invalid_argument(format!(
                        "unknown service {name:?}; known services: {known} (define them in tracery.toml)"
                    )));
                }
                StoredTarget::Service(name)
            }
            Some(Target::Exe(path)) => {
                if !path.starts_with('/') {
                    return Err(Status::invalid_argument(format!(
                        "--exe {path:?} is not an absolute path; pass the executable's full path"
                    )));
                }
                StoredTarget::Exe(path)
            }
            Some(Target::Pid(0)) => {
                return Err(Status::invalid_argument(
                    "--pid 0 is not a process; pass the id of a running process",
                ))
            }
            Some(Target::Pid(pid)) => StoredTarget::Pid(pid),
            Some(Target::Selector(_)) if !cluster => {
                return Err(Status::invalid_argument(
                    "--selector chooses Kubernetes pods and needs a controller in cluster mode \
                     (tracery-controller --kubernetes); here use --service, --exe or --pid",
                ))
            }
            Some(Target::Selector(selector)) => {
                if selector.match_labels.is_empty() {
                    return Err(Status::invalid_argument(
                        "--selector is empty; give labels such as app=orders",
                    ));
                }
                StoredTarget::Selector(selector.match_labels.into_iter().collect())
            }
        };
        let location = spec.location.trim().to_owned();
        if location.is_empty() {
            return Err(Status::invalid_argument(
                "the breakpoint has no location; pass --at FILE:LINE or --at FUNCTION",
            ));
        }
        if spec.when.as_deref().is_some_and(|w| w.trim().is_empty()) {
            return Err(Status::invalid_argument(
                "--when is empty; give a condition such as 'order.qty > 10', or leave --when out",
            ));
        }
        let trace_id = spec
            .trace_id
            .as_deref()
            .map(normalize_trace_id)
            .transpose()
            .map_err(|e| Status::invalid_argument(format!("--trace-id: {e}")))?;
        let header = match spec.header {
            None => None,
            Some(h) => {
                let name = h.name.trim().to_owned();
                check_header(&name, &h.value)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                Some((name, h.value))
            }
        };
        let freeze_seconds = match (spec.freeze, spec.freeze_timeout_seconds) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(Status::invalid_argument(
                    "--freeze-timeout needs --freeze; add --freeze, or leave the timeout out",
                ))
            }
            (true, None) => Some(DEFAULT_FREEZE_SECONDS),
            (true, Some(0)) => {
                return Err(Status::invalid_argument(
                    "--freeze-timeout must be at least 1s; leave it out for the default (60s)",
                ))
            }
            (true, Some(s)) if s > MAX_FREEZE_SECONDS => {
                return Err(Status::invalid_argument(format!(
                    "--freeze-timeout {s}s is longer than the {MAX_FREEZE_SECONDS}s a request \
                     may stay frozen; resume it with `tracery-ctl trace resume` instead"
                )))
            }
            (true, Some(s)) => Some(s),
        };
        // Freezing is intrusive: unless asked, a freezing breakpoint freezes one request.
        let default_hits = if freeze_seconds.is_some() {
            FREEZE_HIT_LIMIT
        } else {
            u32::try_from(defaults.hit_limit).unwrap_or(u32::MAX)
        };
        let hit_limit = positive(spec.hit_limit, default_hits, "--hits")?;
        let expire_seconds = positive(
            spec.expire_seconds,
            defaults.expire.as_secs().max(1),
            "--expire (seconds)",
        )?;
        let rate_per_second = positive(spec.rate_per_second, defaults.rate_per_sec, "--rate")?;
        Ok(StoredSpec {
            target,
            location,
            when: spec.when,
            hit_limit,
            expire_seconds,
            rate_per_second,
            trace_id,
            header,
            freeze_seconds,
            captures: spec
                .captures
                .into_iter()
                .map(|c| c.trim().to_owned())
                .collect(),
            capture_paths: Vec::new(),
            namespace,
            container,
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        // A struct of strings and integers always serializes.
        serde_json::to_value(self).unwrap_or_default()
    }

    pub fn from_json(json: &serde_json::Value) -> Result<StoredSpec, serde_json::Error> {
        StoredSpec::deserialize(json)
    }

    pub fn to_proto(&self) -> v1::BreakpointSpec {
        v1::BreakpointSpec {
            target: Some(match &self.target {
                StoredTarget::Service(s) => Target::Service(s.clone()),
                StoredTarget::Exe(e) => Target::Exe(e.clone()),
                StoredTarget::Pid(p) => Target::Pid(*p),
                StoredTarget::Selector(labels) => Target::Selector(v1::LabelSelector {
                    match_labels: labels.clone().into_iter().collect(),
                }),
            }),
            location: self.location.clone(),
            when: self.when.clone(),
            hit_limit: Some(self.hit_limit),
            expire_seconds: Some(self.expire_seconds),
            rate_per_second: Some(self.rate_per_second),
            trace_id: self.trace_id.clone(),
            header: self.header.as_ref().map(|(name, value)| v1::HeaderMatch {
                name: name.clone(),
                value: value.clone(),
            }),
            freeze: self.freeze_seconds.is_some(),
            freeze_timeout_seconds: self.freeze_seconds,
            captures: self.captures.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            container: self.container.clone().unwrap_or_default(),
        }
    }
}

/// The namespace and container of a cluster-mode spec (`default` when unset); outside
/// cluster mode both must be unset.
fn cluster_scope(
    spec: &v1::BreakpointSpec,
    cluster: bool,
) -> Result<(Option<String>, Option<String>), Status> {
    let namespace = spec.namespace.trim();
    let container = spec.container.trim();
    if !cluster {
        if !namespace.is_empty() || !container.is_empty() {
            return Err(Status::invalid_argument(
                "--namespace and --container name Kubernetes objects, and this controller is \
                 not in cluster mode (tracery-controller --kubernetes); leave them out",
            ));
        }
        return Ok((None, None));
    }
    if matches!(spec.target, Some(Target::Exe(_) | Target::Pid(_))) && !container.is_empty() {
        return Err(Status::invalid_argument(
            "--container applies to --service and --selector targets; leave it out with --exe or --pid",
        ));
    }
    let namespace = if namespace.is_empty() {
        "default"
    } else {
        namespace
    };
    check_k8s_name(namespace, "--namespace")?;
    let container = (!container.is_empty())
        .then(|| check_k8s_name(container, "--container").map(|()| container.to_owned()))
        .transpose()?;
    Ok((Some(namespace.to_owned()), container))
}

/// Kubernetes object names (RFC 1123 labels): lowercase letters, digits and `-`, at most
/// 63 characters, starting and ending with a letter or digit.
fn check_k8s_name(name: &str, flag: &str) -> Result<(), Status> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{flag} {name:?} is not a Kubernetes name: use lowercase letters, digits and '-', \
             at most 63 characters"
        )))
    }
}

/// An unset limit becomes `default`; an explicit 0 is refused, because every breakpoint
/// must stay bounded.
fn positive<T>(value: Option<T>, default: T, flag: &str) -> Result<T, Status>
where
    T: Copy + PartialEq + Default + std::fmt::Display,
{
    match value {
        None => Ok(default),
        Some(v) if v == T::default() => Err(Status::invalid_argument(format!(
            "{flag} must be at least 1: every breakpoint is bounded; leave it out for the default ({default})"
        ))),
        Some(v) => Ok(v),
    }
}

/// A stored breakpoint as the API shows it; `hits` and `drops` are filled by the caller.
pub(crate) fn breakpoint_proto(record: &BreakpointRecord) -> Result<v1::Breakpoint, Status> {
    let spec = StoredSpec::from_json(&record.spec).map_err(|e| {
        Status::internal(format!(
            "breakpoint {} has an unreadable spec in the store ({e}); delete it and set it again",
            record.id
        ))
    })?;
    Ok(v1::Breakpoint {
        id: u64::try_from(record.id.0).unwrap_or_default(),
        spec: Some(spec.to_proto()),
        created: Some(record.created_at.into()),
        expires: Some(record.expires_at.into()),
        hits: 0,
        drops: 0,
        capture_paths: spec.capture_paths,
    })
}

/// True while a breakpoint should be armed: not deleted, not expired.
pub(crate) fn is_live(record: &BreakpointRecord, now: SystemTime) -> bool {
    record.deleted_at.is_none() && record.expires_at > now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: Target) -> v1::BreakpointSpec {
        v1::BreakpointSpec {
            target: Some(target),
            location: "orders.rs:42".into(),
            ..Default::default()
        }
    }

    #[test]
    fn unset_limits_get_the_defaults_and_survive_json() {
        let s = StoredSpec::from_request(
            spec(Target::Exe("/usr/bin/orders".into())),
            TargetRules::Services(&[]),
            &Defaults::default(),
        )
        .unwrap();
        assert_eq!(
            (s.hit_limit, s.expire_seconds, s.rate_per_second),
            (100, 3600, 10)
        );
        assert_eq!(StoredSpec::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn zero_limits_are_refused_with_the_flag_name() {
        let mut req = spec(Target::Pid(7));
        req.hit_limit = Some(0);
        let err = StoredSpec::from_request(req, TargetRules::Services(&[]), &Defaults::default())
            .unwrap_err();
        assert!(
            err.message().contains("--hits must be at least 1"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn a_freezing_breakpoint_defaults_to_one_hit_and_sixty_seconds() {
        let mut req = spec(Target::Pid(7));
        req.freeze = true;
        req.trace_id = Some("A3CE929D0E0E4736".into());
        req.header = Some(v1::HeaderMatch {
            name: "x-tenant".into(),
            value: "acme".into(),
        });
        let s = StoredSpec::from_request(req, TargetRules::Services(&[]), &Defaults::default())
            .unwrap();
        assert_eq!((s.hit_limit, s.freeze_seconds), (1, Some(60)));
        assert_eq!(
            s.trace_id.as_deref(),
            Some("0000000000000000a3ce929d0e0e4736")
        );
        assert_eq!(StoredSpec::from_json(&s.to_json()).unwrap(), s);
        let back = s.to_proto();
        assert!(back.freeze);
        assert_eq!(back.freeze_timeout_seconds, Some(60));
        assert_eq!(back.header.unwrap().value, "acme");
    }

    #[test]
    fn bad_scopes_and_freeze_timeouts_are_refused_with_the_flag_name() {
        let refuse = |edit: &dyn Fn(&mut v1::BreakpointSpec), says: &str| {
            let mut req = spec(Target::Pid(7));
            edit(&mut req);
            let err =
                StoredSpec::from_request(req, TargetRules::Services(&[]), &Defaults::default())
                    .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().contains(says), "{}", err.message());
        };
        refuse(&|r| r.trace_id = Some("xyz".into()), "is not a trace id");
        refuse(&|r| r.trace_id = Some("0".repeat(32)), "all-zero");
        refuse(
            &|r| {
                r.header = Some(v1::HeaderMatch {
                    name: "x tenant".into(),
                    value: "a".into(),
                })
            },
            "not an HTTP header name",
        );
        refuse(
            &|r| r.freeze_timeout_seconds = Some(5),
            "--freeze-timeout needs --freeze",
        );
        refuse(
            &|r| {
                r.freeze = true;
                r.freeze_timeout_seconds = Some(601);
            },
            "longer than the 600s",
        );
        refuse(
            &|r| {
                r.freeze = true;
                r.freeze_timeout_seconds = Some(0);
            },
            "at least 1s",
        );
    }

    #[test]
    fn specs_stored_before_freezing_existed_still_read() {
        let old = serde_json::json!({
            "target": {"pid": 7}, "location": "a.c:1", "when": null,
            "hit_limit": 5, "expire_seconds": 60, "rate_per_second": 10
        });
        let s = StoredSpec::from_json(&old).unwrap();
        assert_eq!((s.trace_id, s.header, s.freeze_seconds), (None, None, None));
    }

    #[test]
    fn empty_when_is_refused() {
        let mut req = spec(Target::Pid(7));
        req.when = Some("  ".into());
        let err = StoredSpec::from_request(req, TargetRules::Services(&[]), &Defaults::default())
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("--when is empty"),
            "{}",
            err.message()
        );
    }
}
