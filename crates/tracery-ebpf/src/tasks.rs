//! Which goroutine or tokio task a thread runs, and how a new one inherits its parent's
//! trace. Traces of both are kept in `GO_TRACE`, keyed by `g`, by tokio task id, or (when
//! the binary lacks the DWARF to find tokio's thread-local) by task header.
//!
//! Go: one uprobe at the call that queues a new goroutine (or at each `ret` of
//! `runtime.newproc1`), once per goroutine created. tokio: the current task id is read
//! from tokio's thread-local where it is needed (a system call of a tracked process, a
//! capture), so nothing traps at a task switch; only spawns are hooked. Without that
//! DWARF, a uprobe on every `task::raw::poll` stands in.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{bpf_get_current_pid_tgid, bpf_get_current_task},
    },
    macros::map,
    maps::{Array, LruHashMap},
    programs::ProbeContext,
    EbpfContext,
};
use tracery_common::{
    regs::pt,
    trace::{GoKey, TrackedProc, MAX_CONNS},
};

use crate::served::{GO_TRACE, THREAD_TRACE};

/// The tokio task each worker thread polls now (poll mode only).
#[map(name = "CURRENT_TASK")]
static CURRENT_TASK: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_CONNS, 0);

#[map(name = "TASK_FSBASE")]
static TASK_FSBASE: Array<u64> = Array::with_max_entries(1, 0);

/// Largest distance from a task header to its id that is believed (tokio's task cell is a
/// few hundred bytes; a larger value means the layout was misread).
const MAX_ID_OFFSET: u64 = 1 << 16;

#[inline(always)]
fn read_user_u64(addr: u64) -> u64 {
    // SAFETY: fault-safe 8-byte read of user memory; a fault yields 0.
    unsafe { bpf_probe_read_user(addr as *const u64) }.unwrap_or(0)
}

/// Uprobe on a `ret` of Go's `runtime.newproc1`: its result (RAX, ABIInternal) is the new
/// goroutine.
pub fn go_newproc_return(ctx: &ProbeContext) -> u32 {
    go_created(ctx, pt::RAX as usize)
}

/// Uprobe on `runqput(pp, newg, true)` in `runtime.newproc.func1`: the new goroutine is
/// the second argument (RBX, ABIInternal). Only this call site: `runqput` itself also runs
/// at every goroutine wake-up.
pub fn go_newproc_queued(ctx: &ProbeContext) -> u32 {
    go_created(ctx, pt::RBX as usize)
}

/// A goroutine was just created, its `g` in register `child_reg`. This runs on the system
/// stack, so R14 is `g0` and `g0.m.curg` the goroutine creating it; the child inherits
/// that one's trace, or loses the stale one a reused `g` may carry.
#[inline(always)]
fn go_created(ctx: &ProbeContext, child_reg: usize) -> u32 {
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (pid_tgid >> 32) as u32;
    let Some(p) = crate::trace::tracked(tgid) else {
        return 0;
    };
    if p.g_m == 0 || p.m_curg == 0 {
        return 0;
    }
    let regs = ctx.as_ptr() as *const u64;
    // SAFETY: a uprobe's context is the user `pt_regs`; whole-word volatile loads.
    let (child, g0) = unsafe {
        (
            core::ptr::read_volatile(regs.add(child_reg)),
            core::ptr::read_volatile(regs.add(pt::R14 as usize)),
        )
    };
    let m = read_user_u64(g0 + u64::from(p.g_m));
    let parent = if m == 0 {
        0
    } else {
        read_user_u64(m + u64::from(p.m_curg))
    };
    inherit(tgid, parent, child);
    0
}

/// `child` takes `parent`'s trace, or loses any it had (a reused `g` or header).
#[inline(always)]
fn inherit(tgid: u32, parent: u64, child: u64) {
    if child == 0 {
        return;
    }
    let child_key = GoKey {
        tgid,
        _pad: 0,
        g: child,
    };
    let inherited = (parent != 0)
        .then(|| {
            GO_TRACE.get_ptr(GoKey {
                tgid,
                _pad: 0,
                g: parent,
            })
        })
        .flatten();
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
}

/// The id of the tokio task the current thread polls (tokio's `CONTEXT.current_task_id`),
/// 0 outside a task or if it cannot be read.
#[inline(always)]
fn tls_task_id(task_id_tls: i64) -> u64 {
    let Some(fsbase_off) = TASK_FSBASE.get(0).copied().filter(|o| *o != 0) else {
        return 0;
    };
    // SAFETY: the current `task_struct`; no arguments.
    let task = unsafe { bpf_get_current_task() };
    // SAFETY: fault-safe 8-byte kernel read of `task->thread.fsbase`, an offset from BTF.
    let fsbase = unsafe { bpf_probe_read_kernel((task + fsbase_off) as *const u64) }.unwrap_or(0);
    if fsbase == 0 {
        return 0;
    }
    read_user_u64(fsbase.wrapping_add(task_id_tls as u64))
}

/// The key of the tokio task the thread runs now in `GO_TRACE`: its id (thread-local
/// mode) or header (poll mode); 0 when unknown.
#[inline(always)]
pub fn current_task(p: &TrackedProc, pid_tgid: u64) -> u64 {
    current_task_of(p.task_id_tls, pid_tgid)
}

/// As [`current_task`], for a process whose `task_id_tls` is given.
#[inline(always)]
pub fn current_task_of(task_id_tls: i64, pid_tgid: u64) -> u64 {
    if task_id_tls != 0 {
        tls_task_id(task_id_tls)
    } else {
        // SAFETY: a map value pointer, valid for this program run.
        CURRENT_TASK.get_ptr(pid_tgid).map_or(0, |t| unsafe { *t })
    }
}

/// A task's id, read from its header through its vtable's `id_offset`; 0 if unreadable.
#[inline(always)]
fn header_task_id(p: &TrackedProc, header: u64) -> u64 {
    let vtable = read_user_u64(header + u64::from(p.task_header_vtable));
    if vtable == 0 {
        return 0;
    }
    let id_offset = read_user_u64(vtable + u64::from(p.task_vtable_id_offset));
    if id_offset == 0 || id_offset > MAX_ID_OFFSET {
        return 0;
    }
    read_user_u64(header + id_offset)
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
/// task running on this thread (its parent), or loses a stale one its key carried.
pub fn task_spawn(ctx: &ProbeContext) -> u32 {
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (pid_tgid >> 32) as u32;
    let Some(p) = crate::trace::tracked(tgid) else {
        return 0;
    };
    let regs = ctx.as_ptr() as *const u64;
    // SAFETY: a uprobe's context is the user `pt_regs`; whole-word volatile load of RSI.
    let header = unsafe { core::ptr::read_volatile(regs.add(pt::RSI as usize)) };
    let child = if p.task_id_tls != 0 {
        header_task_id(&p, header)
    } else {
        header
    };
    inherit(tgid, current_task(&p, pid_tgid), child);
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
