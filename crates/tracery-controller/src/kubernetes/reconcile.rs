//! The `Breakpoint` reconciler, in controller-runtime's shape: [`reconcile`] makes the
//! controller's breakpoint match the object and reports back in its status;
//! [`error_policy`] retries what failed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tracery_crd::{Breakpoint, BreakpointStatus, Condition};
use tracery_store::{BreakpointId, BreakpointRecord, SnapshotId};

use super::{Cluster, ID_LABEL};
use crate::breakpoints;
use crate::registry::Registry;

/// Finalizer that disarms a breakpoint before its object goes.
pub(crate) const FINALIZER: &str = "tracery.dev/disarm";
/// Field manager of the controller's patches.
const MANAGER: &str = "tracery-controller";
/// How often a live breakpoint's status (hits, pods) is refreshed.
const REFRESH: Duration = Duration::from_secs(15);
/// Wait before retrying a reconcile that failed.
const RETRY: Duration = Duration::from_secs(30);

/// What the reconciler needs.
pub(crate) struct Context {
    pub registry: Arc<Registry>,
    pub client: Client,
}

/// Why a reconcile failed; retried by [`error_policy`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("the controller's store: {0}")]
    Store(String),
    #[error("finalizer: {0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<ReconcileError>>),
}

/// Reconciles every `Breakpoint` in the cluster until the controller stops.
pub(crate) async fn run(registry: Arc<Registry>, client: Client) {
    let api = Api::<Breakpoint>::all(client.clone());
    let context = Arc::new(Context { registry, client });
    Controller::new(api, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile");
            }
        })
        .await;
}

/// Makes the controller's breakpoint match `object`: arms it once (again after its spec
/// changes), disarms it when the object is deleted, and writes the status.
pub(crate) async fn reconcile(
    object: Arc<Breakpoint>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = object.namespace().unwrap_or_else(|| "default".into());
    let api = Api::<Breakpoint>::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, object, |event| async {
        match event {
            Event::Apply(object) => apply(&object, &api, &ctx).await,
            Event::Cleanup(object) => cleanup(&object, &ctx).await,
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalizer(Box::new(e)))
}

/// Retries a failed reconcile after [`RETRY`].
pub(crate) fn error_policy(
    object: Arc<Breakpoint>,
    error: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(breakpoint = %object.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(RETRY)
}

/// The controller's breakpoint of `object`: the id label (set by us, or by the CLI's
/// mirror), else the status.
fn breakpoint_id(object: &Breakpoint) -> Option<u64> {
    object
        .labels()
        .get(ID_LABEL)
        .and_then(|v| v.parse().ok())
        .or_else(|| object.status.as_ref()?.breakpoint_id)
}

/// Breakpoint `id` if it is still live (not deleted, expired or at its hit limit).
async fn live_record(reg: &Registry, id: u64) -> Result<Option<BreakpointRecord>, ReconcileError> {
    let live = reg
        .armable_breakpoints()
        .await
        .map_err(|e| ReconcileError::Store(e.to_string()))?;
    Ok(live
        .into_iter()
        .find(|r| u64::try_from(r.id.0).ok() == Some(id)))
}

async fn apply(
    object: &Breakpoint,
    api: &Api<Breakpoint>,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let reg = &ctx.registry;
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_else(|| "default".into());
    let generation = object.metadata.generation;
    let old = object.status.clone().unwrap_or_default();
    // An object seen before whose spec changed since: its breakpoint is replaced.
    let edited = old.observed_generation.is_some() && old.observed_generation != generation;
    let mut id = breakpoint_id(object);
    let mut failure = None;
    if let (Some(old_id), true) = (id, edited) {
        breakpoints::delete(reg, old_id)
            .await
            .map_err(|s| ReconcileError::Store(s.message().to_owned()))?;
        id = None;
    }
    if id.is_none() {
        match object.spec.to_proto(&namespace) {
            Err(invalid) => failure = Some(("Invalid", invalid)),
            Ok(spec) => match breakpoints::set(reg, spec).await {
                Ok(set) => {
                    let new = set.breakpoint.map(|b| b.id);
                    if let Some(new) = new {
                        let label = json!({"metadata": {"labels": {ID_LABEL: new.to_string()}}});
                        api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Merge(&label))
                            .await?;
                    }
                    id = new;
                }
                Err(status) => failure = Some(("ArmFailed", status.message().to_owned())),
            },
        }
    }
    let mut status = BreakpointStatus {
        breakpoint_id: id,
        observed_generation: generation,
        last_snapshot_id: old.last_snapshot_id,
        ..BreakpointStatus::default()
    };
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let condition = |type_: &str, state: bool, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: if state { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        last_transition_time: now.clone(),
        observed_generation: generation,
    };
    let record = match id {
        Some(id) => live_record(reg, id).await?,
        None => None,
    };
    let live = record.is_some();
    if let Some((reason, message)) = failure {
        status
            .conditions
            .push(condition("Ready", false, reason, message));
    } else if let Some(record) = &record {
        let id = u64::try_from(record.id.0).unwrap_or_default();
        let target_problem = fill_live(&mut status, record, reg).await?;
        let armed = status.armed_pods;
        let pods = status.pods.len();
        let message = match (pods, armed) {
            (0, _) => "no running pod matches yet; it is armed on pods as they start".to_owned(),
            (p, a) if a as usize == p => format!("armed on the agents of all {p} pods"),
            (p, a) => format!("{a} of {p} pods run on a node with a connected agent"),
        };
        status
            .conditions
            .push(condition("Ready", true, "Armed", message));
        let mut problems = reg.problems(id);
        problems.extend(target_problem);
        if !problems.is_empty() {
            status.conditions.push(condition(
                "Problems",
                true,
                "ArmErrors",
                problems.join("; "),
            ));
        }
    } else {
        if let Some(id) = id {
            status.hits = hits(reg, id).await?;
        }
        status.conditions.push(condition(
            "Ready",
            false,
            "Ended",
            "it expired or reached its hit limit and is disarmed; edit the spec or re-create \
             the object to arm it again"
                .into(),
        ));
    }
    keep_transition_times(&mut status, &old);
    if status != old {
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await?;
    }
    Ok(if live {
        Action::requeue(REFRESH)
    } else {
        Action::await_change()
    })
}

/// Pods, nodes, hits and the latest snapshot of live breakpoint `id`.
async fn fill_live(
    status: &mut BreakpointStatus,
    record: &BreakpointRecord,
    reg: &Registry,
) -> Result<Option<String>, ReconcileError> {
    let mut problem = None;
    if let Some(route) = reg.cluster().and_then(|c| c.route(record)) {
        let connected = reg.connected_nodes();
        status.armed_pods = route
            .pods
            .iter()
            .filter(|p| connected.contains(&p.node))
            .count()
            .try_into()
            .unwrap_or(u32::MAX);
        status.nodes = Cluster::nodes_of(&route.pods).into_iter().collect();
        status.pods = route.pods;
        problem = route.problem;
    }
    status.hits = reg
        .hits(record.id)
        .await
        .map_err(|e| ReconcileError::Store(e.to_string()))?;
    // Page on from the last id reported, so a restart catches up without a scan.
    let mut after = status
        .last_snapshot_id
        .and_then(|s| i64::try_from(s).ok())
        .map(SnapshotId);
    loop {
        let page = reg
            .store
            .list_snapshots(Some(record.id), after, 1000)
            .await
            .map_err(|e| ReconcileError::Store(e.to_string()))?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        if page.len() < 1000 {
            break;
        }
    }
    status.last_snapshot_id = after.and_then(|s| u64::try_from(s.0).ok());
    Ok(problem)
}

async fn hits(reg: &Registry, id: u64) -> Result<u64, ReconcileError> {
    let id = BreakpointId(i64::try_from(id).unwrap_or(i64::MAX));
    reg.hits(id)
        .await
        .map_err(|e| ReconcileError::Store(e.to_string()))
}

/// A condition whose state did not change keeps its transition time, so the status is
/// patched only when something changed.
fn keep_transition_times(status: &mut BreakpointStatus, old: &BreakpointStatus) {
    for c in &mut status.conditions {
        if let Some(o) = old.conditions.iter().find(|o| o.type_ == c.type_) {
            if o.status == c.status && o.reason == c.reason {
                c.last_transition_time = o.last_transition_time.clone();
            }
        }
    }
}

async fn cleanup(object: &Breakpoint, ctx: &Context) -> Result<Action, ReconcileError> {
    if let Some(id) = breakpoint_id(object) {
        breakpoints::delete(&ctx.registry, id)
            .await
            .map_err(|s| ReconcileError::Store(s.message().to_owned()))?;
    }
    Ok(Action::await_change())
}
