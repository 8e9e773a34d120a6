//! Tracery's kernel side: one generic capture uprobe driven by per-probe fetch plans.
//!
//! The program looks its plan up by attach cookie, checks conditions, the rate limit and the
//! hit limit, runs the plan's bounded reads, copies a bounded slice of the user stack and
//! emits one ring-buffer record. It never writes to the target's memory.
#![no_std]
#![no_main]
// Atomic fetch-add on map values; the BPF target lacks `AtomicU64::fetch_add`.
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "core_intrinsics, for the atomic add above"
)]

mod btree_walk;
mod capture;
mod exec;
mod hold;
mod job_end;
mod messages;
mod outbound_trace;
mod python;
mod scope;
mod served;
mod tasks;
mod trace;
mod trap;
mod walk;

use aya_ebpf::{
    macros::{raw_tracepoint, sk_msg, sock_ops, tracepoint, uprobe},
    programs::{
        ProbeContext, RawTracePointContext, SkMsgContext, SockOpsContext, TracePointContext,
    },
};

/// The breakpoint program: attach with the probe slot as cookie.
#[uprobe]
pub fn tracery_capture(ctx: ProbeContext) -> u32 {
    capture::try_capture(&ctx).unwrap_or(1)
}

/// An empty program: the benchmark's baseline for the bare cost of a uprobe hit.
#[uprobe]
pub fn tracery_empty(_ctx: ProbeContext) -> u32 {
    0
}

/// Exec watcher: attach to `sched/sched_process_exec`.
#[tracepoint]
pub fn tracery_exec(ctx: TracePointContext) -> u32 {
    exec::try_exec(&ctx).unwrap_or(1)
}

/// Trace tracker, syscall entry: attach to the `syscalls/sys_enter_*` tracepoints of the
/// system calls it watches (record: the number at 8).
#[tracepoint]
pub fn tracery_syscall_enter(ctx: TracePointContext) -> u32 {
    let Some((pid_tgid, p)) = trace::current_tracked() else {
        return 0;
    };
    // SAFETY: a `syscalls/sys_enter_*` record: `int __syscall_nr` at offset 8.
    let id = unsafe { ctx.read_at::<i32>(8) }.unwrap_or(-1);
    let regs = trace::current_user_regs();
    if regs == 0 || id < 0 {
        return 0;
    }
    trace::sys_enter(&p, pid_tgid, regs, id as u64)
}

/// Trace tracker, syscall exit: attach to the `syscalls/sys_exit_*` tracepoints of the
/// system calls it watches (record: the number at 8, the result at 16).
#[tracepoint]
pub fn tracery_syscall_exit(ctx: TracePointContext) -> u32 {
    let Some((pid_tgid, p)) = trace::current_tracked() else {
        return 0;
    };
    // SAFETY: a `syscalls/sys_exit_*` record: `int __syscall_nr` at 8, `long ret` at 16.
    let (id, ret) = unsafe { (ctx.read_at::<i32>(8), ctx.read_at::<i64>(16)) };
    let (Ok(id), Ok(ret)) = (id, ret) else {
        return 0;
    };
    let regs = trace::current_user_regs();
    if regs == 0 || id < 0 {
        return 0;
    }
    trace::sys_exit(&p, pid_tgid, regs, id as u64, ret)
}

/// Trace tracker, syscall entry, where the `syscalls/*` tracepoints are missing: attach
/// to the raw tracepoint `sys_enter` (runs for every system call on the node).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn tracery_sys_enter(ctx: RawTracePointContext) -> u32 {
    // Every system call comes here: the number is checked before any map lookup.
    trace::raw_sys_enter(ctx.arg(0), ctx.arg(1))
}

/// Trace tracker, syscall exit, where the `syscalls/*` tracepoints are missing: attach to
/// the raw tracepoint `sys_exit`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn tracery_sys_exit(ctx: RawTracePointContext) -> u32 {
    trace::raw_sys_exit(&ctx)
}

/// Message events, sends: attach to the raw tracepoint `sock_send_length` while tracking
/// is on (arguments: `struct sock *sk, int ret, int flags`).
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn tracery_sock_send(ctx: RawTracePointContext) -> u32 {
    messages::on_send(ctx.arg(0), ctx.arg(1), ctx.arg(2))
}

/// Message events, receives: attach to the raw tracepoint `sock_recv_length` while
/// tracking is on (arguments as for sends).
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn tracery_sock_recv(ctx: RawTracePointContext) -> u32 {
    messages::on_recv(&ctx)
}

/// Go goroutine creation: attach to each `ret` of `runtime.newproc1`.
#[uprobe]
pub fn tracery_go_newproc_return(ctx: ProbeContext) -> u32 {
    tasks::go_newproc_return(&ctx)
}

/// Go goroutine creation: attach to `newproc.func1`'s call of `runtime.runqput`.
#[uprobe]
pub fn tracery_go_newproc_queued(ctx: ProbeContext) -> u32 {
    tasks::go_newproc_queued(&ctx)
}

/// tokio task switch: attach to every `tokio::runtime::task::raw::poll` instance.
#[uprobe]
pub fn tracery_task_poll(ctx: ProbeContext) -> u32 {
    tasks::task_poll(&ctx)
}

/// tokio task spawn: attach to every `tokio::runtime::task::list::OwnedTasks::bind_inner`.
#[uprobe]
pub fn tracery_task_spawn(ctx: ProbeContext) -> u32 {
    tasks::task_spawn(&ctx)
}

/// tokio task end: attach to every `tokio::runtime::task::raw::dealloc` instance.
#[uprobe]
pub fn tracery_task_dealloc(ctx: ProbeContext) -> u32 {
    tasks::task_dealloc(&ctx)
}

/// Message hold, part 1: attach to each watched cgroup (cgroup v2 directory).
#[sock_ops]
pub fn tracery_hold_sockops(ctx: SockOpsContext) -> u32 {
    hold::sockops(&ctx)
}

/// Message hold, part 2: attach to the `SOCKS` sockhash.
#[sk_msg]
pub fn tracery_hold_msg(ctx: SkMsgContext) -> u32 {
    hold::verdict(&ctx)
}

/// CPython breakpoint: attach to a hardware watchpoint on one bytecode word.
#[aya_ebpf::macros::perf_event]
pub fn tracery_py_watch(ctx: aya_ebpf::programs::PerfEventContext) -> u32 {
    python::try_watch(&ctx).unwrap_or(1)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that can reach here, so this never runs.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
