//! The controller's shared state: the store, connected agents and what they reported, and
//! the channels that fan snapshots and arm results out to waiting RPCs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use tokio::sync::{broadcast, mpsc, watch};
use tonic::Status;
use tracery_proto::v1::{self, controller_message::Message as Down};
use tracery_store::{BreakpointId, BreakpointRecord, Store, StoreError};

use crate::captures::Captures;
use crate::export::Exporter;
use crate::hit_limits::HitCounts;
use crate::kubernetes::{self, Cluster};
use crate::spec::{self, TargetRules};
use crate::traces::Traces;
use crate::ControllerOptions;

/// Snapshots a slow watcher may fall behind by before it is told it missed some.
const WATCH_BACKLOG: usize = 1024;
/// Arm results buffered for `SetBreakpoint` callers waiting on them.
const ARM_BACKLOG: usize = 1024;

/// The sending half of one agent session's downstream.
pub(crate) type AgentTx = mpsc::UnboundedSender<Result<v1::ControllerMessage, Status>>;

/// Latest arm error per (agent id, pid) of one breakpoint.
type Problems = BTreeMap<(String, u32), String>;

/// One `ArmResult`, tagged with the agent that sent it.
#[derive(Clone, Debug)]
pub(crate) struct ArmEvent {
    pub agent_id: String,
    pub result: v1::ArmResult,
}

/// An agent's answer to a request the controller sent it (`ResumeTrace`, `EvalTrace`).
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// Boxed: with its releases it is several times the size of an `EvalResult`.
    Resume(Box<v1::ResumeResult>),
    Eval(v1::EvalResult),
}

/// Where the answers to one request go: (agent id, answer).
type Replies = mpsc::UnboundedSender<(String, Reply)>;

/// An agent as the controller knows it, connected or not.
struct Agent {
    hello: v1::Hello,
    /// Which connection is current: a reconnect replaces the session, and the old
    /// session's end must not mark the new one disconnected.
    conn: u64,
    /// `None` while disconnected.
    tx: Option<AgentTx>,
    last_seen: SystemTime,
    health: Option<v1::Health>,
    /// Last `Drops.count` per breakpoint: the store gets the increase.
    drops_seen: BTreeMap<u64, u64>,
}

pub(crate) struct Registry {
    pub store: Store,
    pub opts: ControllerOptions,
    /// Databases and the capture queries of breakpoints, read at hits.
    pub captures: Captures,
    agents: Mutex<BTreeMap<String, Agent>>,
    next_conn: AtomicU64,
    snapshots: broadcast::Sender<v1::Snapshot>,
    arm_results: broadcast::Sender<ArmEvent>,
    /// Expired breakpoints already disarmed on agents.
    expired: Mutex<BTreeSet<u64>>,
    /// Stored hits per breakpoint, against its limit.
    pub(crate) hit_counts: HitCounts,
    /// Per breakpoint, the latest error per (agent, pid); a later success there clears it.
    problems: Mutex<BTreeMap<u64, Problems>>,
    /// Frozen traces as agents reported them.
    traces: Mutex<Traces>,
    /// Requests sent to agents and waiting for answers, by request id.
    pending: Mutex<HashMap<u64, Replies>>,
    next_request: AtomicU64,
    /// Counts agent sessions started, so callers can wait for an agent to connect.
    sessions: watch::Sender<u64>,
    /// Turns true when the server shuts down; long-lived streams end then.
    pub stop: watch::Receiver<bool>,
    /// Cluster mode: pods and Services as the API shows them.
    cluster: OnceLock<Arc<Cluster>>,
    /// OTLP export of snapshots and freezes (a no-op when not configured).
    pub export: Exporter,
}

impl Registry {
    /// A registry that exports nothing (unit tests).
    #[cfg(test)]
    pub fn new(store: Store, opts: ControllerOptions, stop: watch::Receiver<bool>) -> Registry {
        Registry::exporting(store, opts, Exporter::default(), stop)
    }

    /// Like [`Registry::new`], exporting snapshots and freezes through `export`.
    pub fn exporting(
        store: Store,
        opts: ControllerOptions,
        export: Exporter,
        stop: watch::Receiver<bool>,
    ) -> Registry {
        Registry {
            captures: Captures::new(opts.databases.clone(), opts.capture_limits),
            store,
            opts,
            agents: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(1),
            snapshots: broadcast::channel(WATCH_BACKLOG).0,
            arm_results: broadcast::channel(ARM_BACKLOG).0,
            expired: Mutex::new(BTreeSet::new()),
            hit_counts: HitCounts::default(),
            problems: Mutex::new(BTreeMap::new()),
            traces: Mutex::new(Traces::exporting(export.clone())),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            sessions: watch::channel(0).0,
            stop,
            cluster: OnceLock::new(),
            export,
        }
    }

    /// The executable of process `pid` on `agent_id`'s node, as its last health report
    /// listed it.
    pub fn exe_of(&self, agent_id: &str, pid: u32) -> Option<String> {
        let agents = self.agents();
        let health = agents.get(agent_id)?.health.as_ref()?;
        let process = health.processes.iter().find(|p| p.pid == pid)?;
        Some(process.exe.clone()).filter(|e| !e.is_empty())
    }

    /// Cluster mode's view of the cluster, once it has synced.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        // Set once at start-up; a second call would be a bug, and the first value stays.
        let _ = self.cluster.set(cluster);
    }

    /// Arms `record` where it belongs: on the agents of its pods' nodes in cluster mode,
    /// else on every agent. Returns the agents it was sent to.
    pub async fn arm(&self, record: &BreakpointRecord) -> Result<Vec<String>, Status> {
        if let Some(cluster) = self.cluster() {
            if cluster.route(record).is_some() {
                let id = u64::try_from(record.id.0).unwrap_or_default();
                let mut sent = kubernetes::sync(self, cluster).await;
                return Ok(sent.remove(&id).unwrap_or_default());
            }
        }
        Ok(self.broadcast(arm_message(record)?))
    }

    /// The `Arm`s a newly connected agent gets at once: in cluster mode the router sends
    /// breakpoints on pods after the node's pods, so they are left out here.
    pub fn arms_on_connect(&self, live: &[BreakpointRecord]) -> Result<Vec<Down>, Status> {
        let cluster = self.cluster();
        live.iter()
            .filter(|r| cluster.is_none_or(|c| c.route(r).is_none()))
            .map(arm_message)
            .collect()
    }

    /// Connected agents that run in the cluster: (agent id, session, Kubernetes node).
    pub fn cluster_agents(&self) -> Vec<(String, u64, String)> {
        self.agents()
            .iter()
            .filter(|(_, a)| a.tx.is_some() && !a.hello.kubernetes_node.is_empty())
            .map(|(id, a)| (id.clone(), a.conn, a.hello.kubernetes_node.clone()))
            .collect()
    }

    /// Sends `message` to session `conn` of `agent_id`, if that session is current.
    pub fn send_to_session(&self, agent_id: &str, conn: u64, message: Down) {
        self.send_to(
            agent_id,
            conn,
            Ok(v1::ControllerMessage {
                message: Some(message),
            }),
        );
    }

    /// Nodes whose agents are connected (Kubernetes node names).
    pub fn connected_nodes(&self) -> BTreeSet<String> {
        self.cluster_agents()
            .into_iter()
            .map(|(_, _, n)| n)
            .collect()
    }

    /// How `--service` is resolved by this controller.
    pub fn target_rules(&self) -> TargetRules<'_> {
        if self.opts.kubernetes.is_some() {
            TargetRules::Kubernetes
        } else {
            TargetRules::Services(&self.opts.services)
        }
    }

    fn agents(&self) -> MutexGuard<'_, BTreeMap<String, Agent>> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new session of `hello.agent_id`; returns its connection number.
    pub fn connect(&self, hello: v1::Hello, tx: AgentTx) -> u64 {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut agents = self.agents();
        let id = hello.agent_id.clone();
        let agent = agents.entry(id.clone()).or_insert_with(|| Agent {
            hello: hello.clone(),
            conn,
            tx: None,
            last_seen: SystemTime::now(),
            health: None,
            drops_seen: BTreeMap::new(),
        });
        agent.hello = hello;
        agent.conn = conn;
        agent.tx = Some(tx);
        agent.last_seen = SystemTime::now();
        drop(agents);
        // The agent reports its frozen threads again after Hello.
        self.traces().forget_agent(&id);
        self.sessions.send_modify(|n| *n += 1);
        if let Some(cluster) = self.cluster() {
            // The router sends it its node's pods and their breakpoints.
            cluster.poke();
        }
        conn
    }

    /// Marks the agent disconnected, unless a newer session replaced `conn`.
    pub fn disconnect(&self, agent_id: &str, conn: u64) {
        if let Some(agent) = self.agents().get_mut(agent_id) {
            if agent.conn == conn {
                agent.tx = None;
            }
        }
    }

    /// Ends every agent session (their downstreams close).
    pub fn end_all_sessions(&self) {
        for agent in self.agents().values_mut() {
            agent.tx = None;
        }
    }

    pub fn seen(&self, agent_id: &str) {
        if let Some(agent) = self.agents().get_mut(agent_id) {
            agent.last_seen = SystemTime::now();
        }
    }

    pub fn set_health(&self, agent_id: &str, health: v1::Health) {
        if let Some(agent) = self.agents().get_mut(agent_id) {
            agent.health = Some(health);
        }
    }

    /// How many hits were lost since the agent's previous report for this breakpoint.
    pub fn drops_delta(&self, agent_id: &str, drops: &v1::Drops) -> u64 {
        let mut agents = self.agents();
        let Some(agent) = agents.get_mut(agent_id) else {
            return 0;
        };
        let last = agent.drops_seen.insert(drops.breakpoint_id, drops.count);
        match last {
            Some(last) if drops.count >= last => drops.count - last,
            // The agent restarted and counts from 0 again: all of it is new.
            _ => drops.count,
        }
    }

    /// Sends `message` to every connected agent; returns the ids it went to.
    pub fn broadcast(&self, message: Down) -> Vec<String> {
        let mut sent = Vec::new();
        for (id, agent) in self.agents().iter() {
            if let Some(tx) = &agent.tx {
                let msg = v1::ControllerMessage {
                    message: Some(message.clone()),
                };
                if tx.send(Ok(msg)).is_ok() {
                    sent.push(id.clone());
                }
            }
        }
        sent
    }

    pub fn disarm(&self, breakpoint_id: u64) {
        self.broadcast(Down::Disarm(v1::Disarm { breakpoint_id }));
    }

    /// Agents seen since start, connected or not.
    pub fn agent_statuses(&self) -> Vec<v1::AgentStatus> {
        self.agents()
            .values()
            .map(|a| v1::AgentStatus {
                hello: Some(a.hello.clone()),
                connected: a.tx.is_some(),
                last_seen: Some(a.last_seen.into()),
                health: a.health.clone(),
            })
            .collect()
    }

    pub fn publish_snapshot(&self, snapshot: v1::Snapshot) {
        // No watcher is not an error: the snapshot is stored.
        let _ = self.snapshots.send(snapshot);
    }

    pub fn watch_snapshots(&self) -> broadcast::Receiver<v1::Snapshot> {
        self.snapshots.subscribe()
    }

    pub fn publish_arm_result(&self, event: ArmEvent) {
        {
            let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
            let bp = problems.entry(event.result.breakpoint_id).or_default();
            let key = (event.agent_id.clone(), event.result.pid);
            match &event.result.result {
                Some(v1::arm_result::Result::Error(e)) => {
                    bp.insert(key, e.clone());
                }
                Some(v1::arm_result::Result::Probes(_)) => {
                    bp.remove(&key);
                }
                None => {}
            }
        }
        let _ = self.arm_results.send(event);
    }

    /// What keeps `breakpoint_id` from being armed, as `agent A, pid P: message`.
    pub fn problems(&self, breakpoint_id: u64) -> Vec<String> {
        let problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        problems
            .get(&breakpoint_id)
            .map(|m| {
                m.iter()
                    .map(|((agent, pid), e)| format!("agent {agent}, pid {pid}: {e}"))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn watch_arm_results(&self) -> broadcast::Receiver<ArmEvent> {
        self.arm_results.subscribe()
    }

    /// Returns true the first time it is called for `breakpoint_id`.
    pub fn mark_expired(&self, breakpoint_id: u64) -> bool {
        self.expired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(breakpoint_id)
    }

    /// Breakpoints listed now: not deleted, not expired (those to arm are
    /// [`Registry::armable_breakpoints`]).
    pub async fn live_breakpoints(&self) -> Result<Vec<BreakpointRecord>, StoreError> {
        let now = SystemTime::now();
        Ok(self
            .store
            .list_breakpoints(false)
            .await?
            .into_iter()
            .filter(|r| spec::is_live(r, now))
            .collect())
    }

    /// Every live (not deleted, not expired) breakpoint as the API shows it, with counts.
    pub async fn live_breakpoints_with_counts(&self) -> Result<Vec<v1::Breakpoint>, Status> {
        let live = self.live_breakpoints().await.map_err(store_status)?;
        let mut out = Vec::with_capacity(live.len());
        for record in &live {
            out.push(self.breakpoint_with_counts(record).await?);
        }
        Ok(out)
    }

    /// A stored breakpoint as the API shows it, with its hit and drop counts.
    pub async fn breakpoint_with_counts(
        &self,
        record: &BreakpointRecord,
    ) -> Result<v1::Breakpoint, Status> {
        let mut bp = spec::breakpoint_proto(record)?;
        bp.hits = self.hits(record.id).await.map_err(store_status)?;
        bp.drops = self
            .store
            .drops(Some(record.id))
            .await
            .map_err(store_status)?;
        Ok(bp)
    }

    /// Snapshots stored for one breakpoint.
    ///
    /// The store has no count query, so this pages through summaries: fine for bounded
    /// breakpoints (hit limit), O(hits) per call.
    pub async fn hits(&self, id: BreakpointId) -> Result<u64, StoreError> {
        const PAGE: u32 = 1000;
        let mut count = 0u64;
        let mut after = None;
        loop {
            let page = self.store.list_snapshots(Some(id), after, PAGE).await?;
            count += page.len() as u64;
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.id),
                _ => return Ok(count),
            }
        }
    }
}

impl Registry {
    /// The stored breakpoint `id`, deleted or not.
    pub async fn breakpoint_record(
        &self,
        id: BreakpointId,
    ) -> Result<Option<BreakpointRecord>, StoreError> {
        Ok(self
            .store
            .list_breakpoints(true)
            .await?
            .into_iter()
            .find(|r| r.id == id))
    }

    /// Registers the capture queries of a stored breakpoint this controller has not seen
    /// set (it was set before a restart, or by another replica).
    pub async fn load_captures(&self, id: BreakpointId) -> Result<(), Status> {
        let captures = self
            .breakpoint_record(id)
            .await
            .map_err(store_status)?
            .and_then(|r| spec::StoredSpec::from_json(&r.spec).ok())
            .map(|s| s.captures)
            .unwrap_or_default();
        let raw = u64::try_from(id.0).unwrap_or_default();
        self.captures.register(raw, &captures);
        Ok(())
    }
}

/// The `Arm` for a stored breakpoint.
pub(crate) fn arm_message(record: &BreakpointRecord) -> Result<Down, Status> {
    Ok(Down::Arm(v1::Arm {
        breakpoint: Some(spec::breakpoint_proto(record)?),
    }))
}

/// The `HoldTrace` that makes an agent hold a trace's messages until `deadline`.
pub(crate) fn hold_message(trace_id: &str, deadline: SystemTime) -> Down {
    Down::HoldTrace(v1::HoldTrace {
        trace_id: trace_id.to_owned(),
        deadline: Some(deadline.into()),
    })
}

/// A store failure as the API reports it.
pub(crate) fn store_status(e: StoreError) -> Status {
    tracing::error!(error = %error_chain(&e), "store failure");
    Status::unavailable(error_chain(&e))
}

pub(crate) use tracery_model::error::chain as error_chain;

impl Registry {
    /// The frozen traces, with threads long past their deadline taken as released. A hold
    /// that ends by its deadline so is also resumed on every agent: the kernel let it go
    /// already, and an agent that missed that must not hold the trace any longer.
    pub fn traces(&self) -> MutexGuard<'_, Traces> {
        let mut traces = self.traces.lock().unwrap_or_else(|e| e.into_inner());
        for trace_id in traces.expire(SystemTime::now()) {
            tracing::info!(trace = %trace_id, "hold deadline passed; resuming on every agent");
            // Nobody waits for the answers: they update the traces as they arrive.
            let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
            self.broadcast(Down::ResumeTrace(v1::ResumeTrace {
                request_id,
                trace_id,
            }));
        }
        traces
    }

    /// Tells every connected agent to hold the trace's messages until `deadline`.
    pub fn hold_everywhere(&self, trace_id: &str, deadline: SystemTime) {
        self.broadcast(hold_message(trace_id, deadline));
    }

    /// The node an agent said it runs on.
    pub fn node_of(&self, agent_id: &str) -> String {
        self.agents()
            .get(agent_id)
            .map(|a| a.hello.node.clone())
            .unwrap_or_default()
    }

    /// True while the agent's stream is up.
    /// Waits until `agent_id` is connected; false when `timeout` passed first.
    pub async fn wait_connected(&self, agent_id: &str, timeout: std::time::Duration) -> bool {
        let mut sessions = self.sessions.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.is_connected(agent_id) {
                return true;
            }
            match tokio::time::timeout_at(deadline, sessions.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.is_connected(agent_id),
            }
        }
    }

    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.agents().get(agent_id).is_some_and(|a| a.tx.is_some())
    }

    /// Starts a request to agents; answers arrive on the receiver until
    /// [`Registry::close_request`].
    pub fn open_request(&self) -> (u64, mpsc::UnboundedReceiver<(String, Reply)>) {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        (id, rx)
    }

    pub fn close_request(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Hands an agent's answer to the request waiting for it; a late answer is dropped.
    pub fn answer(&self, agent_id: &str, request_id: u64, reply: Reply) {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get(&request_id) {
            Some(tx) => {
                let _ = tx.send((agent_id.to_owned(), reply));
            }
            None => tracing::debug!(agent = %agent_id, request_id, "late answer dropped"),
        }
    }

    /// Sends `message` to one connected agent; false when it is not connected.
    pub fn send_to_agent(&self, agent_id: &str, message: Down) -> bool {
        self.agents()
            .get(agent_id)
            .and_then(|a| a.tx.as_ref())
            .is_some_and(|tx| {
                tx.send(Ok(v1::ControllerMessage {
                    message: Some(message),
                }))
                .is_ok()
            })
    }

    /// Ids of the connected agents.
    pub fn connected_agents(&self) -> Vec<String> {
        self.agents()
            .iter()
            .filter(|(_, a)| a.tx.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Sends one message to the agent's session `conn`, if it is still the current one.
    pub fn send_to(
        &self,
        agent_id: &str,
        conn: u64,
        message: Result<v1::ControllerMessage, Status>,
    ) {
        if let Some(agent) = self.agents().get(agent_id) {
            if agent.conn == conn {
                if let Some(tx) = &agent.tx {
                    let _ = tx.send(message);
                }
            }
        }
    }
}
