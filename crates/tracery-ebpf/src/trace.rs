//! Trace tracking on the receive path: raw `sys_enter`/`sys_exit` tracepoints parse the
//! headers of inbound HTTP/1.x requests of tracked processes as a byte stream per
//! connection, and record which trace each thread (and Go goroutine) serves.
//!
//! Raw tracepoints hand over the user `pt_regs`, which gives the syscall arguments and,
//! for Go, the goroutine (`g` stays in R14 across `runtime/internal/syscall.Syscall6`).
//! Every loop is bounded (`TRACE_SCAN_MAX` bytes per receive, fixed-size hex fields).

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_loop, bpf_probe_read_kernel,
        bpf_probe_read_user, bpf_send_signal_thread,
    },
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::RawTracePointContext,
};
use tracery_common::{
    regs::pt,
    trace::{
        fnv_step, is_method_prefix, line, names, nr, phase, ConnState, GoKey, TraceContext,
        TraceSource, TrackedProc, FNV_OFFSET, GO_SUSPEND_PENDING, G_SYSCALL, MAX_CONNS,
        MAX_HEADER_FILTERS, MAX_TRACED, MAX_TRACKED, TRACE_SCAN_MAX, TRACE_WINDOW, TRACK_GO,
        TRACK_TASKS,
    },
};

#[map(name = "TRACE_PIDS")]
static TRACE_PIDS: HashMap<u32, TrackedProc> = HashMap::with_max_entries(MAX_TRACKED, 0);

#[map(name = "GO_SUSPEND")]
pub static GO_SUSPEND: HashMap<GoKey, u64> = HashMap::with_max_entries(1024, 0);

#[map(name = "GO_FREEZE_ARMED")]
static GO_FREEZE_ARMED: Array<u64> = Array::with_max_entries(1, 0);

#[map(name = "CONNS")]
static CONNS: LruHashMap<u64, ConnState> = LruHashMap::with_max_entries(MAX_CONNS, 0);

#[map(name = "THREAD_TRACE")]
pub static THREAD_TRACE: LruHashMap<u64, TraceContext> =
    LruHashMap::with_max_entries(MAX_TRACED, 0);

#[map(name = "GO_TRACE")]
pub static GO_TRACE: LruHashMap<GoKey, TraceContext> = LruHashMap::with_max_entries(MAX_TRACED, 0);

#[map(name = "HEADER_FILTERS")]
static HEADER_FILTERS: HashMap<u64, u32> = HashMap::with_max_entries(MAX_HEADER_FILTERS, 0);

#[map(name = "TRACE_SCRATCH")]
pub static TRACE_SCRATCH: PerCpuArray<[u8; TRACE_WINDOW]> = PerCpuArray::with_max_entries(1, 0);

/// Parser state for one outbound message (per CPU: it lives for one program run).
#[map(name = "OUT_STATE")]
static OUT_STATE: PerCpuArray<ConnState> = PerCpuArray::with_max_entries(1, 0);

/// The trace an outbound message's headers carry (per CPU, one program run).
#[map(name = "OUT_TRACE")]
static OUT_TRACE: PerCpuArray<TraceContext> = PerCpuArray::with_max_entries(1, 0);

/// Largest `Content-Length` followed; beyond it the connection is given up until the next
/// request line (a body that large is not worth tracking byte by byte anyway).
const MAX_BODY: u64 = 1 << 40;

#[inline(always)]
fn reg(regs: u64, index: usize) -> u64 {
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
fn user_u64(addr: u64) -> u64 {
    let mut v = 0u64;
    // SAFETY: fault-safe read of 8 bytes of user memory.
    unsafe { bpf_probe_read_user((&mut v as *mut u64).cast(), 8, addr as *const c_void) };
    v
}

#[inline(always)]
fn conn_key(tgid: u32, fd: u32) -> u64 {
    (u64::from(tgid) << 32) | u64::from(fd)
}

/// Syscall entry: the Go syscall boundary and, while holds are armed, the sender of a send
/// (the receive path works at exit, from the registers the kernel saved at entry, which it
/// leaves unchanged). It runs for every system call on the node: cheap checks come first.
pub fn sys_enter(ctx: &RawTracePointContext) -> u32 {
    if GO_FREEZE_ARMED.get(0).is_some_and(|armed| *armed != 0) {
        go_syscall_boundary(ctx);
    }
    note_send(ctx);
    0
}

/// Entry of a send system call of a tracked process, while holds are armed: records the
/// trace the sender serves (for Go, the goroutine's, which only the registers here show)
/// and the descriptor, for the `sk_msg` program that runs inside the call.
#[inline(always)]
fn note_send(ctx: &RawTracePointContext) {
    let id: u64 = ctx.arg(1);
    if !matches!(
        id,
        nr::WRITE | nr::WRITEV | nr::SENDTO | nr::SENDMSG | nr::SENDMMSG
    ) || !crate::hold::armed()
    {
        return;
    }
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (pid_tgid >> 32) as u32;
    let Some(p) = TRACE_PIDS.get_ptr(tgid) else {
        return;
    };
    // SAFETY: a map value pointer, valid for this program run.
    let flags = unsafe { (*p).flags };
    let regs: u64 = ctx.arg(0);
    let go_g = (flags & TRACK_GO != 0).then(|| reg(regs, pt::R14 as usize));
    let trace = current_trace(pid_tgid, go_g).unwrap_or_default();
    let fd = reg(regs, pt::RDI as usize) as i32;
    crate::hold::set_send_ctx(pid_tgid, trace.trace_id, fd);
}

/// Most buffers of a vectored receive that are parsed.
const MAX_IOVECS: u64 = 8;

/// Syscall exit. Arguments come from the saved user registers (the syscall number in
/// `orig_ax`, arguments in `rdi`, `rsi`, `rdx`), so a receive that was already blocked
/// when tracking began is parsed too.
pub fn sys_exit(ctx: &RawTracePointContext) -> u32 {
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (pid_tgid >> 32) as u32;
    let Some(proc_) = TRACE_PIDS.get_ptr(tgid) else {
        return 0;
    };
    // SAFETY: a map value pointer, valid for this program run.
    let flags = unsafe { (*proc_).flags };
    let ret: i64 = ctx.arg(1);
    let regs: u64 = ctx.arg(0);
    let id = reg(regs, pt::ORIG_RAX as usize);
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
    let g = if flags & TRACK_GO != 0 {
        reg(regs, pt::R14 as usize)
    } else if flags & TRACK_TASKS != 0 {
        crate::tasks::current_task(pid_tgid)
    } else {
        0
    };
    let mut left = (ret as u64).min(u64::from(TRACE_SCAN_MAX));
    if iov == 0 {
        scan(st, win, arg1, left.min(arg2), pid_tgid, g);
        return 0;
    }
    for i in 0..MAX_IOVECS {
        if i >= iovcnt || left == 0 {
            break;
        }
        let base = user_u64(iov + 16 * i);
        let len = user_u64(iov + 16 * i + 8).min(left);
        scan(st, win, base, len, pid_tgid, g);
        left -= len;
    }
    0
}

/// Feeds `n` received bytes at `buf` to the connection's parser.
#[inline(always)]
fn scan(st: *mut ConnState, win: *mut [u8; TRACE_WINDOW], buf: u64, n: u64, pid_tgid: u64, g: u64) {
    // SAFETY: a map value pointer, valid for this program run; one receive per connection
    // is parsed at a time in practice (concurrent readers of one socket are not ordered).
    let st = unsafe { &mut *st };
    if n == 0 {
        return;
    }
    if st.phase == phase::OTHER {
        // Resynchronise only where a receive starts with a request line.
        let mut p = [0u8; 4];
        // SAFETY: fault-safe 4-byte read of the receive buffer.
        let r = unsafe { bpf_probe_read_user(p.as_mut_ptr().cast(), 4, buf as *const _) };
        if n < 4 || r != 0 || !is_method_prefix(p) {
            return;
        }
        *st = ConnState::NEW;
    }
    let mut start = 0;
    if st.phase == phase::BODY {
        let skip = st.body_left.min(n);
        st.body_left -= skip;
        if st.body_left == 0 {
            st.phase = phase::START;
            st.prefix_len = 0;
        }
        start = skip;
    }
    if start >= n {
        return;
    }
    let mut sc = Scan {
        st,
        win,
        buf: buf + start,
        pid_tgid,
        g,
        n: n - start,
        outbound: 0,
    };
    // SAFETY: the callback only uses `sc` for the duration of the call.
    unsafe {
        bpf_loop(
            (n - start) as u32,
            scan_step as *mut c_void,
            (&mut sc as *mut Scan).cast(),
            0,
        )
    };
}

/// State handed to the `bpf_loop` callback (it lives on the caller's stack).
#[repr(C)]
struct Scan {
    st: *mut ConnState,
    win: *mut [u8; TRACE_WINDOW],
    /// User address of the received bytes; 0 when `win` already holds all `n` bytes.
    buf: u64,
    pid_tgid: u64,
    g: u64,
    n: u64,
    /// Outbound mode (non-zero): the request's trace goes to `OUT_TRACE` at the end of its
    /// headers, and no thread's trace changes.
    outbound: u64,
}

/// Finds the trace header of an outbound HTTP/1.x request whose first `n` bytes
/// (at most `TRACE_WINDOW`) are already in `win`. Returns the trace, zero when none.
#[inline(always)]
pub fn outbound_trace(win: *mut [u8; TRACE_WINDOW], n: u64) -> TraceContext {
    let (Some(st), Some(out)) = (OUT_STATE.get_ptr_mut(0), OUT_TRACE.get_ptr_mut(0)) else {
        return TraceContext::default();
    };
    // SAFETY: this CPU's scratch parser state and result, valid for the program run.
    unsafe {
        *st = ConnState::NEW;
        *out = TraceContext::default();
    }
    let mut sc = Scan {
        st,
        win,
        buf: 0,
        pid_tgid: 0,
        g: 0,
        n: n.min(TRACE_WINDOW as u64),
        outbound: 1,
    };
    // SAFETY: the callback only uses `sc` during the call.
    unsafe {
        bpf_loop(
            sc.n as u32,
            scan_step as *mut c_void,
            (&mut sc as *mut Scan).cast(),
            0,
        )
    };
    // SAFETY: as above; the callback wrote it, if it found the end of the headers.
    unsafe { *out }
}

extern "C" fn scan_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Scan` that `sys_exit` passed; its pointers are a map value
    // and this CPU's scratch window, both valid for the program run.
    let (sc, st, win) = unsafe {
        let sc = &*(ctx as *const Scan);
        (sc, &mut *sc.st, &mut *sc.win)
    };
    let off = (i as usize) & (TRACE_WINDOW - 1);
    if off == 0 && sc.buf != 0 {
        let left = sc.n - i;
        let len = if left > TRACE_WINDOW as u64 {
            TRACE_WINDOW as u32
        } else {
            left as u32
        };
        // SAFETY: `len <= TRACE_WINDOW`, the window's size; the source is user memory read
        // with a fault-safe helper.
        let r = unsafe {
            bpf_probe_read_user(
                win.as_mut_ptr().cast(),
                len & (2 * TRACE_WINDOW as u32 - 1),
                (sc.buf + i) as *const c_void,
            )
        };
        if r != 0 {
            return 1;
        }
    }
    step(sc, st, win[off])
}

/// Feeds one byte to the connection's parser. Returns 1 to stop scanning this receive.
#[inline(always)]
fn step(sc: &Scan, st: &mut ConnState, c: u8) -> i64 {
    match st.phase {
        phase::START => {
            let k = (st.prefix_len & 3) as usize;
            st.prefix[k] = c;
            st.prefix_len += 1;
            if st.prefix_len >= 4 {
                if is_method_prefix(st.prefix) {
                    st.phase = phase::HEADERS;
                    st.line = line::SKIP;
                    st.content_length = 0;
                    st.pending = ConnState::NEW.pending;
                } else {
                    st.phase = phase::OTHER;
                    return 1;
                }
            }
            0
        }
        phase::HEADERS => header_byte(sc, st, c),
        phase::BODY => {
            st.body_left = st.body_left.saturating_sub(1);
            if st.body_left == 0 {
                st.phase = phase::START;
                st.prefix_len = 0;
            }
            0
        }
        _ => 1,
    }
}

#[inline(always)]
fn lower(c: u8) -> u8 {
    if c.is_ascii_uppercase() {
        c | 0x20
    } else {
        c
    }
}

#[inline(always)]
fn header_byte(sc: &Scan, st: &mut ConnState, c: u8) -> i64 {
    match st.line {
        line::SKIP => {
            if c == b'\n' {
                st.line = line::START;
            }
        }
        line::START => {
            if c == b'\n' {
                return end_of_headers(sc, st);
            }
            if c != b'\r' {
                st.line = line::NAME;
                st.name_hash = fnv_step(FNV_OFFSET, lower(c));
            }
        }
        line::NAME => {
            if c == b':' {
                st.line = line::PRE_VALUE;
                st.line_hash = fnv_step(st.name_hash, b':');
                start_value(st);
            } else if c == b'\n' {
                st.line = line::START;
            } else {
                st.name_hash = fnv_step(st.name_hash, lower(c));
            }
        }
        _ => {
            // PRE_VALUE or VALUE.
            if c == b'\n' {
                end_of_header(st);
                st.line = line::START;
            } else if c == b'\r' || (st.line == line::PRE_VALUE && (c == b' ' || c == b'\t')) {
            } else {
                st.line = line::VALUE;
                st.line_hash = fnv_step(st.line_hash, c);
                value_byte(st, c);
            }
        }
    }
    0
}

/// After a header name: is it one whose value is parsed?
#[inline(always)]
fn start_value(st: &mut ConnState) {
    let h = st.name_hash;
    st.trace_seg = if h == names::TRACEPARENT {
        1
    } else if h == names::B3_TRACE_ID
        || h == names::B3_SPAN_ID
        || h == names::B3
        || h == names::UBER
    {
        0
    } else {
        ConnState::NOT_TRACE
    };
    st.seg = 0;
    st.trace_digits = 0;
    st.span_digits = 0;
    st.bad = 0;
    st.trace_hi = 0;
    st.trace_lo = 0;
    st.span = 0;
}

#[inline(always)]
fn value_byte(st: &mut ConnState, c: u8) {
    if st.name_hash == names::CONTENT_LENGTH {
        if c.is_ascii_digit() {
            st.content_length = (st.content_length * 10 + u64::from(c - b'0')).min(MAX_BODY);
        }
        return;
    }
    if st.trace_seg == ConnState::NOT_TRACE {
        return;
    }
    if c == b'-' || c == b':' {
        st.seg = st.seg.saturating_add(1);
        return;
    }
    let in_trace = st.seg == st.trace_seg;
    if !in_trace && st.seg != st.trace_seg + 1 {
        return;
    }
    let Some(v) = nibble(c) else {
        st.bad = 1;
        return;
    };
    let v = u64::from(v);
    if in_trace {
        st.trace_hi = (st.trace_hi << 4) | (st.trace_lo >> 60);
        st.trace_lo = (st.trace_lo << 4) | v;
        st.trace_digits = st.trace_digits.saturating_add(1);
    } else {
        st.span = (st.span << 4) | v;
        st.span_digits = st.span_digits.saturating_add(1);
    }
}

/// A blank line: the request's headers are complete. Its trace (or none, so nothing stale
/// is left) becomes the thread's and goroutine's.
#[inline(always)]
fn end_of_headers(sc: &Scan, st: &mut ConnState) -> i64 {
    // SAFETY: reads the monotonic clock; no arguments.
    st.pending.ktime_ns = unsafe { bpf_ktime_get_ns() };
    if sc.outbound != 0 {
        if let Some(out) = OUT_TRACE.get_ptr_mut(0) {
            // SAFETY: this CPU's result slot, valid for the program run.
            unsafe { *out = st.pending };
        }
        return 1;
    }
    let _ = THREAD_TRACE.insert(sc.pid_tgid, st.pending, 0);
    if sc.g != 0 {
        let key = GoKey {
            tgid: (sc.pid_tgid >> 32) as u32,
            _pad: 0,
            g: sc.g,
        };
        let _ = GO_TRACE.insert(key, st.pending, 0);
    }
    st.line = line::START;
    st.prefix_len = 0;
    if st.content_length >= MAX_BODY {
        // A chunked or huge body is not followed; wait for the next request line.
        st.phase = phase::OTHER;
        return 1;
    }
    if st.content_length > 0 {
        st.phase = phase::BODY;
        st.body_left = st.content_length;
    } else {
        st.phase = phase::START;
    }
    0
}

#[inline(always)]
fn end_of_header(st: &mut ConnState) {
    if let Some(bit) = HEADER_FILTERS.get_ptr(st.line_hash) {
        // SAFETY: a map value pointer, valid for this program run.
        let bit = unsafe { *bit } & 31;
        st.pending.header_bits |= 1 << bit;
    }
    let h = st.name_hash;
    if h == names::TRANSFER_ENCODING {
        st.content_length = MAX_BODY;
        return;
    }
    if st.trace_seg == ConnState::NOT_TRACE || st.bad != 0 {
        return;
    }
    let (t, s) = (st.trace_digits, st.span_digits);
    let (src, ok_trace, ok_span) = if h == names::TRACEPARENT {
        (TraceSource::W3c, t == 32, s == 16)
    } else if h == names::B3 {
        (TraceSource::B3, t == 32 || t == 16, s == 16)
    } else if h == names::UBER {
        (TraceSource::Uber, t >= 1 && t <= 32, s >= 1 && s <= 16)
    } else if h == names::B3_TRACE_ID {
        (TraceSource::B3, t == 32 || t == 16, false)
    } else {
        // X-B3-SpanId: its only segment was read as a "trace id".
        if t == 16 && st.pending.source <= TraceSource::B3 as u8 {
            st.pending.span_id = st.trace_lo.to_be_bytes();
        }
        return;
    };
    if st.pending.source > src as u8 || !ok_trace || (st.trace_hi | st.trace_lo) == 0 {
        return;
    }
    let (hi, lo) = (st.trace_hi.to_be_bytes(), st.trace_lo.to_be_bytes());
    st.pending.trace_id[..8].copy_from_slice(&hi);
    st.pending.trace_id[8..].copy_from_slice(&lo);
    if ok_span {
        st.pending.span_id = st.span.to_be_bytes();
    }
    st.pending.source = src as u8;
}

#[inline(always)]
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A goroutine frozen at a breakpoint is stopped at its next system call, where Go
/// considers it outside Go code (`_Gsyscall`): the runtime hands its P to another thread
/// and the garbage collector does not wait for it. The trap signal is delivered when the
/// system call returns, before the goroutine runs Go code again.
///
/// Only socket I/O on a connection the process has received from counts: a write to a
/// shared file (a log line to stdout) is made holding that file's lock, and stopping there
/// would block every goroutine that logs (measured: all requests of the gateway stalled).
#[inline(always)]
fn go_syscall_boundary(ctx: &RawTracePointContext) {
    let id: u64 = ctx.arg(1);
    if !matches!(
        id,
        nr::READ
            | nr::WRITE
            | nr::READV
            | nr::WRITEV
            | nr::SENDTO
            | nr::RECVFROM
            | nr::SENDMSG
            | nr::RECVMSG
    ) {
        return;
    }
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (pid_tgid >> 32) as u32;
    let Some(p) = TRACE_PIDS.get_ptr(tgid) else {
        return;
    };
    // SAFETY: a map value pointer, valid for this program run.
    let p = unsafe { *p };
    if p.flags & TRACK_GO == 0 || p.g_status == 0 {
        return;
    }
    let regs: u64 = ctx.arg(0);
    let g = reg(regs, pt::R14 as usize);
    let key = GoKey { tgid, _pad: 0, g };
    let Some(state) = GO_SUSPEND.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a map value pointer, valid for this program run.
    if unsafe { *state } != GO_SUSPEND_PENDING || !crate::capture::seized(tgid) {
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
    unsafe { bpf_send_signal_thread(crate::capture::SIGCONT) };
}

/// The trace the current thread (or, for Go, goroutine `g`) serves, if known.
#[inline(always)]
pub fn current_trace(pid_tgid: u64, go_g: Option<u64>) -> Option<TraceContext> {
    let p = match go_g {
        Some(g) => GO_TRACE.get_ptr(GoKey {
            tgid: (pid_tgid >> 32) as u32,
            _pad: 0,
            g,
        })?,
        None => THREAD_TRACE.get_ptr(pid_tgid)?,
    };
    // SAFETY: a map value pointer, valid for this program run.
    Some(unsafe { *p })
}
