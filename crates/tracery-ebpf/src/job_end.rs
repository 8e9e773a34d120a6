//! The end of a job: a worker that read a job's context from a Redis reply serves that
//! trace until it asks Redis for the next job (a blocking pop or a stream read). From
//! then on it serves none, so its next fetch, the empty replies it waits on, and the next
//! job's commands before that job's context arrives are not put on the last job's trace.
//!
//! A request's context (HTTP) needs none of this: the next request on the connection
//! replaces it. A job's context has no such successor, as the fetch's reply may carry no
//! context at all (the job id alone, the context read later with a `GET`).

use core::ffi::c_void;

use aya_ebpf::{helpers::generated::bpf_probe_read_user, macros::map, maps::LruHashMap};
use tracery_common::{
    regs::pt,
    trace::{nr, GoKey, TraceContext, TrackedProc, MAX_TRACKED, ORIGIN_JOB},
    trace_header::resp::{is_job_fetch, JOB_FETCH_PEEK},
};

use crate::{
    served::{current_trace, GO_TRACE, THREAD_TRACE},
    trace::{reg, request_key, user_u64},
};

/// Processes that have read a job's context (tgid -> 1): only their sends can end a job,
/// so every other process's sends skip finding the sender's trace.
#[map(name = "JOB_SERVERS")]
static JOB_SERVERS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

/// Process `tgid` just read a job's context.
#[inline(always)]
pub fn note_job_server(tgid: u32) {
    if JOB_SERVERS.get_ptr(tgid).is_none() {
        let _ = JOB_SERVERS.insert(tgid, 1, 0);
    }
}

/// Entry of system call `id` with user registers `regs` in tracked process `p`: if it
/// sends a job fetch from a thread (goroutine, task) serving a job's trace, that trace
/// ends here.
#[inline(always)]
pub fn on_send_enter(p: &TrackedProc, pid_tgid: u64, regs: u64, id: u64) {
    if !matches!(id, nr::WRITE | nr::SENDTO | nr::WRITEV | nr::SENDMSG)
        || JOB_SERVERS.get_ptr((pid_tgid >> 32) as u32).is_none()
    {
        return;
    }
    let key = request_key(p, pid_tgid, reg(regs, pt::R14 as usize));
    match current_trace(pid_tgid, key) {
        Some(t) if t.origin == ORIGIN_JOB && t.trace_id.iter().any(|b| *b != 0) => {}
        _ => return,
    }
    let arg1 = reg(regs, pt::RSI as usize);
    let (buf, len) = match id {
        nr::WRITE | nr::SENDTO => (arg1, reg(regs, pt::RDX as usize)),
        // An iovec array; for sendmsg, `struct msghdr`'s msg_iov at 16.
        _ => {
            let iov = if id == nr::WRITEV {
                arg1
            } else {
                user_u64(arg1 + 16)
            };
            (user_u64(iov), user_u64(iov + 8))
        }
    };
    // The shortest fetch (`*2\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n`) has 29 bytes; its
    // name ends within the first 16.
    let n: u32 = if len >= JOB_FETCH_PEEK as u64 {
        JOB_FETCH_PEEK as u32
    } else if len >= 16 {
        16
    } else {
        return;
    };
    let mut head = [0u8; JOB_FETCH_PEEK];
    // SAFETY: a fault-safe read of at most `JOB_FETCH_PEEK` bytes, the buffer's size.
    if unsafe { bpf_probe_read_user(head.as_mut_ptr().cast(), n, buf as *const c_void) } != 0 {
        return;
    }
    if !is_job_fetch(&head) {
        return;
    }
    let none = TraceContext::default();
    let _ = THREAD_TRACE.insert(pid_tgid, none, 0);
    if let Some(g) = key {
        let key = GoKey {
            tgid: (pid_tgid >> 32) as u32,
            _pad: 0,
            g,
        };
        let _ = GO_TRACE.insert(key, none, 0);
    }
}
