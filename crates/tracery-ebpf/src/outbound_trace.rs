//! The trace context an outbound message carries, for the hold verdict: the parser of
//! `tracery_common::trace_header` run over the first bytes of one message, an HTTP/1.x
//! request or a Redis command array (`SET`, `LPUSH`, `XADD`, `PUBLISH` of a job whose
//! payload carries its context).
//!
//! Bounded: at most `HOLD_SCAN` (<= `TRACE_WINDOW`) bytes, one `bpf_loop` step each.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_msg_pull_data, bpf_probe_read_kernel, bpf_probe_read_user},
    macros::map,
    maps::PerCpuArray,
    programs::SkMsgContext,
};
use tracery_common::{
    hold::HOLD_SCAN,
    regs::pt,
    trace::{nr, TraceContext},
    trace_header::{feed_byte, is_method_prefix, ConnState, Fed, NoFilters, TRACE_WINDOW},
};

/// This CPU's copy of the message's first bytes.
#[map(name = "OUT_WINDOW")]
static OUT_WINDOW: PerCpuArray<[u8; TRACE_WINDOW]> = PerCpuArray::with_max_entries(1, 0);

/// Parser state for one outbound message (per CPU: it lives for one program run).
#[map(name = "OUT_STATE")]
static OUT_STATE: PerCpuArray<ConnState> = PerCpuArray::with_max_entries(1, 0);

/// The trace an outbound message's headers carry (per CPU, one program run).
#[map(name = "OUT_TRACE")]
static OUT_TRACE: PerCpuArray<TraceContext> = PerCpuArray::with_max_entries(1, 0);

const _: () = assert!(HOLD_SCAN as usize <= TRACE_WINDOW);

/// The trace id an outbound HTTP/1.x request or Redis command of `size` bytes carries,
/// zero when none. Of a command carrying several contexts (a pipeline of jobs), a frozen
/// one's is returned when there is one.
#[inline(always)]
pub fn message_trace(ctx: &SkMsgContext, size: u32) -> [u8; 16] {
    let n = size.min(HOLD_SCAN);
    // Only messages that start like a request line or a RESP command are worth a look.
    if n < 16 {
        return [0; 16];
    }
    // SAFETY: linearises the first `n` bytes so `data..data_end` covers them.
    if unsafe { bpf_msg_pull_data(ctx.msg, 0, n, 0) } != 0 {
        return [0; 16];
    }
    let Some(win) = OUT_WINDOW.get_ptr_mut(0) else {
        return [0; 16];
    };
    let n = n & (TRACE_WINDOW as u32 * 2 - 1);
    if n as usize > TRACE_WINDOW {
        return [0; 16];
    }
    // SAFETY: copies `n <= TRACE_WINDOW` bytes of the message (kernel memory, made linear
    // above) into this CPU's window, with a fault-safe helper.
    let r = unsafe { bpf_probe_read_kernel(win.cast(), n, ctx.data() as *const c_void) };
    if r != 0 {
        return [0; 16];
    }
    let mut p = [0u8; 4];
    // SAFETY: the window holds at least 16 bytes now.
    unsafe { p.copy_from_slice(&(&*win)[..4]) };
    if !is_method_prefix(p) && p[0] != b'*' {
        return [0; 16];
    }
    window_trace(win, u64::from(n)).trace_id
}

/// The trace context a send of `len` bytes carries in its own header (an HTTP/1.x request
/// or a Redis command), read from the sender's buffer at the end of its send system call
/// (user registers `regs`); `None` when it carries none. Only the first buffer of a
/// vectored send is looked at.
#[inline(always)]
pub fn user_message_trace(regs: u64, len: u32) -> Option<TraceContext> {
    let id = crate::trace::reg(regs, pt::ORIG_RAX as usize);
    let arg1 = crate::trace::reg(regs, pt::RSI as usize);
    let (buf, n) = match id {
        nr::WRITE | nr::SENDTO => (arg1, crate::trace::reg(regs, pt::RDX as usize)),
        // An iovec array; for sendmsg, `struct msghdr`'s msg_iov at 16.
        nr::WRITEV | nr::SENDMSG => {
            let iov = if id == nr::WRITEV {
                arg1
            } else {
                crate::trace::user_u64(arg1 + 16)
            };
            (crate::trace::user_u64(iov), crate::trace::user_u64(iov + 8))
        }
        _ => return None,
    };
    let n = n.min(u64::from(len)).min(u64::from(HOLD_SCAN));
    if n < 16 {
        return None;
    }
    let mut p = [0u8; 4];
    // SAFETY: fault-safe 4-byte read of the sender's buffer.
    if unsafe { bpf_probe_read_user(p.as_mut_ptr().cast(), 4, buf as *const c_void) } != 0 {
        return None;
    }
    // Only messages that start like a request line or a RESP command are worth a look.
    if !is_method_prefix(p) && p[0] != b'*' {
        return None;
    }
    let win = OUT_WINDOW.get_ptr_mut(0)?;
    let n = (n as u32) & (TRACE_WINDOW as u32 * 2 - 1);
    if n as usize > TRACE_WINDOW {
        return None;
    }
    // SAFETY: copies `n <= TRACE_WINDOW` bytes of user memory into this CPU's window,
    // with a fault-safe helper.
    if unsafe { bpf_probe_read_user(win.cast(), n, buf as *const c_void) } != 0 {
        return None;
    }
    let t = window_trace(win, u64::from(n));
    (!t.trace_id.iter().all(|b| *b == 0)).then_some(t)
}

/// State handed to the `bpf_loop` callback (it lives on the caller's stack).
#[repr(C)]
struct OutScan {
    st: *mut ConnState,
    win: *const [u8; TRACE_WINDOW],
    out: *mut TraceContext,
}

/// The trace of the request whose first `n` bytes (at most `TRACE_WINDOW`) are in `win`,
/// zero when its headers do not end within them (a Redis command: the context found last,
/// or the first frozen one).
#[inline(always)]
fn window_trace(win: *const [u8; TRACE_WINDOW], n: u64) -> TraceContext {
    let (Some(st), Some(out)) = (OUT_STATE.get_ptr_mut(0), OUT_TRACE.get_ptr_mut(0)) else {
        return TraceContext::default();
    };
    // SAFETY: this CPU's scratch parser state and result, valid for the program run.
    unsafe {
        *st = ConnState::NEW;
        *out = TraceContext::default();
    }
    let mut sc = OutScan { st, win, out };
    // SAFETY: the callback only uses `sc` during the call.
    unsafe {
        bpf_loop(
            n.min(TRACE_WINDOW as u64) as u32,
            out_step as *mut c_void,
            (&mut sc as *mut OutScan).cast(),
            0,
        )
    };
    // SAFETY: as above; the callback wrote it if it found the end of the headers.
    unsafe { *out }
}

extern "C" fn out_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `OutScan` that `window_trace` passed; its pointers are this
    // CPU's scratch map values, valid for the program run.
    let (st, win, out) = unsafe {
        let sc = &*(ctx as *const OutScan);
        (&mut *sc.st, &*sc.win, &mut *sc.out)
    };
    let off = (i as usize) & (TRACE_WINDOW - 1);
    match feed_byte(st, win[off], &NoFilters) {
        Fed::More => 0,
        Fed::Headers | Fed::HeadersThenStop => {
            *out = st.pending;
            1
        }
        Fed::Context => {
            *out = st.pending;
            // A frozen trace's job holds the message; otherwise look on.
            i64::from(crate::hold::frozen_now(&st.pending.trace_id))
        }
        Fed::Stop => 1,
    }
}
