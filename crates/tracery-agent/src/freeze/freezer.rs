//! Freezing requests on this node: seizing the threads of processes with a `--freeze`
//! breakpoint, claiming the threads the kernel trapped, and letting them go on resume, at
//! the deadline, or when the agent exits.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, SystemTime},
};

use tracery_model::error::chain;

use crate::{
    capture::session::TrappedHit,
    capture::snapshot::Snapshot,
    error::AgentError,
    freeze::suspend::{SuspendError, Tracer, TracerOptions, TracerStats, UserRegs},
    freeze::tracking::Tracker,
    freeze::{
        FreezeEvent, FrozenThread, ReleaseReason, Released, ResumeOutcome, Suspension, TraceId,
    },
};

/// How long to wait for a trapped thread to reach its stop; it takes about a millisecond,
/// and the record that reports the trap is read after the signal was sent.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a `--freeze` breakpoint's hits will not stop their thread, or why a hit's did not.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FreezeError {
    /// The process must not have its threads stopped; the reason says why.
    #[error("{reason}")]
    Unstoppable { reason: &'static str },
    #[error("cannot start the tracer")]
    Tracer(#[source] SuspendError),
    #[error("cannot seize process {pid}")]
    Seize {
        pid: u32,
        #[source]
        source: SuspendError,
    },
    #[error("cannot tell the kernel that process {pid} is seized")]
    Mark {
        pid: u32,
        #[source]
        source: AgentError,
    },
    #[error("the agent has no tracer")]
    NoTracer,
    #[error("the thread did not stop")]
    NotStopped(#[source] SuspendError),
}

struct Frozen {
    thread: FrozenThread,
    /// Registers of the stopped thread; `None` when it runs on.
    regs: Option<UserRegs>,
    /// Go: the goroutine, stopped at its next system call; `stopped_tid` is its thread
    /// once the kernel trapped it there.
    go_g: Option<u64>,
    stopped_tid: Option<u32>,
}

/// The frozen threads of this node, and what the agent has seized to freeze them.
#[derive(Default)]
pub(crate) struct Freezer {
    /// Started with the first `--freeze` breakpoint.
    tracer: Option<Tracer>,
    /// Processes whose threads are seized.
    seized: BTreeSet<u32>,
    /// Processes whose threads must not be stopped, and why.
    unstoppable: HashMap<u32, &'static str>,
    frozen: Vec<Frozen>,
    last_release: HashMap<TraceId, Released>,
    events: Vec<FreezeEvent>,
}

impl Freezer {
    /// Seizes every thread of `pid` (running `binary`), and the threads they create, so the
    /// kernel may trap whichever hits a `--freeze` breakpoint. Refuses processes whose
    /// threads must not be stopped, saying why.
    pub(crate) fn seize(
        &mut self,
        pid: u32,
        binary: &tracery_dwarf::Binary,
        tracker: &mut Tracker,
    ) -> Result<(), FreezeError> {
        if let Some(reason) = unstoppable(binary) {
            self.unstoppable.insert(pid, reason);
            return Err(FreezeError::Unstoppable { reason });
        }
        if self.tracer.is_none() {
            // Following clones: a thread-per-request server's new threads must be
            // stoppable too; each new thread costs one short ptrace-stop at its creation.
            let options = TracerOptions {
                follow_clones: true,
                ..TracerOptions::default()
            };
            self.tracer = Some(Tracer::start_with(options).map_err(FreezeError::Tracer)?);
        }
        let tracer = self.tracer.as_ref().expect("started above");
        tracer
            .seize_process(pid)
            .map_err(|source| FreezeError::Seize { pid, source })?;
        if self.seized.insert(pid) {
            tracker
                .mark_seized(pid)
                .map_err(|source| FreezeError::Mark { pid, source })?;
        }
        Ok(())
    }

    /// Detaches from `pid` when nothing needs it seized any more: no `--freeze` breakpoint
    /// is armed in it (`still_wanted` false) and none of its threads is frozen.
    pub(crate) fn unseize(&mut self, pid: u32, still_wanted: bool, tracker: &mut Tracker) {
        if still_wanted || self.frozen.iter().any(|f| f.thread.pid == pid) {
            return;
        }
        self.unstoppable.remove(&pid);
        if !self.seized.remove(&pid) {
            return;
        }
        tracker.unmark_seized(pid);
        if let Some(t) = &self.tracer {
            if let Err(e) = t.release_process(pid) {
                tracing::warn!(pid, "detaching: {e}");
            }
        }
    }

    /// Records the freezes of this tick's hits: `trapped` are the hits whose thread the
    /// kernel stopped; other hits of `--freeze` breakpoints (`timeouts` by breakpoint) with
    /// a trace freeze the trace without a stopped thread, and say why.
    pub(crate) fn on_hits(
        &mut self,
        snaps: &[Snapshot],
        trapped: &[TrappedHit],
        timeouts: &HashMap<u64, Duration>,
        tracker: &mut Tracker,
    ) {
        for s in snaps {
            let Some(timeout) = timeouts.get(&s.breakpoint_id) else {
                continue;
            };
            let Some(trace_id) = s.trace_id.as_deref().and_then(|t| TraceId::parse(t).ok()) else {
                continue;
            };
            if self
                .frozen
                .iter()
                .any(|f| f.thread.trace_id == trace_id && f.thread.tid == s.tid)
            {
                continue;
            }
            let trap = trapped
                .iter()
                .find(|t| t.tid == s.tid && t.breakpoint_id == s.breakpoint_id);
            let go_g = trap.and_then(|t| t.go_g);
            let (suspension, regs) = if go_g.is_some() {
                (
                    Suspension::Running(
                        "waiting for the goroutine's next system call (Go code is never \
                         stopped: that would stall the garbage collector)"
                            .into(),
                    ),
                    None,
                )
            } else if trap.is_some() {
                match self.claim(s.tid) {
                    Ok(regs) => (Suspension::Stopped, Some(regs)),
                    Err(e) => (Suspension::Running(chain(&e)), None),
                }
            } else if s.language == tracery_dwarf::SourceLanguage::Go {
                (
                    Suspension::Running(
                        "the goroutine cannot be stopped: its process was not seized or its \
                         runtime's g layout is unknown"
                            .into(),
                    ),
                    None,
                )
            } else if let Some(why) = self.unstoppable.get(&s.pid) {
                (Suspension::Running((*why).to_owned()), None)
            } else if self.seized.contains(&s.pid) {
                (
                    Suspension::Running("the freeze trap was not delivered".into()),
                    None,
                )
            } else {
                (
                    Suspension::Running(format!(
                        "process {} could not be seized (see the breakpoint's errors)",
                        s.pid
                    )),
                    None,
                )
            };
            let now = SystemTime::now();
            let thread = FrozenThread {
                trace_id,
                breakpoint_id: s.breakpoint_id,
                snapshot_seq: trap.map_or(0, |t| t.seq),
                pid: s.pid,
                tid: s.tid,
                location: format!(
                    "{} ({}:{})",
                    s.location.function, s.location.file, s.location.line
                ),
                frozen_at: s.time,
                deadline: now + *timeout,
                suspension,
            };
            tracing::info!(trace = %trace_id, pid = s.pid, tid = s.tid, "request frozen");
            self.events.push(FreezeEvent::Frozen(thread.clone()));
            let stopped_tid = regs.is_some().then_some(s.tid);
            self.frozen.push(Frozen {
                thread,
                regs,
                go_g,
                stopped_tid,
            });
        }
        // Trapped hits that froze nothing (their snapshot was filtered by `when`, or came
        // over the hit limit): let their threads go now rather than after the claim window.
        for t in trapped.iter().filter(|t| t.go_g.is_none()) {
            let kept = self.frozen.iter().any(|f| f.stopped_tid == Some(t.tid));
            if let (false, Some(tracer)) = (kept, &self.tracer) {
                // The stop follows the record by about a millisecond: wait for it, then go.
                if tracer.claim_trap(t.tid, CLAIM_TIMEOUT).is_ok() {
                    let _ = tracer.resume(t.tid);
                }
            }
        }
        // Likewise, goroutines marked for a stop that no freeze wants.
        for t in trapped.iter().filter(|t| t.go_g.is_some()) {
            if !self
                .frozen
                .iter()
                .any(|f| f.go_g == t.go_g && f.thread.pid == t.pid)
            {
                tracker.clear_go_suspend(t.pid, t.go_g.unwrap_or_default());
            }
        }
    }

    /// True while a frozen goroutine still waits for its system call to be stopped at.
    pub(crate) fn go_pending(&self) -> bool {
        self.frozen
            .iter()
            .any(|f| f.go_g.is_some() && f.stopped_tid.is_none())
    }

    /// Claims goroutines the kernel stopped at a system call since the last tick.
    pub(crate) fn poll_go(&mut self, tracker: &Tracker) {
        if let Some(t) = &self.tracer {
            // Threads seized at birth are covered by their process's entry in the kernel;
            // the list is only drained so it does not grow.
            let _ = t.take_new_threads();
        }
        let mut changed = Vec::new();
        for (i, f) in self.frozen.iter().enumerate() {
            let (Some(g), None) = (f.go_g, f.stopped_tid) else {
                continue;
            };
            if let Some(tid) = tracker.go_trapped_thread(f.thread.pid, g) {
                changed.push((i, tid));
            }
        }
        for (i, tid) in changed {
            let claimed = self.claim(tid);
            let f = &mut self.frozen[i];
            match claimed {
                Ok(regs) => {
                    f.regs = Some(regs);
                    f.stopped_tid = Some(tid);
                    f.thread.suspension = Suspension::Stopped;
                }
                Err(e) => f.thread.suspension = Suspension::Running(chain(&e)),
            }
            self.events.push(FreezeEvent::Frozen(f.thread.clone()));
        }
    }

    fn claim(&self, tid: u32) -> Result<UserRegs, FreezeError> {
        let Some(t) = &self.tracer else {
            return Err(FreezeError::NoTracer);
        };
        t.claim_trap(tid, CLAIM_TIMEOUT)
            .map_err(FreezeError::NotStopped)
    }

    /// Releases what passed its deadline, and threads of processes that exited.
    /// Returns what was let go.
    pub(crate) fn expire(
        &mut self,
        tracker: &mut Tracker,
        alive: impl Fn(u32) -> bool,
    ) -> Vec<Released> {
        let now = SystemTime::now();
        let due: Vec<(usize, ReleaseReason)> = self
            .frozen
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                if !alive(f.thread.pid) {
                    Some((i, ReleaseReason::ProcessExited))
                } else if now >= f.thread.deadline {
                    Some((i, ReleaseReason::Deadline))
                } else {
                    None
                }
            })
            .collect();
        let mut released = Vec::new();
        for (i, reason) in due.into_iter().rev() {
            let f = self.frozen.remove(i);
            released.push(self.release(f, reason, tracker));
        }
        released
    }

    fn release(&mut self, f: Frozen, reason: ReleaseReason, tracker: &mut Tracker) -> Released {
        if let Some(g) = f.go_g {
            tracker.clear_go_suspend(f.thread.pid, g);
        }
        if let (Some(tid), Some(t)) = (f.stopped_tid, &self.tracer) {
            if let Err(e) = t.resume(tid) {
                tracing::warn!(tid, "resuming: {e}");
            }
        }
        tracing::info!(trace = %f.thread.trace_id, tid = f.thread.tid, %reason, "request released");
        let r = Released {
            thread: f.thread,
            reason,
            at: SystemTime::now(),
        };
        self.last_release.insert(r.thread.trace_id, r.clone());
        self.events.push(FreezeEvent::Released(r.clone()));
        r
    }

    pub(crate) fn frozen(&self) -> Vec<FrozenThread> {
        self.frozen.iter().map(|f| f.thread.clone()).collect()
    }

    /// The tracer's counters; all zero before the first `--freeze` breakpoint.
    pub(crate) fn tracer_stats(&self) -> TracerStats {
        self.tracer.as_ref().map(Tracer::stats).unwrap_or_default()
    }

    /// True when `trace` has a frozen thread here.
    pub(crate) fn has(&self, trace: TraceId) -> bool {
        self.frozen.iter().any(|f| f.thread.trace_id == trace)
    }

    pub(crate) fn resume(&mut self, trace: TraceId, tracker: &mut Tracker) -> ResumeOutcome {
        if !self.has(trace) {
            return ResumeOutcome::NotFrozen(self.last_release.get(&trace).cloned());
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.frozen)
            .into_iter()
            .partition(|f| f.thread.trace_id == trace);
        self.frozen = kept;
        let released = gone
            .into_iter()
            .map(|f| self.release(f, ReleaseReason::Resumed, tracker))
            .collect();
        ResumeOutcome::Resumed {
            threads: released,
            held: None,
        }
    }

    /// The process and registers of a stopped thread of `trace`.
    pub(crate) fn stopped(&self, trace: TraceId) -> Option<(u32, UserRegs)> {
        self.frozen
            .iter()
            .find_map(|f| (f.thread.trace_id == trace).then_some((f.thread.pid, f.regs?)))
    }

    pub(crate) fn take_events(&mut self) -> Vec<FreezeEvent> {
        std::mem::take(&mut self.events)
    }

    /// Lets everything go (the agent is stopping).
    pub(crate) fn release_all(&mut self, tracker: &mut Tracker) {
        for f in std::mem::take(&mut self.frozen) {
            self.release(f, ReleaseReason::AgentExit, tracker);
        }
        for pid in std::mem::take(&mut self.seized) {
            tracker.unmark_seized(pid);
        }
        if let Some(t) = &self.tracer {
            t.release_all();
        }
    }
}

/// Why the threads of `binary` must never be stopped, if they must not: an async runtime
/// runs many requests on each worker thread, and a stopped worker can leave the runtime's
/// I/O driver unpolled, stalling every request of the process (measured with tokio: all
/// other requests hung until resume).
fn unstoppable(binary: &tracery_dwarf::Binary) -> Option<&'static str> {
    binary
        .symbols()
        .iter()
        .any(|s| s.name.contains("5tokio7runtime9scheduler"))
        .then_some(
            "not stopped: the process runs on tokio, whose worker threads serve many requests; \
             stopping one stalls the runtime for all of them, so the request is frozen by \
             holding its messages instead",
        )
}
