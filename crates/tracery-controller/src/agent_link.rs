//! `AgentLink.Session`: one bidirectional stream per agent. Breakpoints, holds, resumes
//! and evaluations go down; hits, drops, health, arm results, freezes, held messages and
//! answers come up.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracery_proto::v1::{self, agent_link_server::AgentLink, agent_message::Message as Up};
use tracery_store::{BreakpointId, NewSnapshot};

use crate::registry::{error_chain, hold_message, store_status, ArmEvent, Registry, Reply};
use crate::{export, snapshot_body};

pub(crate) struct AgentLinkApi {
    registry: Arc<Registry>,
}

impl AgentLinkApi {
    pub fn new(registry: Arc<Registry>) -> Self {
        AgentLinkApi { registry }
    }
}

#[tonic::async_trait]
impl AgentLink for AgentLinkApi {
    type SessionStream = UnboundedReceiverStream<Result<v1::ControllerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        crate::tls::require_agent_cert(self.registry.opts.tls_dir.is_some(), &request)?;
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(v1::AgentMessage {
                message: Some(Up::Hello(hello)),
            }) => hello,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the first message of an agent session must be Hello; \
                     check that agent and controller run the same Tracery version",
                ))
            }
            None => {
                return Err(Status::invalid_argument(
                    "the agent closed the session before sending Hello",
                ))
            }
        };
        if hello.agent_id.is_empty() {
            return Err(Status::invalid_argument(
                "Hello.agent_id is empty; every agent needs a stable id (its node name)",
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let agent_id = hello.agent_id.clone();
        tracing::info!(agent = %agent_id, node = %hello.node, version = %hello.version, "agent connected");
        // Registered before listing, so a breakpoint set meanwhile reaches it (perhaps
        // twice, which arming tolerates) rather than not at all.
        let conn = self.registry.connect(hello, tx.clone());
        let arms = match self.registry.armable_breakpoints().await {
            Ok(live) => self.registry.arms_on_connect(&live),
            Err(e) => Err(store_status(e)),
        };
        let arms = arms.inspect_err(|_| self.registry.disconnect(&agent_id, conn))?;
        // Traces frozen elsewhere are held here too, from now until their deadline.
        let holds = self.registry.traces().holds.active(SystemTime::now());
        let holds = holds.iter().map(|(t, d)| hold_message(t, *d));
        for message in arms.into_iter().chain(holds) {
            let message = v1::ControllerMessage {
                message: Some(message),
            };
            // The receiver is alive: it is returned below.
            let _ = tx.send(Ok(message));
        }
        drop(tx);
        tokio::spawn(run(self.registry.clone(), agent_id, conn, inbound));
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}

/// Handles one agent's messages until its stream ends or the controller stops.
async fn run(
    registry: Arc<Registry>,
    agent_id: String,
    conn: u64,
    mut inbound: Streaming<v1::AgentMessage>,
) {
    let mut stop = registry.stop.clone();
    loop {
        let message = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            message = inbound.message() => message,
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => {
                tracing::info!(agent = %agent_id, %status, "agent stream failed");
                break;
            }
        };
        registry.seen(&agent_id);
        if let Err(status) = handle(&registry, &agent_id, message).await {
            tracing::warn!(agent = %agent_id, %status, "ending agent session");
            // Tell the agent why; it reconnects and resends what was not stored.
            registry.send_to(&agent_id, conn, Err(status));
            break;
        }
    }
    registry.disconnect(&agent_id, conn);
    tracing::info!(agent = %agent_id, "agent disconnected");
}

async fn handle(
    registry: &Registry,
    agent_id: &str,
    message: v1::AgentMessage,
) -> Result<(), Status> {
    match message.message {
        None => Err(Status::invalid_argument(
            "AgentMessage.message is not set; check that agent and controller run the same Tracery version",
        )),
        Some(Up::Hello(_)) => Err(Status::invalid_argument(
            "Hello sent twice in one session; send it only as the first message",
        )),
        Some(Up::Hit(hit)) => store_hit(registry, agent_id, hit).await,
        Some(Up::Drops(drops)) => {
            let delta = registry.drops_delta(agent_id, &drops);
            let id = breakpoint_id(drops.breakpoint_id)?;
            registry
                .store
                .add_drops(agent_id, id, delta)
                .await
                .map_err(store_status)
        }
        Some(Up::Health(health)) => {
            registry.set_health(agent_id, health);
            Ok(())
        }
        Some(Up::ArmResult(result)) => {
            if let Some(v1::arm_result::Result::Error(error)) = &result.result {
                tracing::warn!(agent = %agent_id, breakpoint = result.breakpoint_id, pid = result.pid, %error, "arming failed");
            }
            registry.publish_arm_result(ArmEvent {
                agent_id: agent_id.to_owned(),
                result,
            });
            Ok(())
        }
        Some(Up::TraceFrozen(mut thread)) => {
            thread.trace_id = trace_id(&thread.trace_id, "FrozenThread.trace_id")?;
            tracing::info!(agent = %agent_id, trace = %thread.trace_id, pid = thread.pid, tid = thread.tid, location = %thread.location, "trace frozen");
            let node = registry.node_of(agent_id);
            let trace = thread.trace_id.clone();
            let hold = registry.traces().frozen(agent_id, &node, thread);
            // Every node holds the trace's messages, this one included: the deadline is
            // then the kernel's on every node, not only where the thread froze.
            // A deadline already passed holds nothing: expiry resumes the trace instead.
            if let Some(deadline) = hold.filter(|d| *d > SystemTime::now()) {
                registry.hold_everywhere(&trace, deadline);
            }
            Ok(())
        }
        Some(Up::MessageHeld(mut message)) => {
            message.trace_id = trace_id(&message.trace_id, "HeldMessage.trace_id")?;
            tracing::debug!(agent = %agent_id, trace = %message.trace_id, socket = message.socket, bytes = message.bytes, "message held");
            let node = registry.node_of(agent_id);
            registry.traces().holds.held(agent_id, &node, message);
            Ok(())
        }
        Some(Up::HoldReleased(release)) => {
            let trace = trace_id(&release.trace_id, "HoldRelease.trace_id")?;
            tracing::info!(agent = %agent_id, %trace, messages = release.messages, bytes = release.bytes, dropped_bytes = release.dropped_bytes, "held messages let go");
            registry.traces().holds.released(agent_id, &trace);
            Ok(())
        }
        Some(Up::Messages(batch)) => store_messages(registry, agent_id, batch).await,
        Some(Up::TraceReleased(release)) => {
            let release = checked_release(release)?;
            let node = registry.node_of(agent_id);
            registry.traces().released(agent_id, &node, release);
            Ok(())
        }
        Some(Up::ResumeResult(mut result)) => {
            result.released = result
                .released
                .into_iter()
                .map(checked_release)
                .collect::<Result<_, _>>()?;
            result.last_release = result.last_release.map(checked_release).transpose()?;
            if let Some(held) = result.held.as_mut() {
                held.trace_id = trace_id(&held.trace_id, "ResumeResult.held.trace_id")?;
            }
            let node = registry.node_of(agent_id);
            {
                // Applied now, so a `trace list` right after the resume is up to date even
                // before the agent's own `TraceReleased` and `HoldReleased` arrive.
                let mut traces = registry.traces();
                for r in &result.released {
                    traces.released(agent_id, &node, r.clone());
                }
                if let Some(held) = &result.held {
                    traces.holds.released(agent_id, &held.trace_id);
                }
            }
            registry.answer(agent_id, result.request_id, Reply::Resume(Box::new(result)));
            Ok(())
        }
        Some(Up::EvalResult(result)) => {
            registry.answer(agent_id, result.request_id, Reply::Eval(result));
            Ok(())
        }
    }
}

/// A trace id from an agent in its stored form (32 lowercase hex digits).
fn trace_id(text: &str, field: &str) -> Result<String, Status> {
    tracery_proto::trace::normalize_trace_id(text)
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

fn checked_release(mut release: v1::Release) -> Result<v1::Release, Status> {
    let thread = release
        .thread
        .as_mut()
        .ok_or_else(|| Status::invalid_argument("Release.thread is not set"))?;
    thread.trace_id = trace_id(&thread.trace_id, "Release.thread.trace_id")?;
    Ok(release)
}

/// Stores a hit once (by agent, breakpoint and sequence) and tells watchers about it.
/// Stores a batch of message events (sends and receives of traced requests).
async fn store_messages(
    registry: &Registry,
    agent_id: &str,
    batch: v1::MessageEvents,
) -> Result<(), Status> {
    let events = batch
        .events
        .iter()
        .map(tracery_model::message::MessageEvent::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    if batch.lost_total > 0 {
        tracing::warn!(agent = %agent_id, lost = batch.lost_total, "the agent's kernel lost message events (ring full): some happens-before edges are missing");
    }
    let node = registry.node_of(agent_id);
    let texts: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e.trace_id.to_string(),
                e.local.to_string(),
                e.remote.to_string(),
            )
        })
        .collect();
    let rows: Vec<tracery_store::NewMessage<'_>> = events
        .iter()
        .zip(&texts)
        .map(|(e, (trace, local, remote))| tracery_store::NewMessage {
            agent_id,
            node: &node,
            trace_id: trace,
            kind: e.kind.as_str(),
            local_addr: local,
            remote_addr: remote,
            seq: e.seq,
            bytes: e.bytes,
            pid: e.pid,
            tid: e.tid,
            task: e.task,
            process_name: &e.process_name,
            time: e.time,
            held: e.held,
        })
        .collect();
    registry
        .store
        .insert_messages(&rows)
        .await
        .map_err(store_status)?;
    Ok(())
}

async fn store_hit(registry: &Registry, agent_id: &str, hit: v1::Hit) -> Result<(), Status> {
    let mut snapshot = hit
        .snapshot
        .ok_or_else(|| Status::invalid_argument("Hit.snapshot is not set"))?;
    let time = snapshot
        .time
        .ok_or_else(|| Status::invalid_argument("Hit.snapshot.time is not set"))?;
    let time = SystemTime::try_from(time).map_err(|e| {
        Status::invalid_argument(format!(
            "Hit.snapshot.time is not a representable time: {e}"
        ))
    })?;
    let breakpoint = breakpoint_id(snapshot.breakpoint_id)?;
    if !registry.captures.knows(snapshot.breakpoint_id) {
        registry.load_captures(breakpoint).await?;
    }
    // Read before storing: the rows are part of the snapshot, and for a frozen request
    // they are read while it is still frozen (its resume waits for reads to settle).
    snapshot.databases = registry
        .captures
        .read(snapshot.breakpoint_id, &snapshot)
        .await;
    let body = snapshot_body::encode(&snapshot);
    let inserted = registry
        .store
        .insert_snapshot(&NewSnapshot {
            agent_id,
            breakpoint_id: breakpoint,
            seq: hit.sequence,
            pid: snapshot.pid,
            tid: snapshot.tid,
            time,
            trace_id: snapshot.trace_id.as_deref(),
            body: &body,
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %error_chain(&e), "cannot store a hit");
            Status::unavailable(format!(
                "the controller could not store the hit: {}",
                error_chain(&e)
            ))
        })?;
    if !inserted.duplicate {
        snapshot.id = u64::try_from(inserted.id.0).unwrap_or_default();
        if registry.export.enabled() {
            registry
                .export
                .send(export::Item::Snapshot(Box::new(export::SnapshotItem {
                    snapshot: snapshot.clone(),
                    host: registry.node_of(agent_id),
                    exe: registry.exe_of(agent_id, snapshot.pid),
                    local: registry.opts.local_agent.as_deref() == Some(agent_id),
                })));
        }
        registry.publish_snapshot(snapshot);
        // Each agent stops at the limit on its own; the limit is over every node's hits.
        match registry.count_hit(breakpoint).await {
            Ok(true) => {
                tracing::info!(
                    breakpoint = breakpoint.0,
                    "breakpoint reached its hit limit; disarming it on every agent"
                );
                registry.disarm(u64::try_from(breakpoint.0).unwrap_or_default());
            }
            Ok(false) => {}
            // The hit is stored; the agents' own limits still hold.
            Err(e) => tracing::warn!(
                breakpoint = breakpoint.0,
                error = %error_chain(&e),
                "cannot count the breakpoint's hits; other nodes stay armed until their own \
                 limits or expiry"
            ),
        }
    }
    Ok(())
}

fn breakpoint_id(id: u64) -> Result<BreakpointId, Status> {
    i64::try_from(id)
        .map(BreakpointId)
        .map_err(|_| Status::invalid_argument(format!("breakpoint id {id} is out of range")))
}
