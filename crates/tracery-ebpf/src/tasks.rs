//! Which goroutine or tokio task a thread runs, and how a new one inherits its parent's
//! trace: uprobes on the Go runtime's goroutine creation and on tokio's task poll, spawn
//! and dealloc. Traces of both are kept in `GO_TRACE`, keyed by `g` or task header.

use aya_ebpf::{
    helpers::generated::bpf_get_current_pid_tgid, macros::map, maps::LruHashMap,
    programs::ProbeContext, EbpfContext,
};
use tracery_common::{
    regs::pt,
    trace::{GoKey, MAX_CONNS},
};

use crate::served::{GO_TRACE, THREAD_TRACE};

/// The tokio task each worker thread polls now.
#[map(name = "CURRENT_TASK")]
static CURRENT_TASK: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_CONNS, 0);

/// Parent goroutine of a `runtime.newproc1` in flight on this thread.
#[map(name = "GO_SPAWNING")]
static GO_SPAWNING: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_CONNS, 0);

/// Uprobe on Go's `runtime.newproc1(fn, callergp, callerpc)`: remembers the parent
/// goroutine (ABIInternal: second argument in RBX) until the child is queued.
pub fn go_newproc(ctx: &ProbeContext) -> u32 {
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let regs = ctx.as_ptr() as *const u64;
    // SAFETY: a uprobe's context is the user `pt_regs`; whole-word volatile load.
    let parent = unsafe { core::ptr::read_volatile(regs.add(pt::RBX as usize)) };
    let _ = GO_SPAWNING.insert(pid_tgid, parent, 0);
    0
}

/// Uprobe on a `ret` of Go's `runtime.newproc1`: its result (RAX, ABIInternal) is the new
/// goroutine; it inherits its parent's trace, or loses the stale one a reused `g` may
/// carry. Both hooks run once per goroutine created, never on a wake-up (`runqput`, which
/// an earlier version hooked, runs on every one).
pub fn go_newproc_return(ctx: &ProbeContext) -> u32 {
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let Some(parent) = GO_SPAWNING.get_ptr(pid_tgid) else {
        return 0;
    };
    // SAFETY: a map value pointer, valid for this program run.
    let parent = unsafe { *parent };
    let _ = GO_SPAWNING.remove(pid_tgid);
    let regs = ctx.as_ptr() as *const u64;
    // SAFETY: as in `go_newproc`.
    let child = unsafe { core::ptr::read_volatile(regs.add(pt::RAX as usize)) };
    let tgid = (pid_tgid >> 32) as u32;
    let child_key = GoKey {
        tgid,
        _pad: 0,
        g: child,
    };
    let parent_key = GoKey {
        tgid,
        _pad: 0,
        g: parent,
    };
    match GO_TRACE.get_ptr(parent_key) {
        Some(p) => {
            // SAFETY: a map value pointer, valid for this program run.
            let ctx = unsafe { *p };
            let _ = GO_TRACE.insert(child_key, ctx, 0);
        }
        None => {
            let _ = GO_TRACE.remove(child_key);
        }
    }
    0
}

/// Uprobe on tokio's `task::raw::poll(header)`: the thread now runs that task, so it
/// serves the task's request (kept with goroutines' traces, keyed by the task header).
pub fn task_poll(ctx: &ProbeContext) -> u32 {
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let regs = ctx.as_ptr() as *const u64;
    // SAFETY: a uprobe's context is the user `pt_regs`; whole-word volatile load of RDI.
    let task = unsafe { core::ptr::read_volatile(regs.add(pt::RDI as usize)) };
    let _ = CURRENT_TASK.insert(pid_tgid, task, 0);
    let key = GoKey {
        tgid: (pid_tgid >> 32) as u32,
        _pad: 0,
        g: task,
    };
    match GO_TRACE.get_ptr(key) {
        Some(t) => {
            // SAFETY: a map value pointer, valid for this program run.
            let t = unsafe { *t };
            let _ = THREAD_TRACE.insert(pid_tgid, t, 0);
        }
        None => {
            let _ = THREAD_TRACE.remove(pid_tgid);
        }
    }
    0
}

/// Uprobe on tokio's `OwnedTasks::bind_inner(&self, task, notified)`, where every
/// spawned task is registered: the new task (RSI, its header) inherits the trace of the
/// task running on this thread (its parent), or loses a stale one its address carried.
pub fn task_spawn(ctx: &ProbeContext) -> u32 {
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (pid_tgid >> 32) as u32;
    let regs = ctx.as_ptr() as *const u64;
    // SAFETY: a uprobe's context is the user `pt_regs`; whole-word volatile load of RSI.
    let child = unsafe { core::ptr::read_volatile(regs.add(pt::RSI as usize)) };
    let child_key = GoKey {
        tgid,
        _pad: 0,
        g: child,
    };
    // SAFETY: a map value pointer, valid for this program run.
    let parent = CURRENT_TASK.get_ptr(pid_tgid).map(|p| unsafe { *p });
    let inherited = parent.and_then(|g| GO_TRACE.get_ptr(GoKey { tgid, _pad: 0, g }));
    match inherited {
        Some(t) => {
            // SAFETY: a map value pointer, valid for this program run.
            let t = unsafe { *t };
            let _ = GO_TRACE.insert(child_key, t, 0);
        }
        None => {
            let _ = GO_TRACE.remove(child_key);
        }
    }
    0
}

/// Uprobe on tokio's `task::raw::dealloc(header)`: the task is gone; a new task at the
/// same address must not inherit its trace.
pub fn task_dealloc(ctx: &ProbeContext) -> u32 {
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let regs = ctx.as_ptr() as *const u64;
    // SAFETY: as in `task_poll`.
    let task = unsafe { core::ptr::read_volatile(regs.add(pt::RDI as usize)) };
    let key = GoKey {
        tgid: (pid_tgid >> 32) as u32,
        _pad: 0,
        g: task,
    };
    let _ = GO_TRACE.remove(key);
    0
}

/// The tokio task the thread polls now (its header), 0 when unknown.
#[inline(always)]
pub fn current_task(pid_tgid: u64) -> u64 {
    // SAFETY: a map value pointer, valid for this program run.
    CURRENT_TASK.get_ptr(pid_tgid).map_or(0, |t| unsafe { *t })
}
