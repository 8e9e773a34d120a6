//! Types shared by the Tracery eBPF programs and user space.
//!
//! Everything here is `#[repr(C)]`, `Copy` and free of pointers so the same bytes mean the
//! same thing on both sides of a BPF map or ring buffer. Limits are named constants; each
//! says which kernel constraint it answers to.
#![no_std]

pub mod exec;
pub mod hold;
pub mod message;
pub mod plan;
pub mod python;
pub mod record;
pub mod regs;
pub mod trace;
pub mod trace_header;

pub use plan::{
    BaseKind, CgroupSetKey, CmpOp, Condition, FetchOp, OpKind, ProbeConfig, ProbeState,
    MAX_CGROUP_DEPTH, MAX_SET_CGROUPS,
};
pub use record::{HitHeader, OpResult, OpStatus};

/// Most fetch ops one probe may run per hit. Bounds the kernel loop (verifier state budget).
pub const MAX_OPS: usize = 64;
/// Most in-kernel conditions per probe; they are ANDed.
pub const MAX_CONDS: usize = 4;
/// Bytes of variable data one hit may capture. Sizes the per-CPU scratch area, which must
/// stay under the 32 KiB per-CPU value cap.
pub const DATA_CAP: usize = 8192;
/// Most bytes one fetch op copies (one string or slice payload, one struct).
pub const MAX_COPY: usize = 4096;
/// Most bytes of user stack copied per hit, for unwinding in user space.
pub const STACK_CAP: usize = 8192;
/// Size of the scratch data area: the data, plus slack so the verifier can prove that any
/// `offset < DATA_CAP` plus `len <= MAX_COPY` fits.
pub const SCRATCH_BYTES: usize = DATA_CAP + MAX_COPY;
/// Most probe slots (attached uprobes) one agent manages at once.
pub const MAX_PROBES: u32 = 1024;
/// Default ring buffer size: room for several hundred full hits before drops are counted.
pub const RING_BYTES: u32 = 16 << 20;
/// How long a busy reader lets records accumulate between drains, in milliseconds. The
/// kernel wakes the reader only while it is blocked (see [`names::READER_IDLE`]), so a
/// stream of hits costs no wake-up per record; the ring holds far more than this long.
pub const READER_BATCH_MS: u64 = 5;

/// The freeze trap: the signal the kernel sends (`bpf_send_signal_thread`) to a seized
/// thread that must stop at a breakpoint, and that the agent recognises as a trap.
/// SIGCONT, because if the agent dies while the thread is stopped, the kernel detaches it
/// and delivers the signal, and SIGCONT's default action is to ignore it: the thread just
/// continues (SIGSTOP would stop the whole process).
pub const FREEZE_SIGNAL: u32 = 18;

/// Names of the maps and programs in the eBPF object, so both sides agree.
pub mod names {
    /// Array map: slot -> [`crate::ProbeConfig`].
    pub const PROBES: &str = "PROBES";
    /// Array map: slot -> [`crate::ProbeState`] counters.
    pub const PROBE_STATE: &str = "PROBE_STATE";
    /// Ring buffer of [`crate::HitHeader`]-prefixed records.
    pub const HITS: &str = "HITS";
    /// Array map with one `u64`: non-zero while the reader blocks, waiting for records.
    pub const READER_IDLE: &str = "READER_IDLE";
    /// Hash map: [`crate::CgroupSetKey`] -> 1, the cgroups of each set (pod breakpoints).
    pub const CGROUP_SETS: &str = "CGROUP_SETS";
    /// Per-CPU scratch used to assemble one record.
    pub const SCRATCH: &str = "SCRATCH";
    /// The generic capture uprobe.
    pub const CAPTURE: &str = "tracery_capture";
    /// An empty uprobe, used by the benchmark as the cost baseline.
    pub const EMPTY: &str = "tracery_empty";
    /// Ring buffer of [`crate::exec::ExecEvent`]s.
    pub const EXECS: &str = "EXECS";
    /// The `sched/sched_process_exec` tracepoint program.
    pub const EXEC: &str = "tracery_exec";
    /// Hash map: [`crate::trace::GoKey`] -> `GO_SUSPEND_PENDING`, or the id of the thread
    /// the kernel trapped at the goroutine's next system call.
    pub const GO_SUSPEND: &str = "GO_SUSPEND";
    /// Array map with one `u64`: non-zero while a `--freeze` breakpoint is armed in Go code.
    pub const GO_FREEZE_ARMED: &str = "GO_FREEZE_ARMED";
    /// Array map with one `u64`: non-zero while receives are parsed at
    /// `sock/sock_recv_length` rather than at the receive system calls' exits.
    pub const RECV_AT_SOCK: &str = "RECV_AT_SOCK";
    /// Hash map: tgid -> [`crate::trace::TrackedProc`], the processes whose requests are tracked.
    pub const TRACE_PIDS: &str = "TRACE_PIDS";
    /// One bit per process id: set while the process is in `TRACE_PIDS`.
    pub const TRACKED_TGIDS: &str = "TRACKED_TGIDS";
    /// LRU map: `tgid << 32 | fd` -> [`crate::trace_header::ConnState`].
    pub const CONNS: &str = "CONNS";
    /// LRU map: pid_tgid -> [`crate::trace::TraceContext`] the thread serves.
    pub const THREAD_TRACE: &str = "THREAD_TRACE";
    /// LRU map: [`crate::trace::GoKey`] -> [`crate::trace::TraceContext`] of a goroutine.
    pub const GO_TRACE: &str = "GO_TRACE";
    /// Hash map: `trace_header::header_filter_hash` -> filter bit.
    pub const HEADER_FILTERS: &str = "HEADER_FILTERS";
    /// Hash map: tgid -> 1 for processes whose threads the agent has ptrace-seized (they
    /// may be trapped).
    pub const SEIZED: &str = "SEIZED";
    /// `syscalls/sys_enter_*` tracepoint program of the tracker (attached to
    /// [`crate::trace::WATCHED_SYSCALLS_ENTER`]).
    pub const SYSCALL_ENTER: &str = "tracery_syscall_enter";
    /// `syscalls/sys_exit_*` tracepoint program of the tracker (attached to
    /// [`crate::trace::WATCHED_SYSCALLS_EXIT`]).
    pub const SYSCALL_EXIT: &str = "tracery_syscall_exit";
    /// Raw tracepoint `sys_enter` program of the tracker.
    pub const SYS_ENTER: &str = "tracery_sys_enter";
    /// Raw tracepoint `sys_exit` program of the tracker.
    pub const SYS_EXIT: &str = "tracery_sys_exit";
    /// Uprobes on the `ret` instructions of Go's `runtime.newproc1`: the new goroutine
    /// (its result) inherits the trace of the goroutine creating it.
    pub const GO_NEWPROC_RETURN: &str = "tracery_go_newproc_return";
    /// Uprobe on the call of `runtime.runqput(pp, newg, true)` in `runtime.newproc.func1`,
    /// right after `newproc1`: the same inheritance as [`GO_NEWPROC_RETURN`] in one trap
    /// (the kernel emulates a call; a `ret` is single-stepped out of line).
    pub const GO_NEWPROC_QUEUED: &str = "tracery_go_newproc_queued";
    /// Array of one `u64`: the offset of the `fs` base in the kernel's `task_struct`
    /// (`thread.fsbase`, from BTF), 0 when unknown: where thread-locals start.
    pub const TASK_FSBASE: &str = "TASK_FSBASE";
    /// Uprobe on tokio's `task::raw::poll`: the task a worker thread runs now.
    pub const TASK_POLL: &str = "tracery_task_poll";
    /// Uprobe on tokio's `OwnedTasks::bind_inner`: a spawned task inherits the trace of
    /// the task spawning it.
    pub const TASK_SPAWN: &str = "tracery_task_spawn";
    /// Uprobe on tokio's `task::raw::dealloc`: a finished task's trace is forgotten.
    pub const TASK_DEALLOC: &str = "tracery_task_dealloc";
    /// Sockops program: watched cgroups' TCP sockets join `SOCKS`.
    pub const HOLD_SOCKOPS: &str = "tracery_hold_sockops";
    /// `sk_msg` verdict on `SOCKS`: holds frozen traces' messages.
    pub const HOLD_MSG: &str = "tracery_hold_msg";
    /// Sockhash: socket cookie (or `hold::SINK_KEY | slot`) -> socket.
    pub const SOCKS: &str = "SOCKS";
    /// Hash map: trace id -> [`crate::hold::FrozenTrace`].
    pub const FROZEN: &str = "FROZEN";
    /// Hash map: socket cookie -> [`crate::hold::HeldSock`].
    pub const HELD: &str = "HELD";
    /// Hash map: socket cookie -> 1 while the keeper writes its held bytes back.
    pub const RELEASING: &str = "RELEASING";
    /// Queue of free hold slots (`u32`).
    pub const FREE_SLOTS: &str = "FREE_SLOTS";
    /// Array of `u64`, indexed by `hold::conf`.
    pub const HOLD_CONF: &str = "HOLD_CONF";
    /// Array of `u64` counters, indexed by `hold::stat`.
    pub const HOLD_STATS: &str = "HOLD_STATS";
    /// Ring buffer of [`crate::hold::HoldEvent`]s.
    pub const HOLD_EVENTS: &str = "HOLD_EVENTS";
    /// Ring buffer of [`crate::message::MessageEvent`]s.
    pub const MESSAGE_EVENTS: &str = "MESSAGE_EVENTS";
    /// Array map: [`crate::message::offset`] -> byte offset into `struct sock`.
    pub const MESSAGE_OFFSETS: &str = "MESSAGE_OFFSETS";
    /// Array map: [`crate::message::stat`] -> counter.
    pub const MESSAGE_STATS: &str = "MESSAGE_STATS";
    /// The `sock/sock_send_length` tracepoint program.
    pub const SOCK_SEND: &str = "tracery_sock_send";
    /// The `sock/sock_recv_length` tracepoint program.
    pub const SOCK_RECV: &str = "tracery_sock_recv";
}
