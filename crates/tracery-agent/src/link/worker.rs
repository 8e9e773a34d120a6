//! The [`Manager`] on its own OS thread: its polling blocks, so the async link talks to it
//! through bounded channels, and reads its state from a shared copy refreshed every tick.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use tokio::sync::{mpsc, oneshot};

use crate::{
    capture::snapshot::Snapshot,
    error::AgentError,
    freeze::{EvalError, FreezeEvent, FrozenThread, HeldMessage, ResumeOutcome, TraceId},
    manager::{BreakpointSpec, BreakpointStatus, Manager},
    pods::PodDirectory,
};

/// How long one tick waits for hits; also how late a command can be picked up.
const TICK: Duration = Duration::from_millis(50);
/// Snapshots waiting for the async side; more are dropped (and counted per breakpoint).
pub const SNAPSHOT_QUEUE: usize = 1024;
/// Commands waiting for the Manager thread.
const COMMAND_QUEUE: usize = 64;

/// What the link asks of the Manager.
pub enum Command {
    /// Arm a breakpoint; the reply is its status or why it was not armed.
    Add(
        Box<BreakpointSpec>,
        oneshot::Sender<Result<BreakpointStatus, AgentError>>,
    ),
    /// Disarm a breakpoint.
    Remove(u64),
    /// Cluster mode: this node's pods changed (the whole new list); the reply is the
    /// breakpoints it armed in more processes.
    Pods(PodDirectory, oneshot::Sender<Vec<BreakpointStatus>>),
    /// Let every frozen thread and held message of a trace go.
    Resume(TraceId, oneshot::Sender<ResumeOutcome>),
    /// Hold a trace's outbound messages until the deadline: it froze on some node.
    Hold(TraceId, SystemTime),
    /// Evaluate an expression in the stopped thread of a trace; the value as JSON or why
    /// it could not be.
    Eval(
        TraceId,
        String,
        oneshot::Sender<Result<serde_json::Value, EvalError>>,
    ),
}

/// The Manager's state as the link sees it.
#[derive(Clone, Debug, Default)]
pub struct WorkerState {
    pub breakpoints: Vec<BreakpointStatus>,
    /// Per breakpoint: snapshots dropped because the queue to the link was full.
    pub queue_drops: BTreeMap<u64, u64>,
    /// Threads frozen now; updated before their events are sent, so a reconnect that
    /// reports this list and then the events that follow never misses a freeze.
    pub frozen: Vec<FrozenThread>,
    /// Messages held now, updated like `frozen` and for the same reason.
    pub held: Vec<HeldMessage>,
}

/// Handle on the Manager thread. Dropping it (with the command sender) stops the thread.
pub struct Worker {
    pub commands: mpsc::Sender<Command>,
    pub snapshots: mpsc::Receiver<Snapshot>,
    /// Freezes, releases and held messages, in order. Unbounded: they are few (hit limits bound them) and
    /// none may be lost while the controller is away.
    pub freeze_events: mpsc::UnboundedReceiver<FreezeEvent>,
    pub state: Arc<Mutex<WorkerState>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the Manager (loads eBPF: needs root) on a new thread. `watch`: a cgroup
    /// directory whose connections are watched for message holds from the start. `pods`:
    /// cluster mode's (empty) pod list, until the controller sends one.
    pub fn spawn(
        watch: Option<std::path::PathBuf>,
        pods: Option<PodDirectory>,
    ) -> Result<Self, AgentError> {
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (snap_tx, snap_rx) = mpsc::channel(SNAPSHOT_QUEUE);
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
        let state = Arc::new(Mutex::new(WorkerState::default()));
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("tracery-manager".into())
            .spawn(move || match Manager::start() {
                Ok(mut m) => {
                    if let Some(pods) = pods {
                        m.set_pods(pods);
                    }
                    if let Some(dir) = watch {
                        if let Err(e) = m.watch_cgroup(&dir) {
                            tracing::warn!(cgroup = %dir.display(), "messages will not be held here: {}", error_chain(&e));
                        }
                    }
                    let _ = started_tx.send(Ok(()));
                    run(m, cmd_rx, snap_tx, event_tx, &shared);
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
            })
            .map_err(|source| AgentError::Io {
                action: "starting the manager thread",
                source,
            })?;
        match started_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                commands: cmd_tx,
                snapshots: snap_rx,
                freeze_events: event_rx,
                state,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AgentError::Io {
                action: "starting the manager thread",
                source: std::io::Error::other("the manager thread panicked"),
            }),
        }
    }

    /// Stops the thread, which disarms every probe as the Manager drops.
    pub fn stop(self) {
        let Self {
            commands,
            snapshots,
            thread,
            ..
        } = self;
        drop(commands);
        drop(snapshots);
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

fn run(
    mut m: Manager,
    mut commands: mpsc::Receiver<Command>,
    snapshots: mpsc::Sender<Snapshot>,
    freeze_events: mpsc::UnboundedSender<FreezeEvent>,
    state: &Mutex<WorkerState>,
) {
    let mut queue_drops: BTreeMap<u64, u64> = BTreeMap::new();
    loop {
        loop {
            match commands.try_recv() {
                Ok(Command::Add(spec, reply)) => {
                    let id = spec.id;
                    let r = m.add(*spec);
                    if let Err(e) = &r {
                        tracing::warn!(id, error = %error_chain(e), "cannot arm breakpoint");
                    }
                    let _ = reply.send(r);
                }
                Ok(Command::Pods(pods, reply)) => {
                    let _ = reply.send(m.set_pods(pods));
                }
                Ok(Command::Remove(id)) => {
                    if let Err(e) = m.remove(id) {
                        tracing::warn!(id, error = %error_chain(&e), "cannot disarm breakpoint");
                    }
                }
                Ok(Command::Resume(trace, reply)) => {
                    let _ = reply.send(m.resume(trace));
                }
                Ok(Command::Hold(trace, deadline)) => {
                    // The trace stays frozen where it froze; here it is only not held.
                    if let Err(e) = m.hold_trace(trace, deadline) {
                        tracing::warn!(%trace, error = %error_chain(&e), "cannot hold the trace's messages");
                    }
                }
                Ok(Command::Eval(trace, expr, reply)) => {
                    let _ = reply.send(m.eval(trace, &expr));
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        let delivered = m.tick(TICK).unwrap_or_else(|e| {
            tracing::error!(error = %error_chain(&e), "capture failed");
            std::thread::sleep(TICK);
            Vec::new()
        });
        // Straight into the channel: the link's outbox is the one buffer that holds
        // snapshots while the controller is away.
        for s in delivered {
            let id = s.breakpoint_id;
            match snapshots.try_send(s) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => *queue_drops.entry(id).or_default() += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        let breakpoints = m.status();
        {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.breakpoints = breakpoints;
            st.queue_drops.clone_from(&queue_drops);
            st.frozen = m.frozen();
            st.held = m.held();
        }
        for event in m.take_freeze_events() {
            // A gone link is noticed through the command channel.
            let _ = freeze_events.send(event);
        }
        let messages = m.take_messages();
        if !messages.events.is_empty() {
            let _ = freeze_events.send(FreezeEvent::Messages(messages));
        }
    }
}

pub use tracery_model::error::chain as error_chain;
