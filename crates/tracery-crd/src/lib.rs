//! The `Breakpoint` custom resource (`tracery.dev/v1alpha1`, namespaced): what
//! `tracery-ctl breakpoint set` takes, with pods chosen the Kubernetes way (a Service of the
//! namespace, or pod labels), and a status the controller keeps current.
//!
//! `deploy/kubernetes/breakpoint-crd.yaml` is generated from these types by
//! `cargo xtask gen-crds`; a test fails when the checked-in file differs.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracery_proto::v1::{self, breakpoint_spec::Target};

/// Where the checked-in CRD lives, relative to the repository root.
pub const CRD_PATH: &str = "deploy/kubernetes/breakpoint-crd.yaml";

/// Annotation on a `Breakpoint` naming the controller's breakpoint id it mirrors: set on
/// objects the controller creates for breakpoints set with `tracery-ctl`.
pub const BREAKPOINT_ID_ANNOTATION: &str = "tracery.dev/breakpoint-id";

/// A breakpoint on a source line of the pods of a Service (or chosen by labels).
// kube's `printcolumn(...)` repeats `type_` per column, which clippy reads as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "tracery.dev",
    version = "v1alpha1",
    kind = "Breakpoint",
    namespaced,
    status = "BreakpointStatus",
    shortname = "bp",
    category = "tracery",
    doc = "A Tracery breakpoint: capture variables and stack (and optionally freeze the request) when a request of the selected pods reaches a source line.",
    printcolumn(name = "Location", type_ = "string", json_path = ".spec.location"),
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.service"),
    printcolumn(name = "Id", type_ = "integer", json_path = ".status.breakpointId"),
    printcolumn(name = "Hits", type_ = "integer", json_path = ".status.hits"),
    printcolumn(name = "Pods", type_ = "integer", json_path = ".status.armedPods"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BreakpointSpec {
    /// A Service of this namespace: the breakpoint arms its pods, and follows them as they
    /// start, restart or move. Give exactly one of `service` and `selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Pod labels (as a Service's selector): every label must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
    /// Only this container of the pods; unset is every container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Source location: `FILE:LINE` (`orders.rs:42`) or a function name.
    pub location: String,
    /// Condition over captured variables (`order.qty > 10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Snapshots to record before the breakpoint disarms itself (controller default: 100,
    /// or 1 when it freezes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hits: Option<u32>,
    /// Seconds from creation until it disarms itself (controller default: 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_seconds: Option<u64>,
    /// Kernel-side rate limit, hits per second (controller default: 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
    /// Only hits of the request with this W3C trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Only hits of requests that carried this HTTP header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// Freeze the request a hit belongs to, across every service it reached.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze: bool,
    /// Seconds a frozen request stays frozen unless resumed (default 60, at most 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_timeout_seconds: Option<u64>,
    /// Database reads at each hit, `DATABASE: QUERY` with `{path}` placeholders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<String>,
}

/// An HTTP header a request must carry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// Exact value.
    pub value: String,
}

/// What the controller reports about a `Breakpoint`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakpointStatus {
    /// The controller's id for it (`tracery-ctl breakpoint list` shows the same id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakpoint_id: Option<u64>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods the breakpoint targets now, with their nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<TargetPod>,
    /// How many of `pods` run on a node whose agent is connected.
    #[serde(default)]
    pub armed_pods: u32,
    /// Nodes whose agents were asked to arm it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Snapshots stored so far.
    #[serde(default)]
    pub hits: u64,
    /// The latest snapshot (`tracery-ctl snapshot view ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot_id: Option<u64>,
    /// `Ready` (armed on the pods' agents), `Problems` (what failed where) and `Expired`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One pod a breakpoint targets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct TargetPod {
    /// Pod name.
    pub name: String,
    /// Node it runs on (empty while unscheduled).
    pub node: String,
}

/// A status condition, shaped as `metav1.Condition` so `kubectl wait --for=condition=Ready`
/// works.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Problems` or `Expired`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word for programs.
    pub reason: String,
    /// What happened and what to do, for people.
    pub message: String,
    /// RFC 3339 time the status last changed.
    pub last_transition_time: String,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl BreakpointSpec {
    /// The spec as the controller's API takes it, with pods in `namespace`. A spec naming
    /// both or neither of `service` and `selector` yields an error to report as a condition.
    pub fn to_proto(&self, namespace: &str) -> Result<v1::BreakpointSpec, String> {
        let target =
            match (&self.service, &self.selector) {
                (Some(s), None) => Target::Service(s.clone()),
                (None, Some(labels)) => Target::Selector(v1::LabelSelector {
                    match_labels: labels.clone().into_iter().collect(),
                }),
                (Some(_), Some(_)) => {
                    return Err("give one of spec.service and spec.selector, not both".into())
                }
                (None, None) => return Err(
                    "give spec.service (a Service of this namespace) or spec.selector (pod labels)"
                        .into(),
                ),
            };
        Ok(v1::BreakpointSpec {
            target: Some(target),
            location: self.location.clone(),
            when: self.when.clone(),
            hit_limit: self.hits,
            expire_seconds: self.expire_seconds,
            rate_per_second: self.rate_per_second,
            trace_id: self.trace_id.clone(),
            header: self.header.as_ref().map(|h| v1::HeaderMatch {
                name: h.name.clone(),
                value: h.value.clone(),
            }),
            freeze: self.freeze,
            freeze_timeout_seconds: self.freeze_timeout_seconds,
            captures: self.captures.clone(),
            namespace: namespace.to_owned(),
            container: self.container.clone().unwrap_or_default(),
        })
    }

    /// The spec of a breakpoint set through the API (`tracery-ctl`), for its mirror object.
    /// `None` for targets a `Breakpoint` cannot express (`--exe`, `--pid`).
    pub fn from_proto(spec: &v1::BreakpointSpec) -> Option<BreakpointSpec> {
        let (service, selector) = match spec.target.as_ref()? {
            Target::Service(s) => (Some(s.clone()), None),
            Target::Selector(s) => (None, Some(s.match_labels.clone().into_iter().collect())),
            Target::Exe(_) | Target::Pid(_) => return None,
        };
        Some(BreakpointSpec {
            service,
            selector,
            container: Some(spec.container.clone()).filter(|c| !c.is_empty()),
            location: spec.location.clone(),
            when: spec.when.clone(),
            hits: spec.hit_limit,
            expire_seconds: spec.expire_seconds,
            rate_per_second: spec.rate_per_second,
            trace_id: spec.trace_id.clone(),
            header: spec.header.as_ref().map(|h| HeaderMatch {
                name: h.name.clone(),
                value: h.value.clone(),
            }),
            freeze: spec.freeze,
            freeze_timeout_seconds: spec.freeze_timeout_seconds,
            captures: spec.captures.clone(),
        })
    }
}

/// The CRD as YAML, as `deploy/kubernetes/breakpoint-crd.yaml` holds it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = Breakpoint::crd();
    let body = serde_saphyr::to_string(&crd).expect("a CRD always serializes");
    format!(
        "# Generated by `cargo xtask gen-crds` from crates/tracery-crd; do not edit by hand.\n---\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_round_trips_through_the_api_form() {
        let spec = BreakpointSpec {
            service: Some("orders".into()),
            selector: None,
            container: Some("app".into()),
            location: "orders.rs:42".into(),
            when: Some("order.qty > 10".into()),
            hits: Some(5),
            expire_seconds: Some(600),
            rate_per_second: None,
            trace_id: None,
            header: Some(HeaderMatch {
                name: "x-tenant".into(),
                value: "acme".into(),
            }),
            freeze: true,
            freeze_timeout_seconds: Some(30),
            captures: vec!["shop: SELECT 1".into()],
        };
        let wire = spec.to_proto("shop").unwrap();
        assert_eq!(wire.namespace, "shop");
        assert_eq!(wire.container, "app");
        assert_eq!(BreakpointSpec::from_proto(&wire), Some(spec));
    }

    #[test]
    fn a_spec_needs_exactly_one_of_service_and_selector() {
        let mut spec = BreakpointSpec::from_proto(&v1::BreakpointSpec {
            target: Some(Target::Service("orders".into())),
            location: "main.go:10".into(),
            ..Default::default()
        })
        .unwrap();
        spec.selector = Some([("app".to_owned(), "orders".to_owned())].into());
        assert!(spec.to_proto("shop").unwrap_err().contains("not both"));
        spec.service = None;
        spec.selector = None;
        assert!(spec.to_proto("shop").unwrap_err().contains("spec.service"));
    }
}
