//! The trace RPCs of `Tracery`: list and show frozen traces with their held messages,
//! resume them on every agent, and evaluate expressions in a stopped thread.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;
use tonic::Status;
use tracery_proto::v1::{self, controller_message::Message as Down};

use crate::holds::HeldOn;
use crate::registry::{store_status, Registry, Reply};
use crate::snapshot_body;
use crate::traces::{not_frozen_text, Frozen, Held};

/// How long `ResumeTrace` waits for agents to answer.
const RESUME_WAIT: Duration = Duration::from_secs(5);
/// How long `EvalTrace` waits for the agent (it reads the stopped thread's memory).
const EVAL_WAIT: Duration = Duration::from_secs(10);
/// Snapshots shown per trace.
const TRACE_SNAPSHOTS: u32 = 100;

/// A user's trace id in its stored form, or why it is not one.
fn trace_id(text: &str) -> Result<String, Status> {
    tracery_proto::trace::normalize_trace_id(text)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

fn held_thread(registry: &Registry, h: Held) -> v1::HeldThread {
    v1::HeldThread {
        agent_connected: registry.is_connected(&h.agent_id),
        agent_id: h.agent_id,
        node: h.node,
        thread: Some(h.thread),
    }
}

fn held_message(registry: &Registry, h: HeldOn) -> v1::NodeHeldMessage {
    v1::NodeHeldMessage {
        agent_connected: registry.is_connected(&h.agent_id),
        agent_id: h.agent_id,
        node: h.node,
        message: Some(h.message),
    }
}

/// A trace as the API shows it, without its snapshots and last release.
fn trace_message(registry: &Registry, f: Frozen) -> v1::Trace {
    v1::Trace {
        threads: f
            .threads
            .into_iter()
            .map(|h| held_thread(registry, h))
            .collect(),
        messages: f
            .messages
            .into_iter()
            .map(|h| held_message(registry, h))
            .collect(),
        hold_deadline: f.hold_deadline.map(Into::into),
        trace_id: f.trace_id,
        last_release: None,
        snapshots: vec![],
        events: vec![],
        edges: vec![],
        critical_path: vec![],
        services: vec![],
    }
}

/// Every frozen trace: a frozen thread or a held message somewhere.
pub(crate) async fn list(registry: &Registry) -> Result<v1::ListTracesResponse, Status> {
    let all = registry.traces().all();
    let mut traces = Vec::with_capacity(all.len());
    for frozen in all {
        let mut trace = trace_message(registry, frozen);
        trace.snapshots = snapshots(registry, &trace.trace_id).await?;
        traces.push(trace);
    }
    Ok(v1::ListTracesResponse { traces })
}

/// One trace: frozen, or known by its last release or its snapshots.
pub(crate) async fn get(registry: &Registry, text: &str) -> Result<v1::Trace, Status> {
    let trace_id = trace_id(text)?;
    let (frozen, last_release) = {
        let traces = registry.traces();
        (traces.trace(&trace_id), traces.last_release(&trace_id))
    };
    let mut trace = trace_message(registry, frozen);
    trace.snapshots = snapshots(registry, &trace_id).await?;
    trace.last_release = last_release;
    let graph =
        crate::causal::GraphFields::from(crate::causal::for_trace(registry, &trace_id).await?);
    trace.events = graph.events;
    trace.edges = graph.edges;
    trace.critical_path = graph.critical_path;
    trace.services = graph.services;
    if trace.threads.is_empty()
        && trace.messages.is_empty()
        && trace.last_release.is_none()
        && trace.snapshots.is_empty()
        && trace.events.is_empty()
    {
        return Err(Status::not_found(format!(
            "trace {trace_id} was never frozen and has no snapshots or messages; \
             `tracery-ctl trace list` shows the frozen traces"
        )));
    }
    Ok(trace)
}

/// Snapshots stored for a trace, in short.
async fn snapshots(registry: &Registry, trace_id: &str) -> Result<Vec<v1::TraceSnapshot>, Status> {
    let records = registry
        .store
        .list_trace_snapshots(trace_id, TRACE_SNAPSHOTS)
        .await
        .map_err(store_status)?;
    Ok(records
        .into_iter()
        .map(|r| {
            // A body this version cannot read still lists, without its location.
            let location = snapshot_body::decode(&r.body).ok().and_then(|s| s.location);
            v1::TraceSnapshot {
                id: u64::try_from(r.summary.id.0).unwrap_or_default(),
                breakpoint_id: u64::try_from(r.summary.breakpoint_id.0).unwrap_or_default(),
                location,
                time: Some(r.summary.time.into()),
                pid: r.summary.pid,
                tid: r.summary.tid,
            }
        })
        .collect())
}

/// Asks every connected agent to let the trace go (every agent holds its messages, and an
/// agent may hold a thread before its report arrives) and waits for their answers.
pub(crate) async fn resume(
    registry: &Registry,
    text: &str,
) -> Result<v1::ResumeTraceResponse, Status> {
    let trace_id = trace_id(text)?;
    // A hit's database rows are read while its request is frozen: let running reads
    // finish (each is bounded by the statement timeout) before anything is released.
    registry
        .captures
        .settled(&trace_id, registry.captures.settle_time())
        .await;
    let holders: BTreeSet<String> = {
        let mut traces = registry.traces();
        // Ended first, so an agent connecting meanwhile is not told to hold it.
        traces.holds.end(&trace_id);
        let frozen = traces.trace(&trace_id);
        let threads = frozen.threads.into_iter().map(|h| h.agent_id);
        threads
            .chain(frozen.messages.into_iter().map(|h| h.agent_id))
            .collect()
    };
    let (request_id, mut replies) = registry.open_request();
    let mut waiting = BTreeSet::new();
    for agent in registry.connected_agents() {
        let message = Down::ResumeTrace(v1::ResumeTrace {
            request_id,
            trace_id: trace_id.clone(),
        });
        if registry.send_to_agent(&agent, message) {
            waiting.insert(agent);
        }
    }
    let mut released = Vec::new();
    let mut held_released = Vec::new();
    let mut agent_last = Vec::new();
    let deadline = Instant::now() + RESUME_WAIT;
    while !waiting.is_empty() {
        let Ok(Some((agent, reply))) = tokio::time::timeout_at(deadline, replies.recv()).await
        else {
            break;
        };
        let Reply::Resume(result) = reply else {
            continue;
        };
        let result = *result;
        if !waiting.remove(&agent) {
            continue;
        }
        let node = registry.node_of(&agent);
        for release in result.released {
            released.push(v1::HeldRelease {
                agent_id: agent.clone(),
                node: node.clone(),
                release: Some(release),
            });
        }
        // A node that held nothing of the trace has nothing to say.
        if let Some(release) = result
            .held
            .filter(|h| h.messages > 0 || h.dropped_bytes > 0)
        {
            held_released.push(v1::NodeHoldRelease {
                agent_id: agent.clone(),
                node: node.clone(),
                release: Some(release),
            });
        }
        if let Some(release) = result.last_release {
            agent_last.push(v1::HeldRelease {
                agent_id: agent.clone(),
                node: node.clone(),
                release: Some(release),
            });
        }
    }
    registry.close_request(request_id);
    let mut unanswered: Vec<String> = waiting.into_iter().collect();
    // Holders whose stream is down were not asked: what they hold goes at the deadline.
    unanswered.extend(
        holders
            .into_iter()
            .filter(|h| !registry.is_connected(h))
            .map(|h| format!("{h} (disconnected)")),
    );
    let last_release = if released.is_empty() && held_released.is_empty() {
        // What the controller saw, or what an agent remembers (the controller restarted).
        let mut traces = registry.traces();
        for l in agent_last {
            if let Some(r) = l.release {
                traces.released(&l.agent_id, &l.node, r);
            }
        }
        traces.last_release(&trace_id)
    } else {
        None
    };
    tracing::info!(trace = %trace_id, released = released.len(), held_released = held_released.len(), unanswered = ?unanswered, "resume");
    Ok(v1::ResumeTraceResponse {
        trace_id,
        released,
        last_release,
        unanswered,
        held_released,
    })
}

/// Evaluates `expr` in the stopped thread of the trace, on the agent that holds it.
pub(crate) async fn eval(
    registry: &Registry,
    text: &str,
    expr: &str,
) -> Result<v1::EvalTraceResponse, Status> {
    let trace_id = trace_id(text)?;
    if expr.trim().is_empty() {
        return Err(Status::invalid_argument(
            "the expression is empty; give a variable or field path, e.g. order.qty",
        ));
    }
    let (frozen, last) = {
        let traces = registry.traces();
        (traces.trace(&trace_id), traces.last_release(&trace_id))
    };
    let held = frozen.threads;
    if held.is_empty() && !frozen.messages.is_empty() {
        return Err(Status::failed_precondition(format!(
            "trace {trace_id} has {} held message(s) but no frozen thread; \
             `trace eval` reads a stopped thread, `trace view` shows the held messages",
            frozen.messages.len()
        )));
    }
    if held.is_empty() {
        return Err(Status::not_found(format!(
            "{}; `trace eval` reads a thread only while its trace is frozen",
            not_frozen_text(&trace_id, last.as_ref())
        )));
    }
    let Some(stopped) = held
        .iter()
        .find(|h| h.thread.suspended && registry.is_connected(&h.agent_id))
        .cloned()
    else {
        let why: Vec<String> = held
            .iter()
            .map(|h| {
                let reason = if !h.thread.suspended {
                    h.thread.not_suspended_reason.clone()
                } else {
                    format!("agent {} is disconnected", h.agent_id)
                };
                format!(
                    "pid {} tid {} on {}: {reason}",
                    h.thread.pid, h.thread.tid, h.node
                )
            })
            .collect();
        return Err(Status::failed_precondition(format!(
            "trace {trace_id} is frozen but none of its threads is stopped ({}); \
             `trace eval` needs a stopped thread, `trace view` shows the snapshot",
            why.join("; ")
        )));
    };
    let (request_id, mut replies) = registry.open_request();
    let sent = registry.send_to_agent(
        &stopped.agent_id,
        Down::EvalTrace(v1::EvalTrace {
            request_id,
            trace_id: trace_id.clone(),
            expr: expr.to_owned(),
        }),
    );
    let want = stopped.agent_id.clone();
    let answer = async move {
        while let Some((agent, reply)) = replies.recv().await {
            if let (true, Reply::Eval(result)) = (agent == want, reply) {
                return Some(result);
            }
        }
        None
    };
    let answer = if sent {
        tokio::time::timeout(EVAL_WAIT, answer).await.ok().flatten()
    } else {
        None
    };
    let (agent_id, node) = (stopped.agent_id.clone(), stopped.node.clone());
    registry.close_request(request_id);
    let Some(result) = answer else {
        return Err(Status::unavailable(format!(
            "agent {agent_id} on {node} did not answer within {}s; check `tracery-ctl status`",
            EVAL_WAIT.as_secs()
        )));
    };
    match result.result {
        Some(v1::eval_result::Result::Json(json)) => Ok(v1::EvalTraceResponse {
            thread: Some(held_thread(registry, stopped)),
            json,
        }),
        // The agent's words, as they are: they name the expression's problem.
        Some(v1::eval_result::Result::Error(error)) => Err(Status::failed_precondition(error)),
        None => Err(Status::internal(
            "the agent's EvalResult has no result; check that agent and controller run the same Tracery version",
        )),
    }
}
