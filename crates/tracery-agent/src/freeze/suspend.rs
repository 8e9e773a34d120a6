//! Stopping one thread at a breakpoint with ptrace, holding it, and letting it go.
//!
//! The agent `PTRACE_SEIZE`s a thread (it keeps running). When the thread hits a freezing
//! breakpoint, the capture uprobe sends it SIGCONT with `bpf_send_signal_thread`; only that
//! thread enters signal-delivery-stop, exactly at the breakpoint, with its registers
//! intact. The [`Tracer`] keeps it there until [`Tracer::resume`] suppresses the SIGCONT.
//!
//! SIGCONT because its default action is to do nothing: if the agent dies while a thread is
//! stopped, the kernel detaches the thread and delivers the signal, and the thread just
//! runs on (SIGSTOP would stop the whole service).
//!
//! ptrace requests must come from the thread that seized, so one dedicated OS thread makes
//! every ptrace and waitpid call; [`Tracer`] handles send it commands.

use std::{
    io,
    sync::{mpsc, Arc, Mutex},
    thread,
    time::Duration,
};

use tracery_common::regs::NUM_REGS;

use crate::sys;

mod sleep;
mod worker;

use sleep::Bell;
use worker::Worker;

/// The freeze trap signal: what the capture probe sends a seized thread
/// ([`tracery_common::FREEZE_SIGNAL`], SIGCONT) and the tracer takes for a trap.
pub const TRAP_SIGNAL: i32 = tracery_common::FREEZE_SIGNAL as i32;

/// How long a trap waits for [`Tracer::claim_trap`] before it is resumed by itself (with
/// its SIGCONT delivered), so a thread nobody asked for never stays stopped.
pub const CLAIM_WINDOW: Duration = Duration::from_secs(2);

/// Why a thread could not be seized, stopped or released.
#[derive(Debug, thiserror::Error)]
pub enum SuspendError {
    #[error(
        "cannot ptrace pid {pid}: yama ptrace_scope forbids it or another tracer (gdb, strace) is attached; detach the other tracer or run the agent as root (CAP_SYS_PTRACE)"
    )]
    Permission {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("process {pid} is not running")]
    NoSuchProcess { pid: u32 },
    #[error("thread {tid} is not seized; seize its process first")]
    NotSeized { tid: u32 },
    #[error("thread {tid} did not reach the breakpoint within {timeout:?}")]
    NoTrap { tid: u32, timeout: Duration },
    #[error("thread {tid} is already claimed by another freeze")]
    AlreadyClaimed { tid: u32 },
    #[error("thread {tid} exited")]
    ThreadExited { tid: u32 },
    #[error("ptrace {action} of thread {tid} failed")]
    Ptrace {
        action: &'static str,
        tid: u32,
        #[source]
        source: io::Error,
    },
    #[error("could not start the tracer thread")]
    Spawn(#[source] io::Error),
    #[error("the tracer thread has stopped; restart the agent")]
    TracerGone,
}

/// Registers of a stopped thread (x86-64 `user_regs_struct`).
#[derive(Clone, Copy)]
pub struct UserRegs(pub libc::user_regs_struct);

impl UserRegs {
    /// The registers in the kernel's `pt_regs` order, as fetch plans index them; the first
    /// 21 words of `user_regs_struct` are laid out the same way.
    pub fn pt_regs(&self) -> [u64; NUM_REGS] {
        let r = &self.0;
        [
            r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx,
            r.rdx, r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss,
        ]
    }

    /// Instruction pointer.
    pub fn pc(&self) -> u64 {
        self.0.rip
    }

    /// Stack pointer.
    pub fn sp(&self) -> u64 {
        self.0.rsp
    }
}

impl std::fmt::Debug for UserRegs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRegs")
            .field("rip", &format_args!("{:#x}", self.0.rip))
            .field("rsp", &format_args!("{:#x}", self.0.rsp))
            .finish_non_exhaustive()
    }
}

/// Which signal-delivery-stops are freeze traps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapSource {
    /// SIGCONT sent by the kernel (`si_code == SI_KERNEL`): the capture uprobe's
    /// `bpf_send_signal_thread`. What the agent uses.
    Kernel,
    /// Any SIGCONT, also one sent with `tgkill`: for tests and tools that stop a thread
    /// without a breakpoint.
    AnySigcont,
}

impl TrapSource {
    /// True when a signal-delivery-stop for `signo` with `si_code` `code` is a freeze trap.
    pub fn is_trap(self, signo: i32, code: i32) -> bool {
        signo == TRAP_SIGNAL && (self == Self::AnySigcont || code == libc::SI_KERNEL)
    }
}

/// How a [`Tracer`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracerOptions {
    /// Which stops are freeze traps.
    pub traps: TrapSource,
    /// How long a trap waits to be claimed before it is resumed.
    pub claim_window: Duration,
    /// Seize the threads that seized threads create (`PTRACE_O_TRACECLONE`), so a
    /// thread-per-connection server's new threads can be stopped too. Costs each new
    /// thread and its creator a ptrace-stop at creation: a wakeup of the tracer thread, or
    /// up to one poll interval (1-2 ms) where it has to poll. New threads are reported by
    /// [`Tracer::take_new_threads`].
    pub follow_clones: bool,
}

impl Default for TracerOptions {
    fn default() -> Self {
        Self {
            traps: TrapSource::Kernel,
            claim_window: CLAIM_WINDOW,
            follow_clones: false,
        }
    }
}

/// Counters of a [`Tracer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracerStats {
    /// Threads seized now.
    pub seized: usize,
    /// Seized threads stopped at a trap now.
    pub stopped: usize,
    /// Traps nobody claimed within [`CLAIM_WINDOW`], resumed by the tracer.
    pub unclaimed_traps: u64,
    /// Signals other than traps that were passed on to their thread.
    pub reinjected: u64,
    /// Times the tracer thread woke up (for a command, a tracee's state change, a
    /// deadline, or a poll).
    pub wakeups: u64,
    /// The tracer thread sleeps until something happens (io_uring `waitid`), rather than
    /// polling every 2 ms while processes are seized.
    pub waits_on_events: bool,
}

/// A request to the tracer thread, with where its answer goes.
enum Cmd {
    SeizeProcess(u32, mpsc::Sender<Result<Vec<u32>, SuspendError>>),
    SeizeThread(u32, u32, mpsc::Sender<Result<(), SuspendError>>),
    Claim(u32, Duration, mpsc::Sender<Result<UserRegs, SuspendError>>),
    Resume(u32, mpsc::Sender<Result<bool, SuspendError>>),
    ReleaseProcess(u32, mpsc::Sender<Result<(), SuspendError>>),
    ReleaseAll(mpsc::Sender<()>),
    IsStopped(u32, mpsc::Sender<bool>),
    Stats(mpsc::Sender<TracerStats>),
    NewThreads(mpsc::Sender<Vec<(u32, u32)>>),
    Shutdown,
}

/// Handle to the thread that seizes, stops and releases threads. Cheap to clone; the
/// tracer thread releases everything and ends when the last handle is dropped.
#[derive(Clone)]
pub struct Tracer {
    inner: Arc<Handle>,
}

struct Handle {
    tx: Mutex<mpsc::Sender<Cmd>>,
    /// Rung after each command, so the tracer thread need not poll for them.
    bell: Option<Arc<Bell>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Handle {
    fn ring(&self) {
        if let Some(b) = &self.bell {
            b.ring();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let _ = tx.send(Cmd::Shutdown);
        drop(tx);
        self.ring();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Tracer {
    /// Starts the tracer thread with the default options: only kernel-sent SIGCONTs are
    /// traps, new threads are not followed.
    pub fn start() -> Result<Tracer, SuspendError> {
        Self::start_with(TracerOptions::default())
    }

    /// Starts the tracer thread with `options`.
    pub fn start_with(options: TracerOptions) -> Result<Tracer, SuspendError> {
        let (tx, rx) = mpsc::channel();
        // Without an eventfd the worker polls, and says why.
        let (bell, worker_bell) = match Bell::new() {
            Ok(b) => {
                let b = Arc::new(b);
                (Some(Arc::clone(&b)), Ok(b))
            }
            Err(e) => (None, Err(e)),
        };
        let thread = thread::Builder::new()
            .name("tracery-ptrace".into())
            .spawn(move || Worker::new(&options).run(rx, worker_bell))
            .map_err(SuspendError::Spawn)?;
        Ok(Tracer {
            inner: Arc::new(Handle {
                tx: Mutex::new(tx),
                bell,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn ask<T>(
        &self,
        make: impl FnOnce(mpsc::Sender<T>) -> Cmd,
        wait: Option<Duration>,
    ) -> Result<T, SuspendError> {
        let (tx, rx) = mpsc::channel();
        self.inner
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(make(tx))
            .map_err(|_| SuspendError::TracerGone)?;
        self.inner.ring();
        match wait {
            None => rx.recv().map_err(|_| SuspendError::TracerGone),
            Some(w) => rx.recv_timeout(w).map_err(|_| SuspendError::TracerGone),
        }
    }

    /// `PTRACE_SEIZE`s every thread of `pid` (they keep running); returns the threads
    /// seized now. Threads seized before are left as they are.
    pub fn seize_process(&self, pid: u32) -> Result<Vec<u32>, SuspendError> {
        self.ask(|tx| Cmd::SeizeProcess(pid, tx), None)?
    }

    /// `PTRACE_SEIZE`s one thread of `pid`; Ok when it was seized already.
    pub fn seize_thread(&self, pid: u32, tid: u32) -> Result<(), SuspendError> {
        self.ask(|tx| Cmd::SeizeThread(pid, tid, tx), None)?
    }

    /// Waits up to `timeout` for `tid`'s freeze trap and claims it: the thread then stays
    /// stopped until [`Tracer::resume`]. Returns its registers at the trap.
    pub fn claim_trap(&self, tid: u32, timeout: Duration) -> Result<UserRegs, SuspendError> {
        self.ask(
            |tx| Cmd::Claim(tid, timeout, tx),
            Some(timeout + Duration::from_secs(5)),
        )?
    }

    /// Lets a stopped thread continue; the trap's SIGCONT is suppressed. Ok(false) when the
    /// thread was not stopped.
    pub fn resume(&self, tid: u32) -> Result<bool, SuspendError> {
        self.ask(|tx| Cmd::Resume(tid, tx), None)?
    }

    /// Detaches every seized thread of `pid`, resuming the stopped ones.
    pub fn release_process(&self, pid: u32) -> Result<(), SuspendError> {
        self.ask(|tx| Cmd::ReleaseProcess(pid, tx), None)?
    }

    /// Detaches every seized thread. Also done when the last handle is dropped.
    pub fn release_all(&self) {
        let _ = self.ask(Cmd::ReleaseAll, None);
    }

    /// True while `tid` is stopped at a trap (claimed or not).
    pub fn is_stopped(&self, tid: u32) -> bool {
        self.ask(|tx| Cmd::IsStopped(tid, tx), None)
            .unwrap_or(false)
    }

    /// `(pid, tid)` of the threads seized because a seized thread created them
    /// ([`TracerOptions::follow_clones`]) since the last call.
    pub fn take_new_threads(&self) -> Vec<(u32, u32)> {
        self.ask(Cmd::NewThreads, None).unwrap_or_default()
    }

    /// Counters and current numbers of seized and stopped threads.
    pub fn stats(&self) -> TracerStats {
        self.ask(Cmd::Stats, None).unwrap_or_default()
    }
}

/// Reads `buf.len()` bytes at `addr` in process `pid` with `process_vm_readv`; works while
/// a thread is stopped and never writes the target. Returns the bytes read.
pub fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    sys::process_vm_read(pid, addr, buf)
}

/// Sends `signal` to one thread (`tgkill`). With SIGCONT and [`TrapSource::AnySigcont`]
/// this stops a seized thread wherever it is.
pub fn signal_thread(pid: u32, tid: u32, signal: i32) -> io::Result<()> {
    sys::tgkill(pid, tid, signal)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trap_is_sigcont() {
        // Its default action is to do nothing: a thread the agent leaves behind runs on.
        assert_eq!(TRAP_SIGNAL, libc::SIGCONT);
    }

    #[test]
    fn only_kernel_sigconts_are_traps() {
        assert!(TrapSource::Kernel.is_trap(TRAP_SIGNAL, libc::SI_KERNEL));
        assert!(!TrapSource::Kernel.is_trap(TRAP_SIGNAL, libc::SI_TKILL));
        assert!(!TrapSource::Kernel.is_trap(TRAP_SIGNAL, libc::SI_USER));
        assert!(!TrapSource::Kernel.is_trap(libc::SIGSTOP, libc::SI_KERNEL));
        assert!(TrapSource::AnySigcont.is_trap(TRAP_SIGNAL, libc::SI_TKILL));
        assert!(!TrapSource::AnySigcont.is_trap(libc::SIGUSR1, libc::SI_TKILL));
    }

    #[test]
    fn user_regs_map_to_pt_regs_order() {
        use tracery_common::regs::pt;
        let mut r = zero_regs();
        r.rip = 0x1111;
        r.rsp = 0x2222;
        r.rdi = 0x3333;
        r.r15 = 0x4444;
        let p = UserRegs(r).pt_regs();
        assert_eq!(p[pt::RIP as usize], 0x1111);
        assert_eq!(p[pt::RSP as usize], 0x2222);
        assert_eq!(p[pt::RDI as usize], 0x3333);
        assert_eq!(p[pt::R15 as usize], 0x4444);
    }

    fn zero_regs() -> libc::user_regs_struct {
        libc::user_regs_struct {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            rbp: 0,
            rbx: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rax: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            orig_rax: 0,
            rip: 0,
            cs: 0,
            eflags: 0,
            rsp: 0,
            ss: 0,
            fs_base: 0,
            gs_base: 0,
            ds: 0,
            es: 0,
            fs: 0,
            gs: 0,
        }
    }
}
