//! Message events: every send and receive of a traced request on a TCP connection of a
//! tracked process, for the controller's happens-before edges (see
//! `tracery_common::message`).
//!
//! The `sock_{send,recv}_length` tracepoints run for every socket message on the node
//! while tracking is on. They are attached raw, so the kernel builds no trace record
//! before the program runs, and the first check (is the process tracked?) is a bit test.
//! A send is reported at once; a receive once the receive path has parsed it (here, or at
//! its system call's exit on kernels where that path runs there), because a request's own
//! header names its trace only then.
//!
//! Which trace a message belongs to:
//! - a send: the context the message itself carries (an HTTP request's header, a Redis
//!   job's), else the sender's (thread, goroutine or tokio task);
//! - a receive: the context of the request whose headers it completed, else the trace the
//!   connection last carried (a client reading the response to the request it sent: Go's
//!   `readLoop` goroutine serves no request of its own), else the receiver's.
//!
//! No loops here; reads are fixed-size and fault-safe.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::RawTracePointContext,
    EbpfContext,
};
use tracery_common::{
    message::{
        offset, stat, MessageEvent, RecvPending, MESSAGE_RING_BYTES, MSG_HELD, MSG_OWN_CONTEXT,
        MSG_RECV, MSG_SEND, MSG_SEQ,
    },
    regs::pt,
    trace::{nr, TraceContext, TrackedProc, MAX_CONNS},
};

use crate::{served::current_trace, trace};

#[map(name = "MESSAGE_EVENTS")]
static MESSAGE_EVENTS: RingBuf = RingBuf::with_byte_size(MESSAGE_RING_BYTES, 0);

#[map(name = "MESSAGE_OFFSETS")]
static MESSAGE_OFFSETS: Array<u64> = Array::with_max_entries(offset::COUNT, 0);

#[map(name = "MESSAGE_STATS")]
static MESSAGE_STATS: Array<u64> = Array::with_max_entries(stat::COUNT, 0);

/// Most threads between a receive and its system call's exit at once.
const MAX_PENDING: u32 = 4096;

/// A receive waiting for its system call's exit (keyed by pid_tgid).
#[map(name = "RECV_PENDING")]
static RECV_PENDING: LruHashMap<u64, RecvPending> = LruHashMap::with_max_entries(MAX_PENDING, 0);

/// The receive this program run parses, where receives are parsed at
/// `sock/sock_recv_length`: parse and report happen in one run there, so a per-CPU slot
/// stands in for `RECV_PENDING`'s insert and delete (a program does not nest on its CPU).
/// `sk` is 0 while the slot holds no receive.
#[map(name = "RECV_NOW")]
static RECV_NOW: PerCpuArray<RecvPending> = PerCpuArray::with_max_entries(1, 0);

/// The trace a connection (`struct sock *`) last carried, either way.
#[map(name = "SOCK_TRACE")]
static SOCK_TRACE: LruHashMap<u64, TraceContext> = LruHashMap::with_max_entries(MAX_CONNS, 0);

/// Threads whose current send the hold verdict redirected (-> 1), until the send's
/// tracepoint reads it.
#[map(name = "SEND_HELD")]
static SEND_HELD: LruHashMap<u64, u32> = LruHashMap::with_max_entries(MAX_PENDING, 0);

/// Nobody waits on the ring: the agent reads it at its tick. A wakeup per event would
/// cost a self-interrupt (a VM exit on these machines) on every traced message.
const NO_WAKEUP: u64 = aya_ebpf::bindings::BPF_RB_NO_WAKEUP as u64;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
/// `MSG_PEEK`: the bytes stay in the socket; the real receive comes later.
const MSG_PEEK: i32 = 2;

/// The hold verdict redirected the current thread's message.
#[inline(always)]
pub fn note_held(pid_tgid: u64) {
    let _ = SEND_HELD.insert(pid_tgid, 1, 0);
}

#[inline(always)]
fn off(i: u32) -> u64 {
    MESSAGE_OFFSETS.get(i).copied().unwrap_or(0)
}

#[inline(always)]
fn bump(i: u32) {
    if let Some(c) = MESSAGE_STATS.get_ptr_mut(i) {
        // SAFETY: a map value pointer; atomic because programs run on every CPU.
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::SeqCst }>(
                c, 1,
            )
        };
    }
}

#[inline(always)]
fn kread<T: Default>(addr: u64) -> T {
    let mut v = T::default();
    // SAFETY: fault-safe read of `size_of::<T>()` bytes of kernel memory into `v`.
    unsafe {
        bpf_probe_read_kernel(
            (&mut v as *mut T).cast(),
            core::mem::size_of::<T>() as u32,
            addr as *const c_void,
        )
    };
    v
}

#[inline(always)]
fn is_zero(t: &[u8; 16]) -> bool {
    t.iter().all(|b| *b == 0)
}

/// The socket, family and length of a TCP message with bytes in it, from the tracepoint's
/// arguments (`sk`, the call's result `ret`, its `flags`).
#[inline(always)]
fn tcp_message(sk: u64, ret: i32, flags: i32) -> Option<(u64, u16, u32)> {
    if ret <= 0 || flags & MSG_PEEK != 0 || sk == 0 || off(offset::KNOWN) == 0 {
        return None;
    }
    let family = kread::<u16>(sk + off(offset::FAMILY));
    let proto = kread::<u16>(sk + off(offset::PROTOCOL));
    if proto != IPPROTO_TCP || (family != AF_INET && family != AF_INET6) {
        return None;
    }
    Some((sk, family, ret as u32))
}

/// The sequence number of the message's first byte and the time: what must be read at
/// the message's tracepoint. Every other field is set by [`addresses`] or the caller.
#[inline(always)]
fn stamp(ev: &mut MessageEvent, family: u16, sk: u64, len: u32, seq_field: u32) {
    ev._pad = 0;
    ev.family = family;
    ev.len = len;
    let next = kread::<u32>(sk + off(seq_field));
    ev.seq = next.wrapping_sub(len);
    ev.flags |= MSG_SEQ;
    // SAFETY: reads the monotonic clock; no arguments.
    ev.ktime_ns = unsafe { bpf_ktime_get_ns() };
}

/// The connection's addresses, read only for a message that is reported (they do not
/// change while the socket lives).
#[inline(always)]
fn addresses(ev: &mut MessageEvent, sk: u64) {
    ev.local_ip = [0; 4];
    ev.remote_ip = [0; 4];
    ev.local_port = kread::<u16>(sk + off(offset::NUM));
    ev.remote_port = u16::from_be(kread::<u16>(sk + off(offset::DPORT)));
    if ev.family == AF_INET {
        ev.local_ip[0] = kread::<u32>(sk + off(offset::SADDR));
        ev.remote_ip[0] = kread::<u32>(sk + off(offset::DADDR));
    } else {
        ev.local_ip = kread::<[u32; 4]>(sk + off(offset::V6_SADDR));
        ev.remote_ip = kread::<[u32; 4]>(sk + off(offset::V6_DADDR));
    }
}

/// A ring entry for one event, or `None` (counted lost) when the ring is full.
#[inline(always)]
fn reserve() -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<MessageEvent>> {
    let entry = MESSAGE_EVENTS.reserve::<MessageEvent>(0);
    if entry.is_none() {
        bump(stat::LOST);
    }
    entry
}

/// `sock_send_length(sk, ret, flags)`: a send of a tracked process. The raw arguments are
/// 64-bit slots; `ret` and `flags` are C `int`s in their low halves.
pub fn on_send(sk: u64, ret: u64, flags: u64) -> u32 {
    let Some((pid_tgid, p)) = trace::current_tracked() else {
        return 0;
    };
    let regs = trace::current_user_regs();
    // The hold's context of this send ends with its message, here rather than at the exit
    // of every send on the node (a `sendmmsg`, which sends several, still ends at its exit).
    if crate::hold::armed()
        && (regs == 0 || trace::reg(regs, pt::ORIG_RAX as usize) != nr::SENDMMSG)
    {
        crate::hold::clear_send_ctx(pid_tgid);
    }
    let Some((sk, family, len)) = tcp_message(sk, ret as i32, flags as i32) else {
        return 0;
    };
    if regs == 0 {
        return 0;
    }
    let held = SEND_HELD.get_ptr(pid_tgid).is_some();
    if held {
        let _ = SEND_HELD.remove(pid_tgid);
    }
    let mut flags = 0;
    // The goroutine or task sending (one thread-local read for tokio), read once.
    let key = trace::request_key(&p, pid_tgid, trace::reg(regs, pt::R14 as usize));
    let trace = match crate::outbound_trace::user_message_trace(regs, len) {
        Some(own) => {
            flags |= MSG_OWN_CONTEXT;
            own
        }
        None => {
            match current_trace(pid_tgid, key) {
                Some(t) if !is_zero(&t.trace_id) => t,
                _ => {
                    // The connection's next replies answer a send outside any trace (a
                    // worker's next fetch after its job ended): they are not the last
                    // trace's.
                    let _ = SOCK_TRACE.remove(sk);
                    return 0;
                }
            }
        }
    };
    let _ = SOCK_TRACE.insert(sk, trace, 0);
    let task = key.unwrap_or(0);
    let Some(mut entry) = reserve() else {
        return 0;
    };
    // SAFETY: the reserved entry, written in place (the event would not fit the stack
    // beside the header scan's state); every field is set below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.kind = MSG_SEND;
    ev.flags = flags;
    ev.pid_tgid = pid_tgid;
    ev.task = task;
    ev.trace_id = trace.trace_id;
    ev.span_id = trace.span_id;
    stamp(ev, family, sk, len, offset::WRITE_SEQ);
    addresses(ev, sk);
    if held {
        // Held bytes leave the socket only when the keeper writes them back: their
        // sequence numbers are not known yet.
        ev.flags = (ev.flags & !MSG_SEQ) | MSG_HELD;
    }
    entry.submit(NO_WAKEUP);
    bump(stat::EMITTED);
    0
}

/// `sock_recv_length(sk, ret, flags)`: a receive of a tracked process. Parsed here when
/// receives are parsed at this tracepoint; else kept for its system call's exit, which
/// parses it.
pub fn on_recv(ctx: &RawTracePointContext) -> u32 {
    let (sk, ret, flags) = (
        ctx.arg::<u64>(0),
        ctx.arg::<u64>(1) as i32,
        ctx.arg::<u64>(2) as i32,
    );
    // Every socket receive on the node comes here: a bit test settles untracked processes.
    let Some((pid_tgid, p)) = trace::current_tracked() else {
        return 0;
    };
    trace::go_receive_boundary(&p, pid_tgid);
    if !trace::receives_at_sock() {
        if let Some((sk, family, len)) = tcp_message(sk, ret, flags) {
            let mut pending = RecvPending::default();
            keep(&mut pending, pid_tgid, sk, family, len);
            let _ = RECV_PENDING.insert(pid_tgid, pending, 0);
        }
        return 0;
    }
    let Some(now) = RECV_NOW.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot, a map value valid for the program run.
    let now = unsafe { &mut *now };
    now.sk = 0;
    if let Some((sk, family, len)) = tcp_message(sk, ret, flags) {
        keep(now, pid_tgid, sk, family, len);
    }
    // Read again, not reused: the verifier would otherwise carry what the TCP checks
    // learned about `ret` into the parse and explore it once per outcome (past its limit).
    let (ret, flags) = (arg_again(ctx, 1) as i32, arg_again(ctx, 2) as i32);
    // Any socket family, as at the exits; a peek's bytes come again.
    if ret > 0 && flags & MSG_PEEK == 0 {
        trace::sock_receive(&p, pid_tgid, i64::from(ret));
    }
    now.sk = 0;
    0
}

/// Raw tracepoint argument `n`, loaded afresh (a volatile load the compiler cannot merge
/// with an earlier one).
#[inline(always)]
fn arg_again(ctx: &RawTracePointContext, n: usize) -> u64 {
    // SAFETY: `ctx` points at the tracepoint's `u64 args[]`; `sock_recv_length` has three.
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u64).add(n)) }
}

/// Keeps a TCP receive's message event in `pending` for the receive path's end
/// ([`recv_exit`]).
#[inline(always)]
fn keep(pending: &mut RecvPending, pid_tgid: u64, sk: u64, family: u16, len: u32) {
    pending.sk = sk;
    pending.published = 0;
    pending._pad = 0;
    pending.event.kind = MSG_RECV;
    pending.event.flags = 0;
    pending.event.pid_tgid = pid_tgid;
    stamp(&mut pending.event, family, sk, len, offset::COPIED_SEQ);
}

/// The receive of thread `pid_tgid` whose parse is under way, if it is a TCP message.
#[inline(always)]
fn pending(pid_tgid: u64) -> Option<*mut RecvPending> {
    if !trace::receives_at_sock() {
        return RECV_PENDING.get_ptr_mut(pid_tgid);
    }
    let now = RECV_NOW.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, a map value valid for the program run.
    let live = unsafe { (*now).sk != 0 && (*now).event.pid_tgid == pid_tgid };
    live.then_some(now)
}

/// The receive path ended a request's headers (or found a job's context) in the current
/// receive: the connection now carries that trace.
#[inline(always)]
pub fn note_published(pid_tgid: u64, t: &TraceContext) {
    if let Some(p) = pending(pid_tgid) {
        // SAFETY: a map value pointer, valid for this program run.
        unsafe {
            (*p).published = 1;
            (*p).trace = *t;
        }
    }
}

/// The end of the receive path of tracked process `p` (inside the receive at
/// `sock/sock_recv_length`, else at its system call's exit): reports the kept receive if
/// it belongs to a traced request.
#[inline(always)]
pub fn recv_exit(p: &TrackedProc, pid_tgid: u64, regs: u64) {
    let Some(kept) = pending(pid_tgid) else {
        return;
    };
    // SAFETY: a map value pointer, valid for this program run (until the remove or the
    // slot's reset below, which come last); read in place, not copied to the stack.
    let pending = unsafe { &mut *kept };
    let sk = pending.sk;
    let own = pending.published != 0;
    // The goroutine or task, read only when needed (for tokio, a thread-local read).
    let key = || trace::request_key(p, pid_tgid, trace::reg(regs, pt::R14 as usize));
    let mut task = None;
    let trace = if own {
        if !is_zero(&pending.trace.trace_id) {
            let _ = SOCK_TRACE.insert(sk, pending.trace, 0);
        } else {
            let _ = SOCK_TRACE.remove(sk);
        }
        pending.trace
    } else if let Some(t) = SOCK_TRACE.get_ptr(sk) {
        // SAFETY: a map value pointer, valid for this program run.
        unsafe { *t }
    } else {
        task = key();
        current_trace(pid_tgid, task).unwrap_or_default()
    };
    if !is_zero(&trace.trace_id) {
        if task.is_none() {
            task = key();
        }
        if let Some(mut entry) = reserve() {
            // SAFETY: the reserved entry, written in place from the kept receive.
            let ev = unsafe { &mut *entry.as_mut_ptr() };
            *ev = pending.event;
            addresses(ev, sk);
            if own {
                ev.flags |= MSG_OWN_CONTEXT;
            }
            ev.trace_id = trace.trace_id;
            ev.span_id = trace.span_id;
            ev.task = task.unwrap_or(0);
            entry.submit(NO_WAKEUP);
            bump(stat::EMITTED);
        }
    }
    if trace::receives_at_sock() {
        pending.sk = 0;
    } else {
        let _ = RECV_PENDING.remove(pid_tgid);
    }
}
