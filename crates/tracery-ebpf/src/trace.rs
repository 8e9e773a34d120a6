//! Trace tracking on the receive path: the headers of inbound HTTP/1.x requests of tracked
//! processes are parsed as a byte stream per connection, and
//! record which trace each thread (and Go goroutine) serves. A connection whose first byte
//! is a RESP type byte is a Redis stream: a reply carrying a job's context (a `GET` of the
//! job's JSON, a `BRPOP`ed element, `HGETALL` fields) makes its reader serve that trace.
//!
//! Receives are parsed at `sock/sock_recv_length`, which runs only for socket receives.
//! Sends and the life of connections come from the `syscalls/sys_{enter,exit}_*`
//! tracepoints of the few system calls that matter, so every other system call on the
//! node runs none of them. Where those are missing, the raw `sys_enter`/`sys_exit`
//! tracepoints stand in (every system call); without the `sock` tracepoint, receives are
//! parsed at their system calls' exits.
//! Either way they work from the user `pt_regs`, which give the syscall arguments and, for
//! Go, the goroutine (`g` stays in R14 across `runtime/internal/syscall.Syscall6`).
//! Every loop is bounded (`TRACE_SCAN_MAX` bytes per receive, fixed-size hex fields).

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_ktime_get_ns, bpf_loop,
        bpf_probe_read_kernel, bpf_probe_read_user, bpf_send_signal_thread, bpf_task_pt_regs,
    },
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::RawTracePointContext,
};
use tracery_common::{
    regs::pt,
    trace::{
        nr, tgid_bit, GoKey, TraceContext, TrackedProc, GO_SUSPEND_PENDING, G_SYSCALL, MAX_CONNS,
        MAX_TRACKED, ORIGIN_JOB, TGID_BITMAP_WORDS, TRACK_GO, TRACK_TASKS,
    },
    trace_header::{
        feed_byte, scan_len, start_read, ConnState, Fed, HeaderFilters, MAX_HEADER_FILTERS,
        TRACE_WINDOW,
    },
    FREEZE_SIGNAL,
};

use crate::{
    served::{current_trace, GO_TRACE, THREAD_TRACE},
    trap::GO_SUSPEND,
};

#[map(name = "TRACE_PIDS")]
static TRACE_PIDS: HashMap<u32, TrackedProc> = HashMap::with_max_entries(MAX_TRACKED, 0);

/// One bit per process id, set while the process is in `TRACE_PIDS`: the node-wide
/// tracepoints settle an untracked process with an array read the verifier inlines, not a
/// hash lookup (hash lookups were about a tenth of what tracking added per request).
#[map(name = "TRACKED_TGIDS")]
static TRACKED_TGIDS: Array<u64> = Array::with_max_entries(TGID_BITMAP_WORDS, 0);

#[map(name = "GO_FREEZE_ARMED")]
static GO_FREEZE_ARMED: Array<u64> = Array::with_max_entries(1, 0);

/// Non-zero while receives are parsed at `sock/sock_recv_length` (set by the agent when
/// that tracepoint is attached): the receive system calls' exits then skip them.
#[map(name = "RECV_AT_SOCK")]
static RECV_AT_SOCK: Array<u64> = Array::with_max_entries(1, 0);

#[map(name = "CONNS")]
static CONNS: LruHashMap<u64, ConnState> = LruHashMap::with_max_entries(MAX_CONNS, 0);

#[map(name = "HEADER_FILTERS")]
static HEADER_FILTERS: HashMap<u64, u32> = HashMap::with_max_entries(MAX_HEADER_FILTERS, 0);

#[map(name = "TRACE_SCRATCH")]
static TRACE_SCRATCH: PerCpuArray<[u8; TRACE_WINDOW]> = PerCpuArray::with_max_entries(1, 0);

/// Where the scan of the current receive is, per CPU. Kept in a map, not on the stack:
/// the verifier tracks stack values exactly and would walk the `bpf_loop` callback once
/// per byte; values loaded from a map are unknown to it, so one walk covers every step.
#[map(name = "SCAN_CURSOR")]
static SCAN_CURSOR: PerCpuArray<Cursor> = PerCpuArray::with_max_entries(1, 0);

/// The `--header` filters, as the parser asks for them.
struct FilterMap;

impl HeaderFilters for FilterMap {
    #[inline(always)]
    fn bit(&self, line_hash: u64) -> Option<u32> {
        // SAFETY: a map value pointer, valid for this program run.
        HEADER_FILTERS.get_ptr(line_hash).map(|bit| unsafe { *bit })
    }
}

#[inline(always)]
pub fn reg(regs: u64, index: usize) -> u64 {
    let mut v = 0u64;
    // SAFETY: `regs` is the kernel's `pt_regs` of the current task (raw tracepoint
    // argument); the read is fault-safe and bounded to 8 bytes.
    unsafe {
        bpf_probe_read_kernel(
            (&mut v as *mut u64).cast(),
            8,
            (regs + 8 * index as u64) as *const c_void,
        )
    };
    v
}

#[inline(always)]
pub fn user_u64(addr: u64) -> u64 {
    let mut v = 0u64;
    // SAFETY: fault-safe read of 8 bytes of user memory.
    unsafe { bpf_probe_read_user((&mut v as *mut u64).cast(), 8, addr as *const c_void) };
    v
}

/// The current thread's ids and its process, if that is tracked: the first check of every
/// per-syscall hook, so other processes' system calls cost one lookup.
#[inline(always)]
pub fn current_tracked() -> Option<(u64, TrackedProc)> {
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (pid_tgid >> 32) as u32;
    let (word, bit) = tgid_bit(tgid);
    // A tgid past the bitmap (none on Linux) falls through to the lookup.
    if TRACKED_TGIDS.get(word).is_some_and(|w| w & bit == 0) {
        return None;
    }
    Some((pid_tgid, tracked(tgid)?))
}

/// The tracked process `tgid`, if it is tracked.
#[inline(always)]
pub fn tracked(tgid: u32) -> Option<TrackedProc> {
    // SAFETY: a map value pointer, valid for this program run.
    TRACE_PIDS.get_ptr(tgid).map(|p| unsafe { *p })
}

/// Where the current thread's request is kept for process `p`: the goroutine (`g`, in
/// R14 of user registers `regs14`) or the tokio task read from thread-local state, as a
/// `GO_TRACE` key; `None` for the thread's own (`THREAD_TRACE`: tokio's poll mode, or a
/// thread outside any task).
#[inline(always)]
pub fn request_key(p: &TrackedProc, pid_tgid: u64, r14: u64) -> Option<u64> {
    if p.flags & TRACK_GO != 0 {
        Some(r14)
    } else if p.flags & TRACK_TASKS != 0 && p.task_id_tls != 0 {
        Some(crate::tasks::current_task(p, pid_tgid)).filter(|id| *id != 0)
    } else {
        None
    }
}

#[inline(always)]
fn conn_key(tgid: u32, fd: u32) -> u64 {
    (u64::from(tgid) << 32) | u64::from(fd)
}

/// Raw `sys_enter`, for every system call on the node: the number is checked before any
/// map lookup, then the process.
///
/// `regs` are the user registers saved at entry, `id` the system call's number.
#[inline(always)]
pub fn raw_sys_enter(regs: u64, id: u64) -> u32 {
    if !is_socket_io(id) && id != nr::SENDMMSG {
        return 0;
    }
    let Some((pid_tgid, p)) = current_tracked() else {
        return 0;
    };
    sys_enter(&p, pid_tgid, regs, id)
}

/// Syscall entry in tracked process `p`: the Go syscall boundary, the end of a job, and,
/// while holds are armed, the sender of a send (the receive path works at exit, from the
/// registers the kernel saved at entry, which it leaves unchanged).
#[inline(always)]
pub fn sys_enter(p: &TrackedProc, pid_tgid: u64, regs: u64, id: u64) -> u32 {
    if GO_FREEZE_ARMED.get(0).is_some_and(|armed| *armed != 0) {
        go_boundary_of(p, pid_tgid, regs, id);
    }
    crate::job_end::on_send_enter(p, pid_tgid, regs, id);
    note_send(p, pid_tgid, regs, id);
    0
}

/// The user registers of the current task, saved at its system call's entry (for the
/// `syscalls/*` tracepoints, whose record carries only the arguments); 0 if unknown.
#[inline(always)]
pub fn current_user_regs() -> u64 {
    // SAFETY: the current task as a BTF pointer, then its saved user registers; both
    // helpers take no user input.
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as u64 }
}

/// A raw `sys_exit`, for every system call: the process is checked first, and the
/// number comes from the saved `orig_ax`.
#[inline(always)]
pub fn raw_sys_exit(ctx: &RawTracePointContext) -> u32 {
    let Some((pid_tgid, p)) = current_tracked() else {
        return 0;
    };
    let regs: u64 = ctx.arg(0);
    sys_exit(
        &p,
        pid_tgid,
        regs,
        reg(regs, pt::ORIG_RAX as usize),
        ctx.arg(1),
    )
}

/// Entry of a send system call of tracked process `p`, while holds are armed: records
/// the trace the sender serves (for Go, the goroutine's, which only the registers here
/// show) and the descriptor, for the `sk_msg` program that runs inside the call.
#[inline(always)]
fn note_send(p: &TrackedProc, pid_tgid: u64, regs: u64, id: u64) {
    if !matches!(
        id,
        nr::WRITE | nr::WRITEV | nr::SENDTO | nr::SENDMSG | nr::SENDMMSG
    ) || !crate::hold::armed()
    {
        return;
    }
    let key = request_key(p, pid_tgid, reg(regs, pt::R14 as usize));
    let trace = current_trace(pid_tgid, key).unwrap_or_default();
    let fd = reg(regs, pt::RDI as usize) as i32;
    crate::hold::set_send_ctx(pid_tgid, trace.trace_id, fd);
}

/// Most buffers of a vectored receive that are parsed.
const MAX_IOVECS: u64 = 8;

/// Syscall exit of system call `id` in tracked process `proc_`, which returned `ret`.
/// Arguments come from the saved user registers `regs` (`rdi`, `rsi`, `rdx`), so a
/// receive that was already blocked when tracking began is parsed too.
#[inline(always)]
pub fn sys_exit(proc_: &TrackedProc, pid_tgid: u64, regs: u64, id: u64, ret: i64) -> u32 {
    if is_receive(id) && receives_at_sock() {
        return 0;
    }
    receive_or_exit(proc_, pid_tgid, regs, id, ret)
}

/// The receive system calls, whose bytes the tracker parses.
#[inline(always)]
fn is_receive(id: u64) -> bool {
    matches!(id, nr::READ | nr::RECVFROM | nr::READV | nr::RECVMSG)
}

/// True while receives are parsed at `sock/sock_recv_length`, not at their exits.
#[inline(always)]
pub fn receives_at_sock() -> bool {
    RECV_AT_SOCK.get(0).is_some_and(|on| *on != 0)
}

/// A socket receive of `ret` bytes by tracked process `proc_`, seen inside its system
/// call (`sock/sock_recv_length`): the bytes are in the caller's buffers already, and the
/// buffers are the call's arguments, from the registers saved at its entry. The same parse
/// as at a receive's exit, with no hook on the exits of every read on the node.
#[inline(always)]
pub fn sock_receive(proc_: &TrackedProc, pid_tgid: u64, ret: i64) {
    let regs = current_user_regs();
    if regs == 0 {
        return;
    }
    // A receive reached some other way (io_uring's workers, sendfile) has no such
    // registers: only the four receive calls are parsed.
    let id = reg(regs, pt::ORIG_RAX as usize);
    if is_receive(id) {
        receive_or_exit(proc_, pid_tgid, regs, id, ret);
    }
}

#[inline(always)]
fn receive_or_exit(proc_: &TrackedProc, pid_tgid: u64, regs: u64, id: u64, ret: i64) -> u32 {
    let r = parse_exit(proc_, pid_tgid, regs, id, ret);
    if is_receive(id) {
        // After the parse: a request's own header names its trace.
        crate::messages::recv_exit(proc_, pid_tgid, regs);
    }
    r
}

/// The receive path of [`sys_exit`]: parses received bytes, follows connections.
#[inline(always)]
fn parse_exit(proc_: &TrackedProc, pid_tgid: u64, regs: u64, id: u64, ret: i64) -> u32 {
    let tgid = (pid_tgid >> 32) as u32;
    let flags = proc_.flags;
    if matches!(
        id,
        nr::WRITE | nr::WRITEV | nr::SENDTO | nr::SENDMSG | nr::SENDMMSG
    ) {
        if crate::hold::armed() {
            crate::hold::clear_send_ctx(pid_tgid);
        }
        return 0;
    }
    if ret < 0 {
        return 0;
    }
    let fd = reg(regs, pt::RDI as usize) as u32;
    match id {
        nr::CLOSE => {
            let _ = CONNS.remove(conn_key(tgid, fd));
            return 0;
        }
        nr::ACCEPT | nr::ACCEPT4 => {
            // A new connection may reuse the number of a closed one: start it afresh.
            let _ = CONNS.insert(conn_key(tgid, ret as u32), ConnState::NEW, 0);
            return 0;
        }
        nr::READ | nr::RECVFROM | nr::READV | nr::RECVMSG => {}
        _ => return 0,
    }
    if ret == 0 {
        return 0;
    }
    let arg1 = reg(regs, pt::RSI as usize);
    let arg2 = reg(regs, pt::RDX as usize);
    // The buffers: one for read/recvfrom; an iovec array for readv and recvmsg.
    let (iov, iovcnt) = match id {
        nr::READV => (arg1, arg2),
        // struct msghdr: msg_iov at 16, msg_iovlen at 24.
        nr::RECVMSG => (user_u64(arg1 + 16), user_u64(arg1 + 24)),
        _ => (0, 0),
    };
    let key = conn_key(tgid, fd);
    if CONNS.get_ptr(key).is_none() {
        let _ = CONNS.insert(key, ConnState::NEW, 0);
    }
    let Some(st) = CONNS.get_ptr_mut(key) else {
        return 0;
    };
    let Some(win) = TRACE_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // The goroutine now; a tokio task's key is read only if a request's headers end here.
    let g = if flags & TRACK_GO != 0 {
        reg(regs, pt::R14 as usize)
    } else {
        0
    };
    let tasks = flags & TRACK_TASKS != 0;
    let left = scan_len(ret as u64);
    // The first buffer; for readv/recvmsg the iovec array's first entry, the rest are
    // taken up by the scan itself.
    let (first, first_len) = if iov == 0 {
        (arg1, arg2)
    } else if iovcnt == 0 {
        return 0;
    } else {
        (user_u64(iov), user_u64(iov + 8))
    };
    scan(
        st,
        win,
        Segments {
            iov,
            iovcnt: iovcnt.min(MAX_IOVECS),
            first,
            first_len: first_len.min(left),
            total: left,
        },
        Receiver {
            pid_tgid,
            g,
            tasks,
            task_id_tls: proc_.task_id_tls,
        },
    );
    0
}

/// Who receives: the thread, and its goroutine (`g`) or whether it runs tokio tasks.
#[repr(C)]
struct Receiver {
    pid_tgid: u64,
    g: u64,
    tasks: bool,
    task_id_tls: i64,
}

/// The buffers of one receive.
struct Segments {
    /// User address of the iovec array; 0 for a plain read.
    iov: u64,
    /// Entries of the iovec array to parse ([`MAX_IOVECS`] at most).
    iovcnt: u64,
    /// The first buffer and its length.
    first: u64,
    first_len: u64,
    /// Bytes to parse over all buffers.
    total: u64,
}

/// Feeds the received bytes to the connection's parser.
///
/// One `bpf_loop` runs over every byte of every buffer: a call site per iovec would have
/// the verifier walk the callback once per site, past its instruction budget.
#[inline(always)]
fn scan(st: *mut ConnState, win: *mut [u8; TRACE_WINDOW], seg: Segments, receiver: Receiver) {
    // SAFETY: a map value pointer, valid for this program run; one receive per connection
    // is parsed at a time in practice (concurrent readers of one socket are not ordered).
    let st_ref = unsafe { &mut *st };
    let head = || {
        let mut p = [0u8; 4];
        // SAFETY: fault-safe 4-byte read of the receive buffer.
        let r = unsafe { bpf_probe_read_user(p.as_mut_ptr().cast(), 4, seg.first as *const _) };
        (r == 0 && seg.first_len >= 4).then_some(p)
    };
    let Some(skip) = start_read(st_ref, seg.total, head) else {
        return;
    };
    let Some(cur) = SCAN_CURSOR.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's cursor, a map value valid for the program run; the program is
    // not re-entered on one CPU while it runs.
    unsafe {
        *cur = Cursor {
            iov: seg.iov,
            iov_next: 1,
            iov_end: seg.iovcnt,
            seg_base: seg.first,
            seg_left: seg.first_len,
            skip,
            left: seg.total,
            pos: 0,
            len: 0,
            published: 0,
            served: TraceContext::default(),
        }
    };
    let mut sc = Scan {
        st,
        win,
        cur,
        receiver,
    };
    // One step per byte, plus one per buffer started and one per buffer skipped over.
    let steps = seg.total + 2 * MAX_IOVECS + 2;
    // SAFETY: the callback only uses `sc` for the duration of the call.
    unsafe {
        bpf_loop(
            steps as u32,
            scan_step as *mut c_void,
            (&mut sc as *mut Scan).cast(),
            0,
        )
    };
    // SAFETY: as above; the loop is over.
    let cur = unsafe { &*cur };
    if cur.published != 0 {
        publish(&sc.receiver, &cur.served);
    }
}

/// State handed to the `bpf_loop` callback (it lives on the caller's stack).
#[repr(C)]
struct Scan {
    st: *mut ConnState,
    win: *mut [u8; TRACE_WINDOW],
    cur: *mut Cursor,
    receiver: Receiver,
}

/// The scan's position in the receive's buffers.
#[repr(C)]
struct Cursor {
    /// User address of the iovec array; 0 for a plain read.
    iov: u64,
    /// Next iovec entry, and the end of those parsed.
    iov_next: u64,
    iov_end: u64,
    /// User address and length of the current buffer's bytes not yet in the window.
    seg_base: u64,
    seg_left: u64,
    /// Body bytes of an earlier request still to pass over, unparsed.
    skip: u64,
    /// Bytes of the receive not yet consumed (parsed or skipped).
    left: u64,
    /// Next byte in the window, and how many it holds.
    pos: u64,
    len: u64,
    /// Non-zero once a request's headers ended (or a job's context was found) in this
    /// receive; `served` is the last such context, published when the scan ends.
    published: u64,
    served: TraceContext,
}

extern "C" fn scan_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Scan` that `scan` passed; its pointers are map values (the
    // connection, this CPU's window and cursor), all valid for the program run.
    let (st, win, cur) = unsafe {
        let scan = &*(ctx as *const Scan);
        (&mut *scan.st, &mut *scan.win, &mut *scan.cur)
    };
    if cur.left == 0 {
        return 1;
    }
    if cur.pos >= cur.len {
        if cur.seg_left == 0 {
            // The next buffer of a vectored receive.
            if cur.iov == 0 || cur.iov_next >= cur.iov_end {
                return 1;
            }
            let at = cur.iov + 16 * (cur.iov_next & (MAX_IOVECS - 1));
            cur.seg_base = user_u64(at);
            cur.seg_left = user_u64(at + 8).min(cur.left);
            cur.iov_next += 1;
            return 0;
        }
        if cur.skip > 0 {
            let s = cur.skip.min(cur.seg_left);
            cur.seg_base += s;
            cur.seg_left -= s;
            cur.skip -= s;
            cur.left -= s.min(cur.left);
            return 0;
        }
        let len = if cur.seg_left > TRACE_WINDOW as u64 {
            TRACE_WINDOW as u32
        } else {
            cur.seg_left as u32
        };
        // SAFETY: at most `TRACE_WINDOW` bytes, the window's size; the source is user
        // memory read with a fault-safe helper.
        let r = unsafe {
            bpf_probe_read_user(
                win.as_mut_ptr().cast(),
                len & (2 * TRACE_WINDOW as u32 - 1),
                cur.seg_base as *const c_void,
            )
        };
        if r != 0 {
            return 1;
        }
        cur.seg_base += u64::from(len);
        cur.seg_left -= u64::from(len);
        cur.pos = 0;
        cur.len = u64::from(len);
    }
    let c = win[(cur.pos as usize) & (TRACE_WINDOW - 1)];
    cur.pos += 1;
    cur.left -= 1;
    match feed_byte(st, c, &FilterMap) {
        Fed::More => 0,
        Fed::Headers | Fed::Context => {
            keep_published(cur, st);
            0
        }
        Fed::HeadersThenStop => {
            keep_published(cur, st);
            1
        }
        Fed::Stop => 1,
    }
}

/// A request's headers are complete, or a Redis reply carried a job's context: kept for
/// [`publish`] after the scan (only the receive's last one counts), which keeps the loop's
/// body small for the verifier.
#[inline(always)]
fn keep_published(cur: &mut Cursor, st: &mut ConnState) {
    // SAFETY: reads the monotonic clock; no arguments.
    st.pending.ktime_ns = unsafe { bpf_ktime_get_ns() };
    cur.served = st.pending;
    cur.published = 1;
}

/// The receive's last request (or job) `t` becomes the trace its thread and goroutine (or
/// task) serve; for a request without one, none, so nothing stale is left.
#[inline(always)]
fn publish(r: &Receiver, t: &TraceContext) {
    let pid_tgid = r.pid_tgid;
    if t.origin == ORIGIN_JOB {
        crate::job_end::note_job_server((pid_tgid >> 32) as u32);
    }
    crate::messages::note_published(pid_tgid, t);
    let g = if r.tasks {
        crate::tasks::current_task_of(r.task_id_tls, pid_tgid)
    } else {
        r.g
    };
    let _ = THREAD_TRACE.insert(pid_tgid, *t, 0);
    if g != 0 {
        let key = GoKey {
            tgid: (pid_tgid >> 32) as u32,
            _pad: 0,
            g,
        };
        let _ = GO_TRACE.insert(key, *t, 0);
    }
}

/// A receive, inside its system call (`sock/sock_recv_length`, which stands in for the
/// receives' entry hooks): a frozen goroutine is stopped here as at a send's entry. The
/// signal is delivered when the call returns either way, and Go's sockets never block in
/// the kernel, so the goroutine stops at the same point.
#[inline(always)]
pub fn go_receive_boundary(p: &TrackedProc, pid_tgid: u64) {
    if p.flags & TRACK_GO == 0 || !GO_FREEZE_ARMED.get(0).is_some_and(|armed| *armed != 0) {
        return;
    }
    let regs = current_user_regs();
    if regs != 0 {
        go_boundary_of(p, pid_tgid, regs, reg(regs, pt::ORIG_RAX as usize));
    }
}

/// The system calls a frozen goroutine may stop at.
#[inline(always)]
fn is_socket_io(id: u64) -> bool {
    matches!(
        id,
        nr::READ
            | nr::WRITE
            | nr::READV
            | nr::WRITEV
            | nr::SENDTO
            | nr::RECVFROM
            | nr::SENDMSG
            | nr::RECVMSG
    )
}

/// A goroutine frozen at a breakpoint is stopped at its next system call, where Go
/// considers it outside Go code (`_Gsyscall`): the runtime hands its P to another thread
/// and the garbage collector does not wait for it. The trap signal is delivered when the
/// system call returns, before the goroutine runs Go code again.
///
/// Only socket I/O on a connection the process has received from counts: a write to a
/// shared file (a log line to stdout) is made holding that file's lock, and stopping there
/// would block every goroutine that logs (measured: all requests of the gateway stalled).
///
/// For the current thread of tracked process `p`.
#[inline(always)]
fn go_boundary_of(p: &TrackedProc, pid_tgid: u64, regs: u64, id: u64) {
    if !is_socket_io(id) {
        return;
    }
    let tgid = (pid_tgid >> 32) as u32;
    if p.flags & TRACK_GO == 0 || p.g_status == 0 {
        return;
    }
    let g = reg(regs, pt::R14 as usize);
    let key = GoKey { tgid, _pad: 0, g };
    let Some(state) = GO_SUSPEND.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a map value pointer, valid for this program run.
    if unsafe { *state } != GO_SUSPEND_PENDING || !crate::trap::seized(tgid) {
        return;
    }
    let fd = reg(regs, pt::RDI as usize) as u32;
    if CONNS.get_ptr(conn_key(tgid, fd)).is_none() {
        return;
    }
    let mut status = 0u32;
    // SAFETY: fault-safe 4-byte read of the goroutine's status word.
    let r = unsafe {
        bpf_probe_read_user(
            (&mut status as *mut u32).cast(),
            4,
            (g + u64::from(p.g_status)) as *const c_void,
        )
    };
    if r != 0 || status != G_SYSCALL {
        return;
    }
    // SAFETY: a map value pointer, valid for this program run.
    unsafe { *state = u64::from(pid_tgid as u32) };
    // SAFETY: signals only the current thread, which the agent has seized.
    unsafe { bpf_send_signal_thread(FREEZE_SIGNAL) };
}
