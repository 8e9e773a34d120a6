//! Which agents get which breakpoint in cluster mode: a breakpoint on a Service or on pod
//! labels goes to the agents of the nodes its pods run on, as a label selector each agent
//! matches against the pods of its node. When pods start, restart or move, the router sends
//! each affected agent its node's pods and the breakpoints it now needs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tracery_crd::TargetPod;
use tracery_proto::v1::{self, breakpoint_spec::Target, controller_message::Message as Down};
use tracery_store::BreakpointRecord;

use super::Cluster;
use crate::registry::Registry;
use crate::spec::{self, StoredSpec};

/// Where one breakpoint goes in the cluster.
pub(crate) struct Route {
    /// The `Arm`, its target rewritten to the pods' label selector.
    pub arm: Down,
    /// The pods it targets now.
    pub pods: Vec<TargetPod>,
    /// Their nodes.
    pub nodes: BTreeSet<String>,
    /// Why it targets nothing (a Service that does not exist).
    pub problem: Option<String>,
}

/// What one agent session has been sent.
#[derive(Default)]
pub(crate) struct Sent {
    conn: u64,
    node_pods: Option<v1::NodePods>,
    armed: BTreeSet<u64>,
}

/// Per agent id, what its current session has been sent.
pub(crate) type SentByAgent = Mutex<BTreeMap<String, Sent>>;

impl Cluster {
    /// The route of `record`; `None` for breakpoints that are not on pods (`--exe`,
    /// `--pid`), which go to every agent as outside a cluster.
    pub fn route(&self, record: &BreakpointRecord) -> Option<Route> {
        let spec = StoredSpec::from_json(&record.spec).ok()?;
        let selector = self.selector(&spec)?;
        let mut bp = spec::breakpoint_proto(record).ok()?;
        let (pods, problem, labels) = match selector {
            Ok((namespace, labels)) => (self.pods_matching(&namespace, &labels), None, labels),
            Err(e) => (Vec::new(), Some(e), BTreeMap::new()),
        };
        if let Some(s) = bp.spec.as_mut() {
            s.target = Some(Target::Selector(v1::LabelSelector {
                match_labels: labels.into_iter().collect(),
            }));
        }
        Some(Route {
            arm: Down::Arm(v1::Arm {
                breakpoint: Some(bp),
            }),
            nodes: Cluster::nodes_of(&pods),
            pods,
            problem,
        })
    }
}

/// Sends every connected agent its node's pods when they changed, then the breakpoints
/// its node now needs. Returns, per breakpoint id, the agents it was just sent to.
pub(crate) async fn sync(reg: &Registry, cluster: &Cluster) -> BTreeMap<u64, Vec<String>> {
    let live = match reg.armable_breakpoints().await {
        Ok(live) => live,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read breakpoints to route them; retrying on the next change");
            return BTreeMap::new();
        }
    };
    let routes: Vec<(u64, Route)> = live
        .iter()
        .filter_map(|r| Some((u64::try_from(r.id.0).ok()?, cluster.route(r)?)))
        .collect();
    let live_ids: BTreeSet<u64> = routes.iter().map(|(id, _)| *id).collect();
    let mut armed: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut sent = cluster.sent.lock().unwrap_or_else(|e| e.into_inner());
    for (agent_id, conn, node) in reg.cluster_agents() {
        let state = sent.entry(agent_id.clone()).or_default();
        if state.conn != conn {
            // A new session starts from nothing.
            *state = Sent {
                conn,
                ..Sent::default()
            };
        }
        let pods = cluster.node_pods(&node);
        if state.node_pods.as_ref() != Some(&pods) {
            reg.send_to_session(&agent_id, conn, Down::NodePods(pods.clone()));
            state.node_pods = Some(pods);
        }
        state.armed.retain(|id| live_ids.contains(id));
        for (id, route) in &routes {
            if route.nodes.contains(&node) && state.armed.insert(*id) {
                reg.send_to_session(&agent_id, conn, route.arm.clone());
                armed.entry(*id).or_default().push(agent_id.clone());
            }
        }
    }
    armed
}

/// Routes again on every change of pods, Services, agents or breakpoints, until the
/// controller stops.
pub(crate) async fn run(reg: Arc<Registry>, cluster: Arc<Cluster>) {
    let mut changes = cluster.changes();
    let mut stop = reg.stop.clone();
    loop {
        sync(&reg, &cluster).await;
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}
