//! The agent side of `AgentLink`: one `Session` stream to the controller, kept up with
//! backoff. Breakpoints come down and are armed by the [`Manager`](crate::Manager) on its
//! own thread; hits, drop totals, health, frozen and released traces and held messages go
//! up. Holds come down and are handed to the Manager; resumes and evaluations come down
//! and are answered once the Manager has done them.
//!
//! Capture goes on while the controller is away: hits wait in the [`outbox::Outbox`]
//! (bounded, overflow counted as drops) and are resent after a reconnect with the same
//! per-breakpoint sequence numbers, so the controller stores each once.

mod arm;
mod outbox;
mod pods;
mod report;
pub mod wire;
mod worker;

use std::{
    collections::{hash_map::RandomState, BTreeMap},
    future::Future,
    hash::{BuildHasher, Hasher},
    path::PathBuf,
    pin::Pin,
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};
use tonic::{
    codegen::tokio_stream::wrappers::ReceiverStream,
    transport::{ClientTlsConfig, Endpoint, Uri},
    Streaming,
};
use tracery_proto::v1::{
    self, agent_link_client::AgentLinkClient, agent_message, controller_message,
};

pub use outbox::{BUFFER_CAP, SETTLE};
pub use report::local_agent_id;
pub use worker::error_chain;

use crate::{
    discovery::Services,
    error::AgentError,
    freeze::{FreezeEvent, ResumeOutcome, TraceId},
    manager::{BreakpointSpec, BreakpointStatus, Target},
    pods::PodDirectory,
};
use arm::{arm_error, arm_results};
use worker::{Command, Worker, WorkerState};

/// First reconnect delay; doubles per failure up to [`BACKOFF_MAX`], with jitter.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often changed drop totals go up.
const DROPS_EVERY: Duration = Duration::from_secs(1);
/// How often health goes up.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// Messages queued for the stream before sending waits.
const STREAM_QUEUE: usize = 1024;
/// HTTP/2 pings find a dead controller well within [`SETTLE`].
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Where the link connects and what it resolves service names with.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// The controller, e.g. `http://127.0.0.1:7777`.
    pub controller: String,
    /// Service definitions from `tracery.toml`, for breakpoints set by `--service`.
    pub services: Services,
    /// Where the agent keeps its stable id (`agent-id`).
    pub data_dir: PathBuf,
    /// Cluster mode: this agent's Kubernetes node (`--kubernetes-node`); the controller
    /// then sends the node's pods, and breakpoints may select pods by label.
    pub kubernetes_node: Option<String>,
}

/// Why the link stopped.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{url:?} is not a valid controller URL; use http://HOST:PORT")]
    Url {
        url: String,
        #[source]
        source: tonic::codegen::http::uri::InvalidUri,
    },
    #[error("cannot use TLS for {url}; use an https:// controller URL with --tls-dir")]
    Tls {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("the capture thread stopped; see the log above for why")]
    WorkerGone,
}

/// Why a `Session` stream to the controller could not be opened (the link retries).
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("cannot connect")]
    Connect(#[source] tonic::transport::Error),
    #[error("the stream closed before Hello")]
    Closed,
    #[error("the controller refused the session")]
    Refused(#[source] tonic::Status),
}

/// Runs the agent until `shutdown` completes: loads eBPF (needs root), connects to the
/// controller and keeps reconnecting. Probes are detached before it returns.
pub async fn run(
    opts: LinkOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), LinkError> {
    run_with_tls(opts, None, shutdown).await
}

/// [`run`], over TLS with this client certificate and CA when `tls` is given (the
/// controller refuses agents without a certificate its CA signed).
pub async fn run_with_tls(
    opts: LinkOptions,
    tls: Option<ClientTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), LinkError> {
    let uri: Uri = opts.controller.parse().map_err(|source| LinkError::Url {
        url: opts.controller.clone(),
        source,
    })?;
    let mut endpoint = Endpoint::from(uri);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|source| LinkError::Tls {
            url: opts.controller.clone(),
            source,
        })?;
    }
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true);
    // The node's cgroup is watched for message holds: a trace frozen on another node has
    // its messages held here too. In a cluster that is every pod of the node.
    let watch = opts
        .services
        .node_cgroup()
        .and_then(|c| crate::discovery::cgroup2_dir(c.path()))
        .or_else(|| {
            opts.kubernetes_node
                .as_ref()
                .and(crate::pods::kubepods_dir())
        });
    if opts.kubernetes_node.is_some() && watch.is_none() {
        tracing::warn!(
            "no kubepods cgroup under the cgroup v2 mount: messages of requests frozen on \
             other nodes are not held here; mount the host's /sys/fs/cgroup, or pass --cgroup"
        );
    }
    let pods = opts.kubernetes_node.clone().map(PodDirectory::new);
    let worker = tokio::task::spawn_blocking(move || Worker::spawn(watch, pods))
        .await
        .map_err(|_| LinkError::WorkerGone)??;
    let mut link = Link {
        hello: v1::Hello {
            kubernetes_node: opts.kubernetes_node.clone().unwrap_or_default(),
            ..report::hello(&opts.data_dir)
        },
        kubernetes_node: opts.kubernetes_node,
        services: opts.services,
        controller: opts.controller,
        worker,
        outbox: outbox::Outbox::open(&opts.data_dir.join("sequences")),
        armed: BTreeMap::new(),
        manager_drops: BTreeMap::new(),
        drops_sent: BTreeMap::new(),
        exits_sent: std::collections::BTreeSet::new(),
        cpu: report::CpuMeter::new(),
    };
    tracing::info!(agent_id = %link.hello.agent_id, controller = %link.controller, "agent started");
    let shutdown = std::pin::pin!(shutdown);
    let result = link.run(&endpoint, shutdown).await;
    let Link { worker, .. } = link;
    let _ = tokio::task::spawn_blocking(move || worker.stop()).await;
    result
}

struct Link {
    hello: v1::Hello,
    kubernetes_node: Option<String>,
    services: Services,
    controller: String,
    worker: Worker,
    outbox: outbox::Outbox,
    /// What each armed breakpoint was armed with, so a re-sent `Arm` after a reconnect
    /// does not re-arm (and restart the hit count of) an unchanged breakpoint.
    armed: BTreeMap<u64, (Option<v1::BreakpointSpec>, Option<prost_types::Timestamp>)>,
    /// Kernel drops and over-limit hits last seen per breakpoint (kept after removal).
    manager_drops: BTreeMap<u64, u64>,
    drops_sent: BTreeMap<u64, u64>,
    /// (breakpoint, pid) exits told to the controller on this connection.
    exits_sent: std::collections::BTreeSet<(u64, u32)>,
    cpu: report::CpuMeter,
}

/// The outbound half of a live stream.
type Out = mpsc::Sender<v1::AgentMessage>;

/// The stream broke; reconnect.
struct Broken;

impl Link {
    async fn run(
        &mut self,
        endpoint: &Endpoint,
        mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> Result<(), LinkError> {
        let mut backoff = Backoff::default();
        let mut failures = 0u32;
        loop {
            // Connect, capturing all the while.
            let attempt = open(endpoint.clone(), self.hello.clone());
            let mut attempt = std::pin::pin!(attempt);
            let opened = loop {
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    r = &mut attempt => break r,
                    s = self.worker.snapshots.recv() => match s {
                        Some(s) => { self.outbox.push(s.into()); }
                        None => return Err(LinkError::WorkerGone),
                    },
                }
            };
            let (out, inbound) = match opened {
                Ok(c) => c,
                Err(e) => {
                    failures += 1;
                    // The first failure is news; the retries are not.
                    if failures == 1 {
                        tracing::warn!(controller = %self.controller, error = %error_chain(&e), held = self.outbox.len(), "controller unreachable; capturing and retrying");
                    } else {
                        tracing::debug!(error = %error_chain(&e), "reconnect failed");
                    }
                    let sleep = tokio::time::sleep(backoff.next_delay());
                    let mut sleep = std::pin::pin!(sleep);
                    loop {
                        tokio::select! {
                            () = &mut shutdown => return Ok(()),
                            () = &mut sleep => break,
                            s = self.worker.snapshots.recv() => match s {
                                Some(s) => { self.outbox.push(s.into()); }
                                None => return Err(LinkError::WorkerGone),
                            },
                        }
                    }
                    continue;
                }
            };
            failures = 0;
            backoff = Backoff::default();
            tracing::info!(controller = %self.controller, resending = self.outbox.len(), "connected to controller");
            match self.serve(&out, inbound, shutdown.as_mut()).await {
                Ok(Some(())) => return Ok(()),
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            tracing::warn!(controller = %self.controller, "lost the controller; capturing and reconnecting");
        }
    }

    /// Drives one live stream. `Ok(Some(()))` on shutdown, `Ok(None)` when it broke.
    async fn serve(
        &mut self,
        out: &Out,
        mut inbound: Streaming<v1::ControllerMessage>,
        mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> Result<Option<()>, LinkError> {
        if self.on_connect(out).await.is_err() {
            return Ok(None);
        }
        let mut drops = tokio::time::interval(DROPS_EVERY);
        let mut health =
            tokio::time::interval_at(tokio::time::Instant::now() + HEALTH_EVERY, HEALTH_EVERY);
        loop {
            let step = tokio::select! {
                () = &mut shutdown => return Ok(Some(())),
                m = inbound.message() => match m {
                    Ok(Some(m)) => self.handle(m, out).await,
                    Ok(None) => {
                        tracing::info!("the controller closed the stream");
                        Err(Broken)
                    }
                    Err(status) => {
                        tracing::debug!(%status, "stream error");
                        Err(Broken)
                    }
                },
                s = self.worker.snapshots.recv() => match s {
                    Some(s) => {
                        let hit = self.outbox.push(s.into());
                        let r = send(out, agent_message::Message::Hit(hit)).await;
                        if r.is_ok() {
                            self.outbox.mark_last_sent(Instant::now());
                        }
                        r
                    }
                    None => return Err(LinkError::WorkerGone),
                },
                _ = drops.tick() => {
                    self.outbox.settle(Instant::now());
                    match self.send_drops(out, false).await {
                        Ok(()) => self.send_exits(out).await,
                        e => e,
                    }
                }
                _ = health.tick() => self.send_health(out).await,
                e = self.worker.freeze_events.recv() => match e {
                    Some(e) => send(out, freeze_message(e)).await,
                    None => return Err(LinkError::WorkerGone),
                },
            };
            if step.is_err() {
                return Ok(None);
            }
        }
    }

    /// After `Hello`: everything not known delivered, then the counters.
    async fn on_connect(&mut self, out: &Out) -> Result<(), Broken> {
        for hit in self.outbox.resend(Instant::now()) {
            send(out, agent_message::Message::Hit(hit)).await?;
        }
        self.send_drops(out, true).await?;
        // A new controller (or a restarted one) has not heard about lost targets yet.
        self.exits_sent.clear();
        self.send_exits(out).await?;
        // The controller forgot this agent's frozen threads when it reconnected; events
        // still queued follow and apply on top.
        let state = self.state();
        for thread in state.frozen {
            send(out, agent_message::Message::TraceFrozen(thread.into())).await?;
        }
        for message in state.held {
            send(out, agent_message::Message::MessageHeld(message.into())).await?;
        }
        self.send_health(out).await
    }

    async fn handle(&mut self, m: v1::ControllerMessage, out: &Out) -> Result<(), Broken> {
        match m.message {
            Some(controller_message::Message::Arm(v1::Arm {
                breakpoint: Some(bp),
            })) => self.arm(bp, out).await,
            Some(controller_message::Message::Disarm(d)) => {
                self.armed.remove(&d.breakpoint_id);
                tracing::info!(id = d.breakpoint_id, "disarming");
                self.command(Command::Remove(d.breakpoint_id)).await
            }
            Some(controller_message::Message::ResumeTrace(r)) => self.resume(r, out).await,
            Some(controller_message::Message::EvalTrace(e)) => self.eval(e, out).await,
            Some(controller_message::Message::HoldTrace(h)) => {
                match tracery_model::freeze::HoldRequest::try_from(&h) {
                    Ok(hold) => {
                        let trace = hold.trace_id;
                        let deadline = hold.capped_deadline(std::time::SystemTime::now());
                        tracing::info!(%trace, deadline = %humantime::format_rfc3339_seconds(deadline), "holding the trace's messages");
                        self.command(Command::Hold(trace, deadline)).await
                    }
                    Err(error) => {
                        let error = error_chain(&error);
                        tracing::warn!(trace = %h.trace_id, %error, "ignoring an invalid hold");
                        Ok(())
                    }
                }
            }
            Some(controller_message::Message::NodePods(list)) => self.node_pods(list, out).await,
            other => {
                tracing::warn!(message = ?other, "ignoring an invalid controller message");
                Ok(())
            }
        }
    }

    async fn arm(&mut self, bp: v1::Breakpoint, out: &Out) -> Result<(), Broken> {
        let id = bp.id;
        let key = (bp.spec.clone(), bp.expires);
        if self.armed.get(&id) == Some(&key) {
            if let Some(st) = self.status_of(id) {
                for r in arm_results(&st) {
                    send(out, agent_message::Message::ArmResult(r)).await?;
                }
                return Ok(());
            }
        }
        let cluster = self.kubernetes_node.is_some();
        let spec = match BreakpointSpec::from_wire(bp, &self.services, cluster) {
            Ok(s) => s,
            Err(e) => {
                let r = arm_error(id, 0, error_chain(&e));
                return send(out, agent_message::Message::ArmResult(r)).await;
            }
        };
        tracing::info!(id, location = %spec.location, target = ?spec.target, "arming");
        let pid = match spec.target {
            Target::Pid(p) => p,
            Target::Matching(_) | Target::Pods(_) => 0,
        };
        self.armed.insert(id, key);
        let (reply, replied) = oneshot::channel();
        self.command(Command::Add(Box::new(spec), reply)).await?;
        // Arming reads DWARF and may take a while: the reply is awaited aside, so hits
        // keep flowing. Commands stay in order because they were queued above.
        let out = out.clone();
        tokio::spawn(async move {
            let results = match replied.await {
                Ok(Ok(st)) => arm_results(&st),
                Ok(Err(e)) => vec![arm_error(id, pid, error_chain(&e))],
                Err(_) => return,
            };
            for r in results {
                if send(&out, agent_message::Message::ArmResult(r))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(())
    }

    /// Resumes a trace on the Manager thread; the answer goes up when it is done.
    async fn resume(&mut self, r: v1::ResumeTrace, out: &Out) -> Result<(), Broken> {
        let request_id = r.request_id;
        let trace = match TraceId::parse(&r.trace_id) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(trace = %r.trace_id, error = %e, "ignoring a resume of an invalid trace id");
                let answer = v1::ResumeResult {
                    request_id,
                    ..Default::default()
                };
                return send(out, agent_message::Message::ResumeResult(answer)).await;
            }
        };
        tracing::info!(%trace, "resuming");
        let (reply, replied) = oneshot::channel();
        self.command(Command::Resume(trace, reply)).await?;
        let out = out.clone();
        tokio::spawn(async move {
            let Ok(outcome) = replied.await else { return };
            let answer = match outcome {
                ResumeOutcome::Resumed { threads, held } => v1::ResumeResult {
                    request_id,
                    released: threads.into_iter().map(Into::into).collect(),
                    last_release: None,
                    held: held.map(Into::into),
                },
                ResumeOutcome::NotFrozen(last) => v1::ResumeResult {
                    request_id,
                    released: vec![],
                    last_release: last.map(Into::into),
                    held: None,
                },
            };
            let _ = send(&out, agent_message::Message::ResumeResult(answer)).await;
        });
        Ok(())
    }

    /// Evaluates an expression on the Manager thread; the answer goes up when it is done.
    async fn eval(&mut self, e: v1::EvalTrace, out: &Out) -> Result<(), Broken> {
        let request_id = e.request_id;
        let trace = match TraceId::parse(&e.trace_id) {
            Ok(t) => t,
            Err(error) => {
                let answer = eval_answer(request_id, Err(error));
                return send(out, agent_message::Message::EvalResult(answer)).await;
            }
        };
        let (reply, replied) = oneshot::channel();
        self.command(Command::Eval(trace, e.expr, reply)).await?;
        let out = out.clone();
        tokio::spawn(async move {
            let Ok(result) = replied.await else { return };
            let answer = eval_answer(request_id, result);
            let _ = send(&out, agent_message::Message::EvalResult(answer)).await;
        });
        Ok(())
    }

    async fn command(&self, c: Command) -> Result<(), Broken> {
        // A gone worker also ends `serve` through the closed snapshot channel.
        let _ = self.worker.commands.send(c).await;
        Ok(())
    }

    fn state(&self) -> WorkerState {
        lock(&self.worker.state).clone()
    }

    fn status_of(&self, id: u64) -> Option<BreakpointStatus> {
        lock(&self.worker.state)
            .breakpoints
            .iter()
            .find(|b| b.id == id)
            .cloned()
    }

    /// Running totals per breakpoint: kernel drops + over-limit + queue and buffer overflow.
    fn drop_totals(&mut self) -> BTreeMap<u64, u64> {
        let st = self.state();
        for b in &st.breakpoints {
            self.manager_drops
                .insert(b.id, b.kernel_drops + b.over_limit);
        }
        let mut totals = self.manager_drops.clone();
        for (id, n) in st.queue_drops.iter().chain(&self.outbox.dropped) {
            *totals.entry(*id).or_default() += n;
        }
        totals
    }

    async fn send_drops(&mut self, out: &Out, all: bool) -> Result<(), Broken> {
        for (id, count) in self.drop_totals() {
            let sent = self.drops_sent.get(&id).copied().unwrap_or(0);
            if count != sent || (all && count > 0) {
                let d = v1::Drops {
                    breakpoint_id: id,
                    count,
                };
                send(out, agent_message::Message::Drops(d)).await?;
                self.drops_sent.insert(id, count);
            }
        }
        Ok(())
    }

    /// Tells the controller, once per connection, about PID targets whose process exited:
    /// the breakpoint has nothing left to probe and the user should know.
    async fn send_exits(&mut self, out: &Out) -> Result<(), Broken> {
        for b in self.state().breakpoints {
            for pid in b.exited {
                if self.exits_sent.insert((b.id, pid)) {
                    let msg = format!(
                        "process {pid} exited, so breakpoint {} has nothing left to probe; \
                         set it on the new process, or use --service or --exe to follow restarts",
                        b.id
                    );
                    send(
                        out,
                        agent_message::Message::ArmResult(arm_error(b.id, pid, msg)),
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn send_health(&mut self, out: &Out) -> Result<(), Broken> {
        let st = self.state();
        let h = report::health(&st.breakpoints, &mut self.cpu);
        send(out, agent_message::Message::Health(h)).await
    }
}

fn lock(m: &Mutex<WorkerState>) -> std::sync::MutexGuard<'_, WorkerState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens a `Session` stream: `Hello` is queued first, as the controller reads it first.
async fn open(
    endpoint: Endpoint,
    hello: v1::Hello,
) -> Result<(Out, Streaming<v1::ControllerMessage>), OpenError> {
    let channel = endpoint.connect().await.map_err(OpenError::Connect)?;
    let mut client = AgentLinkClient::new(channel);
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    tx.send(v1::AgentMessage {
        message: Some(agent_message::Message::Hello(hello)),
    })
    .await
    .map_err(|_| OpenError::Closed)?;
    let response = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(OpenError::Refused)?;
    Ok((tx, response.into_inner()))
}

async fn send(out: &Out, m: agent_message::Message) -> Result<(), Broken> {
    out.send(v1::AgentMessage { message: Some(m) })
        .await
        .map_err(|_| Broken)
}

/// A freeze, release or held message as the controller hears it.
fn freeze_message(e: FreezeEvent) -> agent_message::Message {
    match e {
        FreezeEvent::Frozen(thread) => agent_message::Message::TraceFrozen(thread.into()),
        FreezeEvent::Released(released) => agent_message::Message::TraceReleased(released.into()),
        FreezeEvent::Held(message) => agent_message::Message::MessageHeld(message.into()),
        FreezeEvent::HoldReleased(release) => agent_message::Message::HoldReleased(release.into()),
        FreezeEvent::Messages(batch) => agent_message::Message::Messages(batch.into()),
    }
}

fn eval_answer<E: std::error::Error>(
    request_id: u64,
    result: Result<serde_json::Value, E>,
) -> v1::EvalResult {
    v1::EvalResult {
        request_id,
        result: Some(match result {
            Ok(value) => v1::eval_result::Result::Json(value.to_string()),
            Err(error) => v1::eval_result::Result::Error(error_chain(&error)),
        }),
    }
}

/// Exponential reconnect delays with jitter, so agents do not reconnect in lockstep.
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// Between half and all of the current step; the step doubles up to [`BACKOFF_MAX`].
    fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let mut h = RandomState::new().build_hasher();
        h.write_u64(step.as_nanos() as u64);
        let frac = (h.finish() % 1000) as f64 / 1000.0;
        step.mul_f64(0.5 + 0.5 * frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::default();
        let d: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(d[0] >= BACKOFF_MIN / 2 && d[0] <= BACKOFF_MIN, "{d:?}");
        assert!(d[9] >= BACKOFF_MAX / 2 && d[9] <= BACKOFF_MAX, "{d:?}");
    }
}
