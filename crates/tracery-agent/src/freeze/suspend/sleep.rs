//! How the tracer thread sleeps: until a seized thread changes state, a command arrives,
//! or its next deadline, with no polling in between.
//!
//! One `io_uring` waits on both at once: a `waitid` (kernel 6.7) on the thread's tracees,
//! with `WNOWAIT` so the worker still reaps each event itself with `waitpid`, and a poll
//! on an eventfd that command senders ring. Neither can be missed: an event that came
//! before the wait was armed completes it at once. The ring is the only way to wait for
//! both: `waitid` has no timeout and no file descriptor, and waking it with a signal
//! races with entering it.
//!
//! Without `io_uring` (an older kernel, or a seccomp profile that forbids it) the worker
//! polls instead, as before: every 2 ms while processes are seized.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{mpsc, Arc},
    time::Duration,
};

use io_uring::{opcode, types, IoUring};

use super::Cmd;

/// Without io_uring: how often seized threads are polled with waitpid while a claim waits
/// for its trap.
const POLL: Duration = Duration::from_millis(1);

/// Without io_uring, how often otherwise: signals to seized threads, group-stops and new
/// threads wait this long at most. Each poll costs a few microseconds (about 1.5% of a
/// core at 2 ms).
const IDLE_POLL: Duration = Duration::from_millis(2);

/// What ended a wait of the tracer thread.
pub(super) enum Woken {
    Command(Cmd),
    /// A tracee's state changed, a deadline passed, or it is time to poll.
    Nothing,
    /// Every handle is gone.
    Closed,
}

/// How the tracer thread waits: on the ring where there is one, else by polling.
pub(super) struct Waiter {
    sleeper: Option<Sleeper>,
}

impl Waiter {
    /// A waiter for the calling thread, which must be the tracer thread; it polls (and
    /// says why) without a `bell` or an io_uring `waitid`.
    pub(super) fn new(bell: io::Result<Arc<Bell>>) -> Waiter {
        let sleeper = match bell.and_then(Sleeper::new) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "the ptrace thread polls every 2 ms while processes are seized (about 1.5% \
                     of a core): no eventfd, or no io_uring waitid here (needs kernel 6.7+ \
                     and io_uring allowed by the agent's seccomp profile)"
                );
                None
            }
        };
        Waiter { sleeper }
    }

    /// True while waits end when a tracee changes state, with no polling.
    pub(super) fn waits_on_events(&self) -> bool {
        self.sleeper.as_ref().is_some_and(Sleeper::waits_for_events)
    }

    /// Waits for the next command, a state change of one of the thread's tracees (if
    /// `tracees`), or the worker's next `deadline`. `claims`: a claim waits for its trap
    /// (polled more often where polling).
    pub(super) fn wait(
        &mut self,
        rx: &mpsc::Receiver<Cmd>,
        tracees: bool,
        claims: bool,
        deadline: impl FnOnce() -> Option<Duration>,
    ) -> Woken {
        let woken = match self.sleeper.as_mut().filter(|s| s.waits_for_events()) {
            Some(s) => match rx.try_recv() {
                Ok(c) => Woken::Command(c),
                Err(mpsc::TryRecvError::Disconnected) => Woken::Closed,
                Err(mpsc::TryRecvError::Empty) => {
                    if let Err(e) = s.sleep(tracees, deadline()) {
                        tracing::warn!(error = %e, "sleeping on io_uring failed; the ptrace thread polls from now on");
                        self.sleeper = None;
                        return Woken::Nothing;
                    }
                    match rx.try_recv() {
                        Ok(c) => Woken::Command(c),
                        Err(mpsc::TryRecvError::Empty) => Woken::Nothing,
                        Err(mpsc::TryRecvError::Disconnected) => Woken::Closed,
                    }
                }
            },
            // Nothing seized: block on the channel (no idle CPU). Otherwise poll.
            None if !tracees && !claims => match rx.recv() {
                Ok(c) => Woken::Command(c),
                Err(_) => Woken::Closed,
            },
            None => match rx.recv_timeout(if claims { POLL } else { IDLE_POLL }) {
                Ok(c) => Woken::Command(c),
                Err(mpsc::RecvTimeoutError::Timeout) => Woken::Nothing,
                Err(mpsc::RecvTimeoutError::Disconnected) => Woken::Closed,
            },
        };
        if let (Woken::Command(_), Some(s)) = (&woken, self.sleeper.as_mut()) {
            s.commanded();
        }
        woken
    }

    /// What the worker's reap after this wait found (`any`).
    pub(super) fn reaped(&mut self, any: bool) {
        if let Some(s) = self.sleeper.as_mut() {
            s.reaped(any);
        }
    }
}

/// What command senders ring after queueing a command (an eventfd).
pub(super) struct Bell(OwnedFd);

impl Bell {
    pub(super) fn new() -> io::Result<Bell> {
        // SAFETY: a plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Bell(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Wakes the tracer thread (a no-op if it is awake: the count only grows).
    pub(super) fn ring(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the count, so the next poll waits for the next ring.
    fn drain(&self) {
        let mut n = 0u64;
        // SAFETY: reads 8 bytes into a valid u64 from our non-blocking eventfd.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    }
}

const WAITID: u64 = 1;
const BELL: u64 = 2;

/// Wakeups by the `waitid` in a row after which nothing was reaped, before the sleeper
/// gives up on it and the worker polls: a guard against spinning on an event `waitpid`
/// does not take (none is known).
const MAX_IDLE_WAKEUPS: u32 = 64;

/// The tracer thread's way to sleep on events and commands together.
struct Sleeper {
    ring: IoUring,
    bell: Arc<Bell>,
    waitid_armed: bool,
    bell_armed: bool,
    /// The `waitid` failed or woke without an event: wait on commands and deadlines only,
    /// and let the worker poll.
    waitid_off: bool,
    idle_wakeups: u32,
    /// The last sleep ended because a seized thread changed state.
    woke_by_event: bool,
}

impl Sleeper {
    /// A sleeper for the calling thread (its tracees are the ones waited for), or why
    /// there is none: the kernel lacks `io_uring` or its `waitid`.
    fn new(bell: Arc<Bell>) -> io::Result<Sleeper> {
        // Task work (the waitid's wakeup) runs only when this thread waits on the ring.
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(4)
            .or_else(|_| IoUring::new(4))?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::WaitId::CODE) || !probe.is_supported(opcode::PollAdd::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring has no waitid (kernel 6.7 or later)",
            ));
        }
        Ok(Sleeper {
            ring,
            bell,
            waitid_armed: false,
            bell_armed: false,
            waitid_off: false,
            idle_wakeups: 0,
            woke_by_event: false,
        })
    }

    /// False once the `waitid` is given up: the worker must poll for tracee events.
    fn waits_for_events(&self) -> bool {
        !self.waitid_off
    }

    /// What the worker's reap after this sleep found (`any`): a `waitid` that keeps waking
    /// with nothing to reap is given up.
    fn reaped(&mut self, any: bool) {
        if !self.woke_by_event {
            return;
        }
        if any {
            self.idle_wakeups = 0;
        } else {
            self.idle_wakeups += 1;
            if self.idle_wakeups >= MAX_IDLE_WAKEUPS {
                tracing::warn!(
                    "waitid on the ring keeps waking with nothing to reap; polling instead"
                );
                self.waitid_off = true;
            }
        }
    }

    /// Sleeps until a tracee changes state (when `tracees`), the bell rings, or `timeout`
    /// passes (`None`: no deadline).
    fn sleep(&mut self, tracees: bool, timeout: Option<Duration>) -> io::Result<()> {
        self.woke_by_event = false;
        if tracees && !self.waitid_armed && !self.waitid_off {
            // P_ALL with __WNOTHREAD: this thread's tracees only (the agent's own children
            // belong to other threads). WNOWAIT: the worker reaps with waitpid.
            let wait = opcode::WaitId::new(
                libc::P_ALL,
                0,
                libc::WEXITED | libc::WSTOPPED | libc::WNOWAIT | libc::__WALL | libc::__WNOTHREAD,
            )
            .build()
            .user_data(WAITID);
            self.push(&wait)?;
            self.waitid_armed = true;
        }
        if !self.bell_armed {
            let poll = opcode::PollAdd::new(types::Fd(self.bell.0.as_raw_fd()), libc::POLLIN as _)
                .build()
                .user_data(BELL);
            self.push(&poll)?;
            self.bell_armed = true;
        }
        let submitted = match timeout {
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submitter().submit_and_wait(1),
        };
        match submitted {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
        let done: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (what, result) in done {
            match what {
                WAITID => {
                    self.waitid_armed = false;
                    if result < 0 {
                        // ECHILD: none left; the worker's map is brought up to date by
                        // its reap. Anything else is unexpected. Either way the worker
                        // polls until the next command arms the waitid again.
                        if result != -libc::ECHILD {
                            tracing::warn!(
                                error = %io::Error::from_raw_os_error(-result),
                                "waitid on the ring failed; polling instead"
                            );
                        }
                        self.waitid_off = true;
                    } else {
                        self.woke_by_event = true;
                    }
                }
                BELL => {
                    self.bell_armed = false;
                    self.bell.drain();
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A command came: a `waitid` that found no tracees is worth arming again.
    fn commanded(&mut self) {
        if self.idle_wakeups < MAX_IDLE_WAKEUPS {
            self.waitid_off = false;
        }
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) -> io::Result<()> {
        // SAFETY: the entries point at nothing of ours (a null siginfo, an fd we own for
        // the ring's lifetime).
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }
}
