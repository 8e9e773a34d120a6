//! The capture path of the breakpoint uprobe.
//!
//! Every loop is bounded by a constant from `tracery-common` and every copy is clamped
//! against the scratch buffer before the helper call, so the verifier can prove each access.

use core::{ffi::c_void, intrinsics::AtomicOrdering};

use aya_ebpf::bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::{
    helpers::generated::{
        bpf_get_attach_cookie, bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id,
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_loop, bpf_probe_read_kernel,
        bpf_probe_read_user, bpf_probe_read_user_str, bpf_send_signal_thread,
    },
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::ProbeContext,
    EbpfContext,
};
use tracery_common::{
    regs::{pt, NUM_REGS},
    BaseKind, CgroupSetKey, CmpOp, FetchOp, HitHeader, OpKind, OpStatus, ProbeConfig, ProbeState,
    DATA_CAP, FREEZE_SIGNAL, MAX_CGROUP_DEPTH, MAX_CONDS, MAX_COPY, MAX_OPS, MAX_PROBES,
    MAX_SET_CGROUPS, RING_BYTES, SCRATCH_BYTES, STACK_CAP,
};

use crate::served::current_trace;

#[map(name = "PROBES")]
static PROBES: Array<ProbeConfig> = Array::with_max_entries(MAX_PROBES, 0);

#[map(name = "PROBE_STATE")]
static PROBE_STATE: Array<ProbeState> = Array::with_max_entries(MAX_PROBES, 0);

#[map(name = "HITS")]
static HITS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Non-zero while the reader is blocked waiting for records (set by user space).
#[map(name = "READER_IDLE")]
static READER_IDLE: Array<u64> = Array::with_max_entries(1, 0);

/// One record being assembled: the header and the data area (the stack goes straight into
/// the ring buffer).
#[repr(C)]
pub struct Scratch {
    header: HitHeader,
    buf: [u8; SCRATCH_BYTES],
}

#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch data buffer (`DATA_CAP + MAX_COPY` bytes), for the bounded walks.
#[inline(always)]
pub(crate) fn scratch_buf() -> Option<*mut u8> {
    let s = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: a per-CPU map value that lives as long as the program; only its address is taken.
    Some(unsafe { core::ptr::addr_of_mut!((*s).buf) }.cast::<u8>())
}

/// The cgroups of each set: a shared site of a pod breakpoint admits tasks in, or below,
/// the cgroups of the pods it chooses. Ids are global, so no cgroup namespace matters.
#[map(name = "CGROUP_SETS")]
static CGROUP_SETS: HashMap<CgroupSetKey, u8> = HashMap::with_max_entries(MAX_SET_CGROUPS, 0);

/// True when the current task is in a cgroup of `set`, or below one. Walks its ancestry
/// from the root down, at most [`MAX_CGROUP_DEPTH`] levels: a pod's group is found a few
/// levels down, and past the task's own level the helper returns 0.
#[inline(always)]
fn in_cgroup_set(set: u64) -> bool {
    for level in 1..MAX_CGROUP_DEPTH {
        // SAFETY: reads the current task's cgroup ancestry; no pointers.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 {
            return false;
        }
        let key = CgroupSetKey { set, cgroup: id };
        // SAFETY: the value is only tested for presence.
        if unsafe { CGROUP_SETS.get(&key) }.is_some() {
            return true;
        }
    }
    false
}

/// Smallest stack copy worth retrying with after a fault near the top of the stack.
const MIN_STACK: usize = 512;

/// Atomically adds one and returns the previous value (BPF_ATOMIC | BPF_FETCH, cpu v3).
///
/// `AtomicU64::fetch_add` is not offered on the BPF target (it has no compare-and-swap in
/// its target spec), so the intrinsic is used directly. It must be SeqCst: with Relaxed,
/// LLVM 22 emits a non-fetching `lock +=` and returns the addend (checked with objdump).
#[inline(always)]
fn bump(field: *mut u64) -> u64 {
    // SAFETY: `field` points into a map value that lives as long as the program; map values
    // are 8-byte aligned and the kernel supports atomic adds on them.
    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(field, 1) }
}

pub fn try_capture(ctx: &ProbeContext) -> Result<u32, u32> {
    // SAFETY: the helper only reads the attach cookie of the running program.
    let slot = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let cfg = PROBES.get(slot).ok_or(1u32)?;
    // A probe shared by every process of a file fires in other nodes' processes too.
    if cfg.flags & ProbeConfig::FLAG_IN_CGROUP != 0 {
        // SAFETY: reads the current task's cgroup ancestry; no pointers.
        let at = unsafe { bpf_get_current_ancestor_cgroup_id(cfg.cgroup_level as i32) };
        if at != cfg.cgroup_id {
            return Ok(0);
        }
    }
    // ... and in pods the breakpoint does not choose.
    if cfg.flags & ProbeConfig::FLAG_IN_CGROUP_SET != 0 && !in_cgroup_set(cfg.cgroup_set) {
        return Ok(0);
    }
    let state = PROBE_STATE.get_ptr_mut(slot).ok_or(1u32)?;
    // SAFETY: `state` is a valid map value pointer for this slot.
    let state = unsafe { &mut *state };
    bump(&mut state.fired);
    if cfg.flags & ProbeConfig::FLAG_COUNT_ONLY != 0 {
        return Ok(0);
    }

    let scratch = SCRATCH.get_ptr_mut(0).ok_or(1u32)?;
    // SAFETY: per-CPU scratch, used by one program run at a time on this CPU.
    let s = unsafe { &mut *scratch };
    // The verifier only allows whole 8-byte field loads from the context, so copy word by
    // word with volatile reads (a plain copy becomes a byte-wise memcpy).
    let regs = ctx.as_ptr() as *const u64;
    for i in 0..NUM_REGS {
        // SAFETY: a uprobe's context is the user `pt_regs`, NUM_REGS aligned words long.
        s.header.regs[i] = unsafe { core::ptr::read_volatile(regs.add(i)) };
    }
    // The uprobe reports the probed instruction's address, so this is where the process
    // mapped the file. Per-process probes were relocated by user space.
    let bias = if cfg.flags & ProbeConfig::FLAG_SHARED != 0 {
        s.header.regs[pt::RIP as usize].wrapping_sub(cfg.link_address)
    } else {
        0
    };

    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let go_g = if cfg.flags & ProbeConfig::FLAG_GO != 0 {
        Some(s.header.regs[pt::R14 as usize])
    } else {
        None
    };
    // A tokio process's request is its task's, read from tokio's thread-local.
    let key = go_g.or_else(|| {
        let p = crate::trace::tracked((pid_tgid >> 32) as u32)?;
        crate::trace::request_key(&p, pid_tgid, 0)
    });
    let trace = current_trace(pid_tgid, key);
    if (cfg.flags & ProbeConfig::FLAG_SCOPED != 0 || cfg.header_bits != 0)
        && !in_scope(cfg, trace.as_ref())
    {
        bump(&mut state.out_of_scope);
        return Ok(0);
    }

    let n_ops = (cfg.n_ops as usize).min(MAX_OPS);
    let cond_ops = (cfg.cond_ops as usize).min(n_ops);

    // Conditions first: a false condition must cost little and emit nothing.
    run_ops(cfg, s, bias, 0, cond_ops);
    if !conditions_hold(cfg, s) {
        bump(&mut state.cond_false);
        return Ok(0);
    }
    if !rate_allows(cfg, state) {
        bump(&mut state.rate_limited);
        return Ok(0);
    }
    let seq = bump(&mut state.claimed);
    if cfg.hit_limit != 0 && seq >= cfg.hit_limit {
        return Ok(0);
    }
    run_ops(cfg, s, bias, cond_ops, n_ops);

    let data_len = ((cfg.data_size as usize + 7) & !7).min(DATA_CAP);
    let rsp = s.header.regs[pt::RSP as usize];
    let stack_want = stack_want(cfg, rsp);

    let h = &mut s.header;
    h.breakpoint_id = cfg.breakpoint_id;
    h.seq = seq;
    // SAFETY: reads the monotonic clock; no arguments.
    h.ktime_ns = unsafe { bpf_ktime_get_ns() };
    h.slot = slot;
    h.pid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h.data_len = data_len as u32;
    h.trace_id = [0; 16];
    h.span_id = [0; 8];
    h.flags = 0;
    // SAFETY: reads the current task's cgroup id; no arguments.
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if let Some(t) = &trace {
        h.trace_id = t.trace_id;
        h.span_id = t.span_id;
        // Freeze only a traced request, and only a thread the agent waits for. Go code is
        // never stopped here (it would stall the garbage collector for the whole process).
        if cfg.flags & ProbeConfig::FLAG_FREEZE != 0 && !is_zero16(&t.trace_id) {
            crate::hold::freeze(t.trace_id, cfg.freeze_ns);
            match go_g {
                None if crate::trap::seized((pid_tgid >> 32) as u32) => {
                    h.flags = HitHeader::HIT_TRAPPED;
                }
                Some(g) => {
                    let key = tracery_common::trace::GoKey {
                        tgid: (pid_tgid >> 32) as u32,
                        _pad: 0,
                        g,
                    };
                    let pending = tracery_common::trace::GO_SUSPEND_PENDING;
                    // BPF_NOEXIST: a goroutine already waiting keeps its state.
                    if crate::trap::GO_SUSPEND.insert(key, pending, 1).is_ok() {
                        h.flags = HitHeader::HIT_GO_PENDING;
                    }
                }
                None => {}
            }
        }
    }
    let trap = h.flags & HitHeader::HIT_TRAPPED != 0;

    // Waking the reader on every record costs an irq_work and a context switch per hit
    // (most of a hit's cost on these VMs). The reader raises a flag before it blocks;
    // only then is a record worth a wake-up. A busy reader drains every few milliseconds.
    let wake = if READER_IDLE.get(0).is_some_and(|idle| *idle != 0) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    } as u64;
    // The smallest record layout that holds this hit.
    let emitted = if data_len <= 1024 && stack_want <= 4096 {
        emit::<1024, 4096>(s, data_len, stack_want, rsp, wake)
    } else if data_len <= 2048 {
        emit::<2048, STACK_CAP>(s, data_len, stack_want, rsp, wake)
    } else {
        emit::<DATA_CAP, STACK_CAP>(s, data_len, stack_want, rsp, wake)
    };
    if emitted {
        bump(&mut state.emitted);
        if trap {
            // SAFETY: signals only the current thread, which the agent has seized: it
            // stops in a signal-delivery stop at the breakpoint until the agent resumes it.
            unsafe { bpf_send_signal_thread(FREEZE_SIGNAL) };
        }
    } else {
        bump(&mut state.dropped);
    }
    Ok(0)
}

/// Writes one record straight into the ring buffer: the header and data from the scratch
/// area, then the user stack read directly into the record (no second copy). `D` and `S`
/// fix the layout (header, `D` data bytes, `S` stack bytes), so every offset the verifier
/// sees is a constant. Returns false when the ring buffer is full.
#[inline(always)]
fn emit<const D: usize, const S: usize>(
    s: &mut Scratch,
    data_len: usize,
    stack_want: usize,
    rsp: u64,
    wake: u64,
) -> bool {
    let Some(mut rec) = HITS.reserve_bytes(HitHeader::SIZE + D + S, 0) else {
        return false;
    };
    let dst = rec.as_mut_ptr();
    let stack_dst = dst.wrapping_add(HitHeader::SIZE + D);
    let mut stack_len = 0;
    let mut want = stack_want.min(S);
    // Past the top of a thread's stack the read faults; retry with halves.
    for _ in 0..6 {
        let len = want & (2 * STACK_CAP - 1);
        if len == 0 || len > S {
            break;
        }
        // SAFETY: the record has S bytes at `stack_dst` and len <= S.
        if unsafe { bpf_probe_read_user(stack_dst.cast(), len as u32, rsp as *const _) } == 0 {
            stack_len = len;
            break;
        }
        want /= 2;
        if want < MIN_STACK {
            break;
        }
    }
    s.header.stack_offset = D as u32;
    s.header.stack_len = stack_len as u32;
    // `min` and the check below bound the length for the verifier (no mask: the bound is
    // not a power of two, and masking with it would cut real lengths).
    let head_len = HitHeader::SIZE + data_len.min(D);
    if head_len > HitHeader::SIZE + D {
        rec.discard(0);
        return false;
    }
    // SAFETY: copies the header and `data_len <= D` data bytes from this CPU's scratch into
    // the record, which has HitHeader::SIZE + D bytes before the stack.
    let r =
        unsafe { bpf_probe_read_kernel(dst.cast(), head_len as u32, (s as *const Scratch).cast()) };
    if r != 0 {
        rec.discard(0);
        return false;
    }
    rec.submit(wake);
    true
}

#[inline(always)]
fn is_zero16(b: &[u8; 16]) -> bool {
    crate::scope::words(b) == (0, 0)
}

/// True when the hit's request is in the probe's trace scope (`--trace-id`, `--header`).
#[inline(always)]
fn in_scope(cfg: &ProbeConfig, trace: Option<&tracery_common::trace::TraceContext>) -> bool {
    let scoped = cfg.flags & ProbeConfig::FLAG_SCOPED != 0;
    crate::scope::in_scope(scoped, &cfg.scope_trace, cfg.header_bits, trace)
}

/// The probe's rate limit (see [`crate::scope::rate_allows`]).
fn rate_allows(cfg: &ProbeConfig, state: &mut ProbeState) -> bool {
    crate::scope::rate_allows(cfg.rate_interval_ns, cfg.rate_burst_ns, &mut state.rate_tat)
}

#[inline(always)]
fn read_u64(s: &Scratch, off: usize) -> Option<u64> {
    if off > DATA_CAP - 8 {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&s.buf[off..off + 8]);
    Some(u64::from_le_bytes(b))
}

fn set(s: &mut Scratch, i: usize, status: OpStatus, len: usize) {
    if let Some(r) = s.header.results.get_mut(i) {
        r.status = status as u8;
        r.len = len as u16;
    }
}

fn ok(s: &Scratch, i: usize) -> bool {
    i < MAX_OPS && s.header.results[i].status == OpStatus::Ok as u8
}

/// State handed to the `bpf_loop` callback (it lives on the caller's stack).
#[repr(C)]
struct OpsLoop {
    cfg: *const ProbeConfig,
    s: *mut Scratch,
    /// Added to absolute addresses (see `ProbeConfig::FLAG_SHARED`).
    bias: u64,
    from: u64,
}

/// Runs ops `from..to`. `bpf_loop` (Linux >= 5.17) makes the verifier check the body once
/// instead of once per iteration; an unrolled 64-iteration loop exhausts its budget.
fn run_ops(cfg: &ProbeConfig, s: &mut Scratch, bias: u64, from: usize, to: usize) {
    if to <= from {
        return;
    }
    let mut state = OpsLoop {
        cfg,
        s,
        bias,
        from: from as u64,
    };
    // SAFETY: the callback only reads `state` for the duration of the call.
    unsafe {
        bpf_loop(
            (to - from) as u32,
            op_step as *mut c_void,
            (&mut state as *mut OpsLoop).cast(),
            0,
        )
    };
}

extern "C" fn op_step(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `OpsLoop` that `run_ops` passed, alive for this call; its
    // pointers are the probe's config and this CPU's scratch map values.
    let (cfg, s, bias, i) = unsafe {
        let st = &*(ctx as *const OpsLoop);
        (&*st.cfg, &mut *st.s, st.bias, (st.from + index) as usize)
    };
    if i >= MAX_OPS {
        return 1;
    }
    let (status, len) = run_op(cfg, s, bias, i);
    set(s, i, status, len);
    0
}

fn run_op(cfg: &ProbeConfig, s: &mut Scratch, bias: u64, i: usize) -> (OpStatus, usize) {
    let Some(op) = cfg.ops.get(i) else {
        return (OpStatus::OutOfBounds, 0);
    };
    let out = op.out as usize;
    let mut len = op.len as usize;
    if out >= DATA_CAP || len > MAX_COPY || out + len > DATA_CAP {
        return (OpStatus::OutOfBounds, 0);
    }
    if op.flags & FetchOp::FLAG_DYNAMIC_LEN != 0 {
        if !ok(s, op.len_op as usize) {
            return (OpStatus::BaseFailed, 0);
        }
        let Some(mut count) = read_u64(s, op.len_slot as usize) else {
            return (OpStatus::OutOfBounds, 0);
        };
        if op.flags & FetchOp::FLAG_POW2_COUNT != 0 {
            count = 1u64 << (count & 0xff).min(31);
        }
        if op.flags & FetchOp::FLAG_COUNT_PLUS_ONE != 0 {
            count = count.saturating_add(1);
        }
        // Clamp before multiplying: no 128-bit overflow check exists on BPF.
        let bytes = count.min(MAX_COPY as u64) * op.len_scale as u64;
        if bytes < len as u64 {
            len = bytes as usize;
        }
    }
    let mut addr = if op.base == BaseKind::Reg as u8 {
        let r = op.reg as usize;
        if r >= NUM_REGS {
            return (OpStatus::OutOfBounds, 0);
        }
        s.header.regs[r].wrapping_add(op.offset as u64)
    } else if op.base == BaseKind::PtrAt as u8 {
        if !ok(s, op.base_op as usize) {
            return (OpStatus::BaseFailed, 0);
        }
        let Some(p) = read_u64(s, op.base_slot as usize) else {
            return (OpStatus::OutOfBounds, 0);
        };
        if p == 0 {
            return (OpStatus::Null, 0);
        }
        p.wrapping_add(op.offset as u64)
    } else {
        (op.offset as u64).wrapping_add(bias)
    };

    // Re-clamp with masks the verifier can follow through the helper's size argument.
    let out = out & (DATA_CAP - 1);
    let len = len & (2 * MAX_COPY - 1);
    if len > MAX_COPY {
        return (OpStatus::OutOfBounds, 0);
    }
    if op.flags & FetchOp::FLAG_BACKWARD != 0 {
        addr = addr.wrapping_sub(len as u64);
    }
    if op.kind == OpKind::Chain as u8 || op.kind == OpKind::RbTree as u8 {
        return crate::walk::walk(op, out, len, addr);
    }
    if op.kind == OpKind::BTree as u8 {
        // `offset` holds the node layout, not an address offset; `len_slot` the height.
        if !ok(s, op.len_op as usize) {
            return (OpStatus::BaseFailed, 0);
        }
        let Some(height) = read_u64(s, op.len_slot as usize) else {
            return (OpStatus::OutOfBounds, 0);
        };
        let root = addr.wrapping_sub(op.offset as u64);
        return crate::btree_walk::walk(op, out, len, root, height);
    }
    let dst = s.buf.as_mut_ptr().wrapping_add(out);
    if op.kind == OpKind::Value as u8 {
        if out > DATA_CAP - 8 {
            return (OpStatus::OutOfBounds, 0);
        }
        s.buf[out..out + 8].copy_from_slice(&addr.to_le_bytes());
        (OpStatus::Ok, 8)
    } else if op.kind == OpKind::Copy as u8 {
        if len == 0 {
            return (OpStatus::Ok, 0);
        }
        // SAFETY: `dst + len` stays inside `buf` (out < DATA_CAP, len <= MAX_COPY, and buf is
        // DATA_CAP + STACK_CAP + MAX_COPY long); the source is user memory read with a fault-safe helper.
        let r = unsafe { bpf_probe_read_user(dst.cast(), len as u32, addr as *const _) };
        if r == 0 {
            (OpStatus::Ok, len)
        } else {
            (OpStatus::Fault, 0)
        }
    } else if op.kind == OpKind::CStr as u8 {
        if len == 0 {
            return (OpStatus::Ok, 0);
        }
        // SAFETY: as for Copy; the helper writes at most `len` bytes including the NUL.
        let r = unsafe { bpf_probe_read_user_str(dst.cast(), len as u32, addr as *const _) };
        if r > 0 {
            (OpStatus::Ok, (r - 1) as usize)
        } else {
            (OpStatus::Fault, 0)
        }
    } else {
        (OpStatus::OutOfBounds, 0)
    }
}

fn conditions_hold(cfg: &ProbeConfig, s: &Scratch) -> bool {
    let n = (cfg.n_conds as usize).min(MAX_CONDS);
    for c in 0..MAX_CONDS {
        if c >= n {
            break;
        }
        let cond = &cfg.conds[c];
        if !ok(s, cond.op_index as usize) {
            return false;
        }
        let Some(raw) = read_u64(s, cond.slot as usize) else {
            return false;
        };
        let bits = match cond.size {
            1 => 8,
            2 => 16,
            4 => 32,
            _ => 64,
        };
        let shift = 64 - bits;
        let lhs = if cond.signed != 0 {
            ((raw << shift) as i64) >> shift
        } else {
            ((raw << shift) >> shift) as i64
        };
        let rhs = cond.value;
        let holds = if cond.signed != 0 {
            compare(cond.op, lhs, rhs)
        } else {
            compare(cond.op, lhs as u64, rhs as u64)
        };
        if !holds {
            return false;
        }
    }
    true
}

#[inline(always)]
fn compare<T: PartialOrd>(op: u8, a: T, b: T) -> bool {
    match op {
        x if x == CmpOp::Eq as u8 => a == b,
        x if x == CmpOp::Ne as u8 => a != b,
        x if x == CmpOp::Lt as u8 => a < b,
        x if x == CmpOp::Le as u8 => a <= b,
        x if x == CmpOp::Gt as u8 => a > b,
        x if x == CmpOp::Ge as u8 => a >= b,
        _ => false,
    }
}

/// Bytes of stack to copy from `rsp`: `stack_bytes`, but never past the end of the main
/// thread's stack when user space gave it (reading past it faults, which costs
/// microseconds on a VM).
fn stack_want(cfg: &ProbeConfig, rsp: u64) -> usize {
    let mut want = (cfg.stack_bytes as usize).min(STACK_CAP);
    let top = cfg.stack_top;
    if top > rsp && top - rsp < want as u64 {
        want = (top - rsp) as usize;
    }
    want
}
