//! Trace tracking: which request each thread (or Go goroutine) serves, learned from the
//! trace headers of inbound plaintext HTTP/1.x requests.
//!
//! Syscall tracepoints see every receive of a tracked process and run the per-connection
//! parser of [`crate::trace_header`] over the received bytes. At the end of a request's
//! headers the trace the request carries (or none) becomes the receiving thread's and
//! goroutine's trace.

/// Most tracked processes.
pub const MAX_TRACKED: u32 = 4096;
/// Words of `TRACKED_TGIDS`, one bit per process id up to the kernel's `PID_MAX_LIMIT`
/// (2^22 on 64-bit): 512 KiB.
pub const TGID_BITMAP_WORDS: u32 = (1 << 22) / 64;

/// The `TRACKED_TGIDS` word and bit of process `tgid`.
pub const fn tgid_bit(tgid: u32) -> (u32, u64) {
    (tgid / 64, 1 << (tgid % 64))
}
/// Most connections with parser state; least recently used ones are forgotten.
pub const MAX_CONNS: u32 = 16384;
/// Most threads and goroutines with a known trace; least recently used are forgotten.
pub const MAX_TRACED: u32 = 65536;

/// `TRACE_PIDS` flag: the process is Go; key traces by goroutine (`g` in R14) too.
pub const TRACK_GO: u32 = 1;
/// `TRACE_PIDS` flag: the process runs tokio tasks; key traces by task too. A worker
/// thread runs many requests' tasks, so its own last request says little. The task is
/// read from tokio's thread-local `current_task_id` when [`TrackedProc::task_id_tls`] is
/// set, else learned from a uprobe on every `task::raw::poll` (keyed by task header).
pub const TRACK_TASKS: u32 = 2;

/// A tracked process (value of `TRACE_PIDS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackedProc {
    /// `TRACK_*` bits.
    pub flags: u32,
    /// Go: offset of `runtime.g.atomicstatus`, 0 when unknown (goroutines are then never
    /// stopped).
    pub g_status: u32,
    /// Go: offsets of `runtime.g.m` and `runtime.m.curg`, to find the goroutine that
    /// creates another from the system stack.
    pub g_m: u32,
    pub m_curg: u32,
    /// tokio: the current task id's address relative to the thread pointer; 0 when tasks
    /// are followed by the poll uprobe instead.
    pub task_id_tls: i64,
    /// tokio: offsets of `Header.vtable` and `Vtable.id_offset` (a header's task id).
    pub task_header_vtable: u32,
    pub task_vtable_id_offset: u32,
}

/// `GO_SUSPEND` value of a goroutine waiting for its next system call to be stopped.
pub const GO_SUSPEND_PENDING: u64 = 0;
/// `runtime.g.atomicstatus` of a goroutine in a system call (`_Gsyscall`).
pub const G_SYSCALL: u32 = 3;

/// Where a trace id came from, in rising priority: a request carrying several trace
/// headers is tied to the W3C one.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceSource {
    None = 0,
    Uber = 1,
    B3 = 2,
    W3c = 3,
}

/// The request a thread or goroutine serves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// All zero when the request carried no trace header.
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Bit `i` set: the request carried the header of `--header` filter `i`.
    pub header_bits: u32,
    /// A [`TraceSource`] as `u8`.
    pub source: u8,
    /// [`ORIGIN_REQUEST`] or [`ORIGIN_JOB`]: what carried the context to its reader.
    pub origin: u8,
    pub _pad: [u8; 2],
    /// `bpf_ktime_get_ns` when the request's headers ended.
    pub ktime_ns: u64,
}

/// `TraceContext::origin`: an inbound request (HTTP/1.x headers). Its reader serves it
/// until the next request on the connection.
pub const ORIGIN_REQUEST: u8 = 0;
/// `TraceContext::origin`: a Redis reply (a job's stored context). Its reader serves it
/// until it asks for the next job (see `trace_header::resp::is_job_fetch`).
pub const ORIGIN_JOB: u8 = 1;

/// Key of a goroutine's trace: the process and its `g` pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoKey {
    pub tgid: u32,
    pub _pad: u32,
    pub g: u64,
}

/// x86-64 syscall numbers the tracker follows.
pub mod nr {
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const CLOSE: u64 = 3;
    pub const READV: u64 = 19;
    pub const WRITEV: u64 = 20;
    pub const ACCEPT: u64 = 43;
    pub const SENDTO: u64 = 44;
    pub const RECVFROM: u64 = 45;
    pub const SENDMSG: u64 = 46;
    pub const RECVMSG: u64 = 47;
    pub const ACCEPT4: u64 = 288;
    pub const SENDMMSG: u64 = 307;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), Copy, integers only, explicit padding.
    unsafe impl aya::Pod for super::TraceContext {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::GoKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TrackedProc {}
}

const _: () = assert!(core::mem::size_of::<TraceContext>() == 40);

/// The system calls whose entry the tracker watches: sends (the sender's trace, for the
/// hold) and socket I/O (where a frozen goroutine is stopped). Must cover the numbers
/// `sys_enter` acts on in the eBPF crate.
pub const WATCHED_SYSCALLS_ENTER: &[&str] = &[
    "read", "write", "readv", "writev", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
];

/// The system calls whose exit the tracker watches: receives (parsed for trace headers),
/// the end of sends, and the life of connections. Must cover the numbers `sys_exit` acts
/// on in the eBPF crate.
pub const WATCHED_SYSCALLS_EXIT: &[&str] = &[
    "read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg", "sendmmsg",
    "close", "accept", "accept4",
];

/// Entries of [`WATCHED_SYSCALLS_ENTER`] left unhooked while the `sock/sock_recv_length`
/// tracepoint is attached: it runs only for socket receives, inside the call, and stops a
/// frozen goroutine there. Every process on the node pays for each hooked system call, so
/// each one left out counts.
pub const SOCK_RECV_COVERS_ENTER: &[&str] = &["read", "readv", "recvfrom", "recvmsg"];

/// Entries of [`WATCHED_SYSCALLS_EXIT`] left unhooked while the `sock/sock_recv_length`
/// tracepoint is attached: receives are parsed there, inside the call, once the bytes are
/// in the caller's buffer. Reads of pipes and files then run no program at all.
pub const SOCK_RECV_COVERS_EXIT: &[&str] = SOCK_RECV_COVERS_ENTER;

/// Entries of [`WATCHED_SYSCALLS_EXIT`] left unhooked while the `sock/sock_send_length`
/// tracepoint is attached: a send's only business at its exit is to end the hold's send
/// context, which that tracepoint does at the end of the call's one message. (`sendmmsg`
/// sends several and keeps its exit; a write to a pipe or file keeps a context that the
/// thread's next send replaces at its entry.)
pub const SOCK_SEND_COVERS_EXIT: &[&str] = &["write", "writev", "sendto", "sendmsg"];
