//! Message holds: a sockops program collects the TCP sockets of watched cgroups into
//! `SOCKS`, and the `sk_msg` verdict on `SOCKS` redirects the messages of frozen traces
//! into the keeper's sink sockets. See `tracery_common::hold` for the protocol.
//!
//! Bounded work per message: a few map operations, and when holds are armed and the
//! sender's trace is unknown, one header scan (HTTP request or Redis command) of at most
//! `HOLD_SCAN` bytes.

use core::{ffi::c_void, intrinsics::AtomicOrdering};

use aya_ebpf::{
    bindings::{
        sk_action::SK_PASS, BPF_F_INGRESS, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
    },
    helpers::generated::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_msg_pull_data, bpf_probe_read_kernel,
    },
    macros::map,
    maps::{ring_buf::RingBufEntry, Array, HashMap, LruHashMap, Queue, RingBuf, SockHash},
    programs::{SkMsgContext, SockOpsContext},
};
use tracery_common::{
    hold::{
        conf, stat, FrozenTrace, HeldSock, HoldEvent, SendCtx, SockKey, HELD_BEHIND, HELD_NO_SLOT,
        HELD_REDIRECT_FAILED, HELD_SHARED, HOLD_HOLDING, HOLD_PREVIEW, MAX_FROZEN, MAX_HOLD_SLOTS,
        MAX_WATCHED_SOCKS,
    },
    trace::MAX_TRACED,
};

/// Sockets of watched cgroups and the keeper's sinks (`SockKey::sink`).
#[map(name = "SOCKS")]
static SOCKS: SockHash<SockKey> = SockHash::with_max_entries(MAX_WATCHED_SOCKS + MAX_HOLD_SLOTS, 0);

/// Frozen traces: trace id -> deadline.
#[map(name = "FROZEN")]
static FROZEN: HashMap<[u8; 16], FrozenTrace> = HashMap::with_max_entries(MAX_FROZEN, 0);

/// Sockets with held bytes.
#[map(name = "HELD")]
static HELD: HashMap<SockKey, HeldSock> = HashMap::with_max_entries(MAX_HOLD_SLOTS, 0);

/// Sockets whose held bytes the keeper is writing back (-> 1). Kept apart from
/// `HELD`, whose values only this program writes, so no update of the keeper races with
/// the byte counts.
#[map(name = "RELEASING")]
static RELEASING: HashMap<SockKey, u32> = HashMap::with_max_entries(MAX_HOLD_SLOTS, 0);

/// Free hold slots (the keeper pushes them; a new hold pops one).
#[map(name = "FREE_SLOTS")]
static FREE_SLOTS: Queue<u32> = Queue::with_max_entries(MAX_HOLD_SLOTS, 0);

/// The trace a thread serves during its send system call (see `trace::note_send`).
#[map(name = "SEND_CTX")]
static SEND_CTX: LruHashMap<u64, SendCtx> = LruHashMap::with_max_entries(MAX_TRACED, 0);

/// The last trace seen sending on a socket: a hold on a socket that carried another
/// trace's messages is reported as shared.
#[map(name = "SOCK_LAST")]
static SOCK_LAST: LruHashMap<SockKey, [u8; 16]> =
    LruHashMap::with_max_entries(MAX_WATCHED_SOCKS, 0);

#[map(name = "HOLD_CONF")]
static HOLD_CONF: Array<u64> = Array::with_max_entries(conf::COUNT, 0);

#[map(name = "HOLD_STATS")]
static HOLD_STATS: Array<u64> = Array::with_max_entries(stat::COUNT, 0);

#[map(name = "HOLD_EVENTS")]
static HOLD_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// True while the agent holds, or may have to hold, messages of frozen traces.
#[inline(always)]
pub fn armed() -> bool {
    HOLD_CONF.get(conf::ANY_FROZEN).is_some_and(|v| *v != 0)
}

#[inline(always)]
pub fn set_send_ctx(pid_tgid: u64, trace_id: [u8; 16], fd: i32) {
    let v = SendCtx {
        trace_id,
        fd,
        _pad: 0,
    };
    let _ = SEND_CTX.insert(pid_tgid, v, 0);
}

#[inline(always)]
pub fn clear_send_ctx(pid_tgid: u64) {
    let _ = SEND_CTX.remove(pid_tgid);
}

/// Called by the capture probe when a `--freeze` breakpoint hits for `trace`: from now
/// until the deadline, the trace's messages are held on this node. Done here, not by the
/// agent, so a message sent right after the hit (the request is not stopped) is held too.
#[inline(always)]
pub fn freeze(trace: [u8; 16], timeout_ns: u64) {
    // SAFETY: reads the monotonic clock; no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let v = FrozenTrace {
        deadline_ns: now + timeout_ns,
    };
    let _ = FROZEN.insert(trace, v, 0);
    if let Some(any) = HOLD_CONF.get_ptr_mut(conf::ANY_FROZEN) {
        // SAFETY: a map value pointer, valid for this program run.
        unsafe { *any = 1 };
    }
}

#[inline(always)]
fn bump(index: u32, by: u64) {
    if let Some(c) = HOLD_STATS.get_ptr_mut(index) {
        // SAFETY: a map value pointer; atomic because programs run on every CPU (SeqCst:
        // see `capture::bump`).
        unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(c, by) };
    }
}

/// The key of the connection a context (`bpf_sock_ops` or `sk_msg_md`, which name their
/// address fields alike) describes. Each field is read with one load at a constant offset,
/// the only context access the verifier allows. Unsafe: `$p` must be the program's context.
macro_rules! ctx_key {
    ($p:expr) => {{
        let p = $p;
        key_of(
            rd(&(*p).family),
            rd(&(*p).local_port),
            rd(&(*p).remote_port),
            [
                &(*p).local_ip4,
                &(*p).local_ip6[0],
                &(*p).local_ip6[1],
                &(*p).local_ip6[2],
                &(*p).local_ip6[3],
            ],
            [
                &(*p).remote_ip4,
                &(*p).remote_ip6[0],
                &(*p).remote_ip6[1],
                &(*p).remote_ip6[2],
                &(*p).remote_ip6[3],
            ],
        )
    }};
}

/// Sockops: every established TCP connection of a watched cgroup joins `SOCKS`.
pub fn sockops(ctx: &SockOpsContext) -> u32 {
    let op = ctx.op();
    if op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB || op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        // SAFETY: the sockops context is a valid `bpf_sock_ops`.
        let key = unsafe { ctx_key!(ctx.ops) };
        // SAFETY: as above.
        let _ = SOCKS.update(key, unsafe { &mut *ctx.ops }, 0);
    }
    1
}

const AF_INET: u32 = 2;

/// The connection a message is sent on.
#[inline(always)]
fn sock_key(ctx: &SkMsgContext) -> SockKey {
    // SAFETY: the program's context is a valid `sk_msg_md`.
    unsafe { ctx_key!(ctx.msg) }
}

/// One 32-bit context load (volatile: the compiler must not merge or offset it).
#[inline(always)]
unsafe fn rd(p: &u32) -> u32 {
    // SAFETY: `p` is a field of the program's context.
    unsafe { core::ptr::read_volatile(p) }
}

/// A key from context fields. `local` and `remote` are the IPv4 address, then the four
/// IPv6 words; only the family's own are read.
#[inline(always)]
unsafe fn key_of(
    family: u32,
    local_port: u32,
    remote_port: u32,
    local: [&u32; 5],
    remote: [&u32; 5],
) -> SockKey {
    let mut key = SockKey {
        family,
        local_port,
        remote_port,
        ..SockKey::default()
    };
    // SAFETY: fields of the program's context.
    unsafe {
        if family == AF_INET {
            key.local_ip[0] = rd(local[0]);
            key.remote_ip[0] = rd(remote[0]);
        } else {
            key.local_ip = [rd(local[1]), rd(local[2]), rd(local[3]), rd(local[4])];
            key.remote_ip = [rd(remote[1]), rd(remote[2]), rd(remote[3]), rd(remote[4])];
        }
    }
    key
}

#[inline(always)]
fn is_zero(t: &[u8; 16]) -> bool {
    t.iter().all(|b| *b == 0)
}

/// The `sk_msg` verdict for one outbound message.
pub fn verdict(ctx: &SkMsgContext) -> u32 {
    let conn = sock_key(ctx);
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let size = ctx.size();
    let keeper = HOLD_CONF.get(conf::KEEPER_TGID).copied().unwrap_or(0);
    if keeper != 0 && (pid_tgid >> 32) == keeper {
        released(conn, size);
        return SK_PASS;
    }
    let send = SEND_CTX.get_ptr(pid_tgid);
    // SAFETY: map value pointers, valid for this program run.
    let (mut trace, fd) = match send {
        Some(s) => unsafe { ((*s).trace_id, (*s).fd) },
        None => match crate::served::current_trace(pid_tgid, None) {
            Some(t) => (t.trace_id, -1),
            None => ([0; 16], -1),
        },
    };
    if let Some(h) = HELD.get_ptr_mut(conn) {
        // Bytes of this socket are held: this message goes behind them.
        // SAFETY: a map value pointer, valid for this program run.
        let h = unsafe { &mut *h };
        let flags = if h.trace_id == trace { 0 } else { HELD_BEHIND };
        return redirect(ctx, conn, pid_tgid, h, trace, fd, flags, false);
    }
    if !armed() {
        // Nothing can be frozen: the common case costs two lookups.
        return SK_PASS;
    }
    // SAFETY: reads the monotonic clock; no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut frozen = frozen_until(&trace, now);
    if frozen.is_none() {
        // The sender serves no frozen trace: the message may still carry one's context
        // (an HTTP header, or a job inside a Redis command).
        let t = crate::outbound_trace::message_trace(ctx, size);
        if !is_zero(&t) {
            trace = t;
            frozen = frozen_until(&trace, now);
        }
    }
    let Some(deadline_ns) = frozen else {
        note_last(conn, &trace);
        return SK_PASS;
    };
    let shared = SOCK_LAST
        .get_ptr(conn)
        // SAFETY: a map value pointer, valid for this program run.
        .is_some_and(|last| unsafe { *last } != trace);
    let Ok(Some(slot)) = FREE_SLOTS.pop() else {
        bump(stat::MISSED, 1);
        event(
            ctx,
            conn,
            pid_tgid,
            &trace,
            &trace,
            size,
            0,
            fd,
            HELD_NO_SLOT,
        );
        return SK_PASS;
    };
    let h = HeldSock {
        trace_id: trace,
        deadline_ns,
        held_bytes: 0,
        pushed_bytes: 0,
        pid_tgid,
        slot,
        state: HOLD_HOLDING,
        fd,
        messages: 0,
    };
    if HELD.insert(conn, h, 0).is_err() {
        let _ = FREE_SLOTS.push(slot, 0);
        bump(stat::MISSED, 1);
        event(
            ctx,
            conn,
            pid_tgid,
            &trace,
            &trace,
            size,
            slot,
            fd,
            HELD_NO_SLOT,
        );
        return SK_PASS;
    }
    let Some(h) = HELD.get_ptr_mut(conn) else {
        return SK_PASS;
    };
    // SAFETY: a map value pointer, valid for this program run.
    let h = unsafe { &mut *h };
    let flags = if shared { HELD_SHARED } else { 0 };
    redirect(ctx, conn, pid_tgid, h, trace, fd, flags, true)
}

/// Redirects the message into the hold's slot and reports it.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "the message's connection, hold and trace, as the program has read them"
)]
fn redirect(
    ctx: &SkMsgContext,
    conn: SockKey,
    pid_tgid: u64,
    h: &mut HeldSock,
    msg_trace: [u8; 16],
    fd: i32,
    flags: u32,
    first: bool,
) -> u32 {
    let size = ctx.size();
    let held_trace = h.trace_id;
    let slot = h.slot;
    // The event is filled before the redirect: its preview reads the message's bytes.
    let entry = event_start(ctx, conn, pid_tgid, &held_trace, &msg_trace, size, slot, fd);
    let r = SOCKS.redirect_msg(ctx, SockKey::sink(slot), u64::from(BPF_F_INGRESS));
    if r != i64::from(SK_PASS) {
        // No sink: the keeper is gone. The message goes out as is.
        bump(stat::MISSED, 1);
        if first {
            let _ = HELD.remove(conn);
            let _ = FREE_SLOTS.push(slot, 0);
        }
        event_submit(entry, flags | HELD_REDIRECT_FAILED);
        return SK_PASS;
    }
    h.held_bytes += u64::from(size);
    h.messages += 1;
    crate::messages::note_held(pid_tgid);
    if h.fd < 0 {
        h.fd = fd;
    }
    bump(stat::HELD, 1);
    event_submit(entry, flags);
    SK_PASS
}

/// A write of the keeper: held bytes going out. The hold ends, under this socket's lock,
/// once every held byte is out, so the sender's next message cannot overtake them.
#[inline(always)]
fn released(conn: SockKey, size: u32) {
    bump(stat::PUSHED, u64::from(size));
    let Some(h) = HELD.get_ptr_mut(conn) else {
        return;
    };
    // SAFETY: a map value pointer, valid for this program run.
    let h = unsafe { &mut *h };
    h.pushed_bytes += u64::from(size);
    if h.pushed_bytes >= h.held_bytes && RELEASING.get_ptr(conn).is_some() {
        let _ = HELD.remove(conn);
    }
}

/// True when `trace` is frozen and before its deadline.
#[inline(always)]
pub fn frozen_now(trace: &[u8; 16]) -> bool {
    // SAFETY: reads the monotonic clock; no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    frozen_until(trace, now).is_some()
}

#[inline(always)]
fn frozen_until(trace: &[u8; 16], now: u64) -> Option<u64> {
    if is_zero(trace) {
        return None;
    }
    let f = FROZEN.get_ptr(trace)?;
    // SAFETY: a map value pointer, valid for this program run.
    let deadline = unsafe { (*f).deadline_ns };
    // Past its deadline the kernel holds nothing new for the trace, agent or not.
    (now < deadline).then_some(deadline)
}

#[inline(always)]
fn note_last(conn: SockKey, trace: &[u8; 16]) {
    if !is_zero(trace) {
        let _ = SOCK_LAST.insert(conn, *trace, 0);
    }
}

/// Reports a message that could not be held.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "the values a hold event is built from, as the program reads them"
)]
fn event(
    ctx: &SkMsgContext,
    conn: SockKey,
    pid_tgid: u64,
    held_trace: &[u8; 16],
    msg_trace: &[u8; 16],
    size: u32,
    slot: u32,
    fd: i32,
    flags: u32,
) {
    let entry = event_start(ctx, conn, pid_tgid, held_trace, msg_trace, size, slot, fd);
    event_submit(entry, flags);
}

#[inline(always)]
fn event_submit(entry: Option<RingBufEntry<HoldEvent>>, flags: u32) {
    if let Some(mut entry) = entry {
        // SAFETY: the reserved entry, filled by `event_start`.
        unsafe { (*entry.as_mut_ptr()).flags = flags };
        entry.submit(0);
    }
}

/// Reserves and fills a hold event with the start of the message's bytes.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "the values a hold event is built from, as the program reads them"
)]
fn event_start(
    ctx: &SkMsgContext,
    conn: SockKey,
    pid_tgid: u64,
    held_trace: &[u8; 16],
    msg_trace: &[u8; 16],
    size: u32,
    slot: u32,
    fd: i32,
) -> Option<RingBufEntry<HoldEvent>> {
    let Some(mut entry) = HOLD_EVENTS.reserve::<HoldEvent>(0) else {
        bump(stat::EVENTS_LOST, 1);
        return None;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is the reserved entry; `ctx.msg` is a valid `sk_msg_md`.
    unsafe {
        (*ev).sock = conn;
        (*ev).pid_tgid = pid_tgid;
        (*ev).ktime_ns = bpf_ktime_get_ns();
        (*ev).trace_id = *held_trace;
        (*ev).msg_trace = *msg_trace;
        (*ev).len = size;
        (*ev).slot = slot;
        (*ev).fd = fd;
        (*ev).flags = 0;
        (*ev).preview_len = 0;
    }
    let n = size.min(HOLD_PREVIEW as u32);
    // SAFETY: linearises the first `n` bytes so `data..data_end` covers them.
    if n > 0 && unsafe { bpf_msg_pull_data(ctx.msg, 0, n, 0) } == 0 {
        let n = n & (HOLD_PREVIEW as u32 * 2 - 1);
        if n as usize <= HOLD_PREVIEW {
            // SAFETY: `n <= HOLD_PREVIEW` bytes into the entry's preview; fault-safe read of
            // the message's (now linear) first bytes.
            let r = unsafe {
                bpf_probe_read_kernel(
                    (*ev).preview.as_mut_ptr().cast(),
                    n,
                    ctx.data() as *const c_void,
                )
            };
            if r == 0 {
                // SAFETY: as above.
                unsafe { (*ev).preview_len = n };
            }
        }
    }
    Some(entry)
}
