//! The tracer thread: every ptrace and waitpid call of a [`Tracer`](super::Tracer).

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use super::{
    sleep::{Bell, Waiter, Woken},
    Cmd, SuspendError, TracerOptions, TracerStats, TrapSource, UserRegs,
};
use crate::sys::{self, PtraceEvent, WaitStatus};

/// How long the tracer keeps reaping after a release: a thread cloned just before it
/// starts attached (`PTRACE_O_TRACECLONE`) and must be detached too, or it stays stopped.
const LINGER: Duration = Duration::from_millis(250);

/// Rounds of `/proc/PID/task` listing when seizing a process, to catch threads created
/// while seizing.
const SEIZE_ROUNDS: usize = 8;

/// How long releasing waits for a running thread to stop after `PTRACE_INTERRUPT`.
const INTERRUPT_WAIT: Duration = Duration::from_secs(1);

/// What a seized thread is doing, as far as the tracer knows.
#[derive(Clone, Debug)]
enum State {
    Running,
    /// In signal-delivery-stop for a trap.
    Trapped {
        regs: Box<UserRegs>,
        at: Instant,
        claimed: bool,
    },
    /// Group-stopped (someone sent SIGSTOP) and listening.
    Listening,
}

struct Tracee {
    pid: u32,
    state: State,
}

struct Claim {
    tid: u32,
    deadline: Instant,
    timeout: Duration,
    reply: mpsc::Sender<Result<UserRegs, SuspendError>>,
}

pub(super) struct Worker {
    source: TrapSource,
    claim_window: Duration,
    follow_clones: bool,
    /// Threads seized through `follow_clones`, not yet taken.
    new_threads: Vec<(u32, u32)>,
    threads: HashMap<u32, Tracee>,
    claims: Vec<Claim>,
    stats: TracerStats,
    /// Processes released while following clones, and until when to watch for their
    /// late-reported new threads.
    released: HashSet<u32>,
    linger_until: Option<Instant>,
}

impl Worker {
    pub(super) fn new(options: &TracerOptions) -> Self {
        Self {
            source: options.traps,
            claim_window: options.claim_window,
            follow_clones: options.follow_clones,
            new_threads: Vec::new(),
            threads: HashMap::new(),
            claims: Vec::new(),
            stats: TracerStats::default(),
            released: HashSet::new(),
            linger_until: None,
        }
    }

    pub(super) fn run(mut self, rx: mpsc::Receiver<Cmd>, bell: io::Result<Arc<Bell>>) {
        let mut waiter = Waiter::new(bell);
        loop {
            // Late clones are tracees: with none left, there is nothing to linger for.
            let lingering = self.linger_until.is_some_and(|t| Instant::now() < t)
                && (!self.threads.is_empty() || sys::has_tracees());
            if !lingering {
                self.linger_until = None;
                self.released.clear();
            }
            let tracees = !self.threads.is_empty() || lingering;
            let cmd = match waiter.wait(&rx, tracees, !self.claims.is_empty(), || {
                self.next_deadline()
            }) {
                Woken::Command(c) => Some(c),
                Woken::Nothing => None,
                Woken::Closed => break,
            };
            self.stats.wakeups += 1;
            self.stats.waits_on_events = waiter.waits_on_events();
            if let Some(cmd) = cmd {
                if !self.command(cmd) {
                    break;
                }
            }
            waiter.reaped(self.reap());
            self.serve_claims();
            self.expire_traps();
        }
        self.release_all();
    }

    /// How long until the worker must look again without being woken: a claim's
    /// deadline, an unclaimed trap's window, the end of lingering. `None`: no deadline.
    fn next_deadline(&self) -> Option<Duration> {
        let traps = self.threads.values().filter_map(|t| match t.state {
            State::Trapped {
                claimed: false, at, ..
            } => Some(at + self.claim_window),
            _ => None,
        });
        let at = self
            .claims
            .iter()
            .map(|c| c.deadline)
            .chain(traps)
            .chain(self.linger_until)
            .min()?;
        Some(at.saturating_duration_since(Instant::now()))
    }

    /// Runs one command; false on shutdown.
    fn command(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::SeizeProcess(pid, r) => {
                let _ = r.send(self.seize_process(pid));
            }
            Cmd::SeizeThread(pid, tid, r) => {
                let _ = r.send(self.seize(pid, tid));
            }
            Cmd::Claim(tid, timeout, reply) => {
                if !self.threads.contains_key(&tid) {
                    let _ = reply.send(Err(SuspendError::NotSeized { tid }));
                } else if self.claims.iter().any(|c| c.tid == tid)
                    || matches!(
                        self.threads[&tid].state,
                        State::Trapped { claimed: true, .. }
                    )
                {
                    let _ = reply.send(Err(SuspendError::AlreadyClaimed { tid }));
                } else {
                    self.claims.push(Claim {
                        tid,
                        deadline: Instant::now() + timeout,
                        timeout,
                        reply,
                    });
                }
            }
            Cmd::Resume(tid, r) => {
                let _ = r.send(self.resume(tid));
            }
            Cmd::ReleaseProcess(pid, r) => {
                let tids: Vec<u32> = self
                    .threads
                    .iter()
                    .filter(|(_, t)| t.pid == pid)
                    .map(|(tid, _)| *tid)
                    .collect();
                let mut result = Ok(());
                for tid in tids {
                    if let Err(e) = self.release(tid) {
                        result = Err(e);
                    }
                }
                self.linger(pid);
                let _ = r.send(result);
            }
            Cmd::ReleaseAll(r) => {
                self.release_all();
                let _ = r.send(());
            }
            Cmd::IsStopped(tid, r) => {
                let _ = r.send(
                    self.threads
                        .get(&tid)
                        .is_some_and(|t| matches!(t.state, State::Trapped { .. })),
                );
            }
            Cmd::Stats(r) => {
                let mut s = self.stats;
                s.seized = self.threads.len();
                s.stopped = self
                    .threads
                    .values()
                    .filter(|t| matches!(t.state, State::Trapped { .. }))
                    .count();
                let _ = r.send(s);
            }
            Cmd::NewThreads(r) => {
                let _ = r.send(std::mem::take(&mut self.new_threads));
            }
            Cmd::Shutdown => return false,
        }
        true
    }

    fn seize_process(&mut self, pid: u32) -> Result<Vec<u32>, SuspendError> {
        self.released.remove(&pid);
        let mut seized = Vec::new();
        for _ in 0..SEIZE_ROUNDS {
            let tids = list_threads(pid)?;
            let new: Vec<u32> = tids
                .into_iter()
                .filter(|t| !self.threads.contains_key(t))
                .collect();
            if new.is_empty() {
                return Ok(seized);
            }
            for tid in new {
                match self.seize(pid, tid) {
                    Ok(()) => seized.push(tid),
                    // Exited between the listing and the seize.
                    Err(SuspendError::ThreadExited { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(seized)
    }

    fn seize(&mut self, pid: u32, tid: u32) -> Result<(), SuspendError> {
        if self.threads.contains_key(&tid) {
            return Ok(());
        }
        // Refuse a tid that belongs to another process: it would be stopped under the
        // wrong pid's name.
        if !std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists() {
            return Err(if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                SuspendError::ThreadExited { tid }
            } else {
                SuspendError::NoSuchProcess { pid }
            });
        }
        match sys::ptrace_seize(tid, self.follow_clones) {
            Ok(()) => {
                self.threads.insert(
                    tid,
                    Tracee {
                        pid,
                        state: State::Running,
                    },
                );
                tracing::debug!(pid, tid, "seized");
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                Err(SuspendError::ThreadExited { tid })
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                Err(SuspendError::Permission { pid, source: e })
            }
            Err(source) => Err(SuspendError::Ptrace {
                action: "SEIZE",
                tid,
                source,
            }),
        }
    }

    /// Handles every state change waitpid reports; true if there was any.
    fn reap(&mut self) -> bool {
        if self.threads.is_empty() && self.linger_until.is_none() {
            return false;
        }
        let mut any = false;
        loop {
            match sys::waitpid_nohang(-1) {
                Ok(Some(r)) => {
                    any = true;
                    self.report(r.tid, r.status);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "waitpid on tracees failed");
                    break;
                }
            }
        }
        any
    }

    fn report(&mut self, tid: u32, status: WaitStatus) {
        let (sig, event) = match status {
            WaitStatus::Gone => {
                self.threads.remove(&tid);
                self.fail_claims(tid, || SuspendError::ThreadExited { tid });
                return;
            }
            WaitStatus::Other => return,
            WaitStatus::Stopped { signal, event } => (signal, event),
        };
        if event == PtraceEvent::Clone {
            // The creator stops here; the new thread is already seized.
            if let Ok(new) = sys::ptrace_geteventmsg(tid) {
                let pid = self.threads.get(&tid).map(|t| t.pid);
                self.adopt(new as u32, pid);
            }
            let _ = sys::ptrace_cont(tid, 0);
            return;
        }
        if !self.threads.contains_key(&tid) && self.follow_clones {
            let group = thread_group(tid);
            if group.is_some_and(|g| self.released.contains(&g)) {
                // Cloned just before its process was released: let it go too.
                let _ = sys::ptrace_detach(tid, 0);
                return;
            }
            // A new thread's first stop may be reported before its creator's clone event.
            self.adopt(tid, group);
        }
        let Some(tracee) = self.threads.get_mut(&tid) else {
            return;
        };
        if event == PtraceEvent::Stop {
            if matches!(
                sig,
                libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
            ) {
                // Group-stop: stay stopped like the rest of the process, but keep
                // reporting (SIGCONT ends it).
                tracee.state = State::Listening;
                if let Err(e) = sys::ptrace_listen(tid) {
                    tracing::warn!(tid, error = %e, "PTRACE_LISTEN failed");
                }
            } else {
                // PTRACE_INTERRUPT stop or the end of a group-stop: carry on.
                tracee.state = State::Running;
                let _ = sys::ptrace_cont(tid, 0);
            }
            return;
        }
        if event != PtraceEvent::None {
            // No options are set, so no other event stops are expected; never leave one.
            let _ = sys::ptrace_cont(tid, 0);
            return;
        }
        let code = match sys::ptrace_getsiginfo(tid) {
            Ok((_, code)) => code,
            Err(_) => 0,
        };
        if self.source.is_trap(sig, code) {
            match sys::ptrace_getregs(tid) {
                Ok(regs) => {
                    tracee.state = State::Trapped {
                        regs: Box::new(UserRegs(regs)),
                        at: Instant::now(),
                        claimed: false,
                    };
                    tracing::debug!(tid, rip = regs.rip, "freeze trap");
                }
                Err(e) => {
                    tracing::warn!(tid, error = %e, "reading registers at a trap failed; resuming");
                    tracee.state = State::Running;
                    let _ = sys::ptrace_cont(tid, 0);
                }
            }
        } else {
            tracee.state = State::Running;
            self.stats.reinjected += 1;
            if let Err(e) = sys::ptrace_cont(tid, sig) {
                tracing::warn!(tid, sig, error = %e, "re-injecting a signal failed");
            }
        }
    }

    /// Records a thread seized through `follow_clones`.
    fn adopt(&mut self, tid: u32, pid: Option<u32>) {
        if self.threads.contains_key(&tid) {
            return;
        }
        let Some(pid) = pid.or_else(|| thread_group(tid)) else {
            return;
        };
        self.threads.insert(
            tid,
            Tracee {
                pid,
                state: State::Running,
            },
        );
        self.new_threads.push((pid, tid));
    }

    fn serve_claims(&mut self) {
        let now = Instant::now();
        let claims = std::mem::take(&mut self.claims);
        for c in claims {
            match self.threads.get_mut(&c.tid).map(|t| &mut t.state) {
                Some(State::Trapped { regs, claimed, .. }) => {
                    *claimed = true;
                    let _ = c.reply.send(Ok(**regs));
                }
                Some(_) if now < c.deadline => self.claims.push(c),
                Some(_) => {
                    let _ = c.reply.send(Err(SuspendError::NoTrap {
                        tid: c.tid,
                        timeout: c.timeout,
                    }));
                }
                None => {
                    let _ = c.reply.send(Err(SuspendError::ThreadExited { tid: c.tid }));
                }
            }
        }
    }

    fn fail_claims(&mut self, tid: u32, err: impl Fn() -> SuspendError) {
        self.claims.retain(|c| {
            if c.tid == tid {
                let _ = c.reply.send(Err(err()));
                false
            } else {
                true
            }
        });
    }

    /// Resumes traps nobody claimed within the claim window.
    fn expire_traps(&mut self) {
        let window = self.claim_window;
        let expired: Vec<u32> = self
            .threads
            .iter()
            .filter(|(_, t)| {
                matches!(t.state, State::Trapped { claimed: false, at, .. } if at.elapsed() >= window)
            })
            .map(|(tid, _)| *tid)
            .collect();
        for tid in expired {
            // Ours are claimed within milliseconds of the hit record; one nobody claims is
            // more likely a SIGCONT the kernel sent for another reason (job control of an
            // orphaned process group), so it is delivered. Its default action is nothing.
            tracing::warn!(tid, "freeze trap not claimed in time; resuming the thread");
            self.stats.unclaimed_traps += 1;
            if let Some(t) = self.threads.get_mut(&tid) {
                t.state = State::Running;
                let _ = sys::ptrace_cont(tid, super::TRAP_SIGNAL);
            }
        }
    }

    fn resume(&mut self, tid: u32) -> Result<bool, SuspendError> {
        let Some(t) = self.threads.get_mut(&tid) else {
            return Ok(false);
        };
        if !matches!(t.state, State::Trapped { .. }) {
            return Ok(false);
        }
        match sys::ptrace_cont(tid, 0) {
            Ok(()) => {
                t.state = State::Running;
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                // Killed while stopped (SIGKILL ends a ptrace-stop); the exit report follows.
                t.state = State::Running;
                Ok(false)
            }
            Err(source) => Err(SuspendError::Ptrace {
                action: "CONT",
                tid,
                source,
            }),
        }
    }

    /// Detaches one thread: at once when it is in a ptrace-stop, else after interrupting
    /// it (ptrace(2): a tracee must be stopped to be detached).
    fn release(&mut self, tid: u32) -> Result<(), SuspendError> {
        let Some(t) = self.threads.remove(&tid) else {
            return Ok(());
        };
        self.fail_claims(tid, || SuspendError::NotSeized { tid });
        let detach = |sig| match sys::ptrace_detach(tid, sig) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(source) => Err(SuspendError::Ptrace {
                action: "DETACH",
                tid,
                source,
            }),
        };
        if let State::Trapped { .. } = t.state {
            // Signal 0: the trap's SIGCONT is dropped.
            return detach(0);
        }
        match sys::ptrace_interrupt(tid) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
            Err(source) => {
                return Err(SuspendError::Ptrace {
                    action: "INTERRUPT",
                    tid,
                    source,
                })
            }
        }
        let deadline = Instant::now() + INTERRUPT_WAIT;
        while Instant::now() < deadline {
            let status = match sys::waitpid_nohang(tid as i32) {
                Ok(Some(r)) => r.status,
                Ok(None) => {
                    thread::sleep(Duration::from_micros(200));
                    continue;
                }
                Err(_) => return Ok(()),
            };
            let (sig, event) = match status {
                WaitStatus::Gone => return Ok(()),
                WaitStatus::Other => continue,
                WaitStatus::Stopped { signal, event } => (signal, event),
            };
            if event == PtraceEvent::Stop {
                // Interrupt stop, or a group-stop: detaching leaves a group-stopped
                // thread stopped with its process, as it should be.
                return detach(0);
            }
            // A signal arrived first: pass it on with the detach (a trap's SIGCONT is
            // harmless either way), then the interrupt stop is moot.
            let code = sys::ptrace_getsiginfo(tid).map_or(0, |(_, c)| c);
            let pass = if self.source.is_trap(sig, code) {
                0
            } else {
                sig
            };
            return detach(pass);
        }
        tracing::warn!(
            tid,
            "thread did not stop for detaching; it stays seized until the agent exits"
        );
        Err(SuspendError::Ptrace {
            action: "INTERRUPT",
            tid,
            source: io::Error::from(io::ErrorKind::TimedOut),
        })
    }

    /// Watches a while for threads of `pid` cloned just before it was released.
    fn linger(&mut self, pid: u32) {
        if self.follow_clones {
            self.released.insert(pid);
            self.linger_until = Some(Instant::now() + LINGER);
        }
    }

    fn release_all(&mut self) {
        let pids: HashSet<u32> = self.threads.values().map(|t| t.pid).collect();
        for pid in pids {
            self.linger(pid);
        }
        let tids: Vec<u32> = self.threads.keys().copied().collect();
        for tid in tids {
            if let Err(e) = self.release(tid) {
                tracing::warn!(tid, error = %e, "releasing a thread failed");
            }
        }
        for c in std::mem::take(&mut self.claims) {
            let _ = c.reply.send(Err(SuspendError::NotSeized { tid: c.tid }));
        }
    }
}

/// The process a thread belongs to (`Tgid` in `/proc/TID/status`).
fn thread_group(tid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

/// Thread ids of `pid` from `/proc/PID/task`.
fn list_threads(pid: u32) -> Result<Vec<u32>, SuspendError> {
    let dir = fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|_| SuspendError::NoSuchProcess { pid })?;
    Ok(dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}
