//! Setting and deleting breakpoints, shared by the `Tracery` API (`tracery-ctl`) and the
//! `Breakpoint` reconciler (cluster mode): both go through the same checks and arming.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;
use tokio::time::Instant;
use tonic::Status;
use tracery_proto::v1::{self, arm_result};
use tracery_store::BreakpointId;

use crate::registry::{store_status, Registry};
use crate::spec::StoredSpec;

/// How long `SetBreakpoint` waits for agents to report whether the location resolves
/// (reading a large binary's DWARF the first time takes seconds).
const ARM_WAIT: Duration = Duration::from_secs(10);
/// Once every agent answered, how long more results (other processes) may still come.
const ARM_GRACE: Duration = Duration::from_millis(100);

/// Checks `request`, stores the breakpoint and arms it where its target runs. A
/// breakpoint whose location resolves nowhere it was tried is not kept.
pub(crate) async fn set(
    reg: &Registry,
    request: v1::BreakpointSpec,
) -> Result<v1::SetBreakpointResponse, Status> {
    let mut spec = StoredSpec::from_request(request, reg.target_rules(), &reg.opts.defaults)?;
    if let Some(cluster) = reg.cluster() {
        cluster.check_target(&spec)?;
    }
    spec.capture_paths = reg.captures.check(&spec.captures)?;
    let expires_at = SystemTime::now() + Duration::from_secs(spec.expire_seconds);
    let id = reg
        .store
        .create_breakpoint(&spec.to_json(), expires_at)
        .await
        .map_err(store_status)?;
    let record = reg
        .store
        .list_breakpoints(false)
        .await
        .map_err(store_status)?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| {
            Status::internal(format!(
                "breakpoint {id} vanished from the store after it was set"
            ))
        })?;
    let breakpoint = reg.breakpoint_with_counts(&record).await?;
    // Known before any agent arms it, so its first hit is read.
    reg.captures.register(breakpoint.id, &spec.captures);
    // Subscribed before arming, so no answer is missed.
    let results = reg.watch_arm_results();
    let agents = reg.arm(&record).await?;
    let outcome = wait_for_arming(results, breakpoint.id, &agents).await;
    if !outcome.failed() {
        tracing::info!(
            breakpoint = breakpoint.id,
            agents = agents.len(),
            "breakpoint set"
        );
        let arm_results = outcome
            .results
            .into_iter()
            .map(|(agent_id, result)| v1::AgentArmResult {
                node: reg.node_of(&agent_id),
                agent_id,
                result: Some(result),
            })
            .collect();
        return Ok(v1::SetBreakpointResponse {
            breakpoint: Some(breakpoint),
            arm_results,
            unanswered_agents: outcome.waiting,
        });
    }
    // Agents that should arm it answered with errors only: the location does not
    // resolve anywhere it was tried. Do not keep a breakpoint that can never hit.
    reg.store
        .delete_breakpoint(id)
        .await
        .map_err(store_status)?;
    reg.disarm(breakpoint.id);
    reg.captures.forget(breakpoint.id);
    Err(Status::failed_precondition(format!(
        "cannot set a breakpoint at {}: {}",
        spec.location,
        outcome.errors_text(reg)
    )))
}

/// Deletes breakpoint `id` and disarms it everywhere; false when there is no such live
/// breakpoint.
pub(crate) async fn delete(reg: &Registry, id: u64) -> Result<bool, Status> {
    let deleted = match i64::try_from(id) {
        Ok(raw) => reg
            .store
            .delete_breakpoint(BreakpointId(raw))
            .await
            .map_err(store_status)?,
        Err(_) => false,
    };
    if deleted {
        reg.disarm(id);
        reg.captures.forget(id);
        tracing::info!(breakpoint = id, "breakpoint deleted");
    }
    Ok(deleted)
}

/// What agents said about arming one new breakpoint.
#[derive(Default)]
struct ArmOutcome {
    /// Every result for it, in arrival order: (agent id, result).
    results: Vec<(String, v1::ArmResult)>,
    /// Agents that had not answered when the wait ended.
    waiting: Vec<String>,
}

impl ArmOutcome {
    /// True when agents answered with errors and armed no probe anywhere: the location
    /// has no code in the processes that should carry it.
    fn failed(&self) -> bool {
        let mut errors = false;
        for (_, r) in &self.results {
            match r.result {
                Some(arm_result::Result::Probes(n)) if n > 0 => return false,
                Some(arm_result::Result::Error(_)) => errors = true,
                _ => {}
            }
        }
        errors
    }

    /// Each error once, with the (node, pid) pairs that reported it.
    fn errors_text(&self, reg: &Registry) -> String {
        let mut errors: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (agent, r) in &self.results {
            if let Some(arm_result::Result::Error(e)) = &r.result {
                let node = reg.node_of(agent);
                let node = if node.is_empty() {
                    agent.as_str()
                } else {
                    &node
                };
                // Pid 0: the agent's answer for the target as a whole (its file).
                errors.entry(e).or_default().push(match r.pid {
                    0 => format!("node {node}"),
                    pid => format!("node {node} pid {pid}"),
                });
            }
        }
        let text = errors
            .iter()
            .map(|(error, places)| format!("{error} ({})", places.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        cap_message(text)
    }
}

/// Longest error text put in a gRPC status: the message travels in an HTTP/2 trailer,
/// percent-encoded, and one over the peer's header limit (a verifier log can be tens of
/// KiB) reaches the user as a bare "h2 protocol error".
const MAX_MESSAGE: usize = 2000;

fn cap_message(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let more = text.len() - cut;
        text.truncate(cut);
        text.push_str(&format!(" … ({more} more bytes in the agent's log)"));
    }
    text
}

/// Collects arm results for `breakpoint_id` until every agent in `agents` answered (plus
/// a short grace for its other processes) or [`ARM_WAIT`] passed.
async fn wait_for_arming(
    mut results: broadcast::Receiver<crate::registry::ArmEvent>,
    breakpoint_id: u64,
    agents: &[String],
) -> ArmOutcome {
    let mut outcome = ArmOutcome::default();
    let mut waiting: BTreeSet<&str> = agents.iter().map(String::as_str).collect();
    let mut deadline = Instant::now() + ARM_WAIT;
    while !agents.is_empty() {
        let event = match tokio::time::timeout_at(deadline, results.recv()).await {
            Err(_elapsed) => break,
            Ok(Ok(event)) => event,
            // Missed some results under load: decide on what was seen.
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(broadcast::error::RecvError::Closed)) => break,
        };
        if event.result.breakpoint_id != breakpoint_id {
            continue;
        }
        waiting.remove(event.agent_id.as_str());
        outcome.results.push((event.agent_id, event.result));
        if waiting.is_empty() {
            deadline = deadline.min(Instant::now() + ARM_GRACE);
        }
    }
    outcome.waiting = waiting.into_iter().map(str::to_owned).collect();
    outcome
}
