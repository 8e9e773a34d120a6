//! CPython breakpoints: the `perf_event` program a hardware watchpoint on one bytecode word
//! runs (see `tracery_common::python`).
//!
//! The watchpoint fires in the thread that is about to run the instruction, which holds the
//! GIL, so `_PyRuntime.gilstate.tstate_current` is its thread state. The program keeps only
//! fetches by the watched code object's own frame, then copies the frame chain and the
//! locals breadth first (each object's first bytes, its type's name, and the elements of
//! lists, tuples, dicts and instance dicts) into one record. Every loop is bounded by a
//! `tracery_common::python` constant and every index is checked before use.

use core::{ffi::c_void, intrinsics::AtomicOrdering};

use aya_ebpf::{
    helpers::generated::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_loop, bpf_probe_read_user,
        bpf_probe_read_user_str,
    },
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::PerfEventContext,
};
use tracery_common::{
    python::{
        type_flags, PyHit, PyObjCopy, PySite, PySiteKey, PY_MAX_CHILDREN, PY_MAX_FRAMES,
        PY_MAX_LOCALS, PY_MAX_OBJECTS, PY_MAX_SITES, PY_NAME_BYTES, PY_NO_PARENT, PY_OBJ_BYTES,
        PY_RING_BYTES, PY_SLOT_DICT,
    },
    ProbeConfig,
};

use crate::{
    scope::{in_scope, rate_allows},
    served::current_trace,
};

#[map(name = "PY_SITES")]
static PY_SITES: HashMap<PySiteKey, PySite> = HashMap::with_max_entries(PY_MAX_SITES, 0);

#[map(name = "PY_HITS")]
static PY_HITS: RingBuf = RingBuf::with_byte_size(PY_RING_BYTES, 0);

/// Words of scratch for pointer arrays and dict entries (three words per entry).
const TMP_WORDS: usize = 3 * PY_MAX_CHILDREN;

/// The record being assembled, and the walk's state (kept in a map value: the verifier
/// tracks stack scalars exactly and would not converge on a counter there).
#[repr(C)]
pub struct PyScratch {
    hit: PyHit,
    site: PySite,
    tmp: [u64; TMP_WORDS],
    vals: [u64; PY_MAX_CHILDREN],
}

#[map(name = "PY_SCRATCH")]
static PY_SCRATCH: PerCpuArray<PyScratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn read<T: Copy>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    let mut out = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: the helper copies size_of::<T>() bytes of the target's memory into `out`,
    // failing (non-zero) on a fault; `out` is read only on success.
    let r = unsafe {
        bpf_probe_read_user(
            out.as_mut_ptr().cast(),
            core::mem::size_of::<T>() as u32,
            addr as *const c_void,
        )
    };
    // SAFETY: fully written by the helper when it returned 0.
    (r == 0).then(|| unsafe { out.assume_init() })
}

/// Atomically adds one and returns the previous value (see `capture::bump`).
#[inline(always)]
fn bump(field: *mut u64) -> u64 {
    // SAFETY: `field` points into a map value, 8-byte aligned, alive for the program's run.
    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(field, 1) }
}

/// A word of an object's copied bytes at `off` (masked so the verifier sees it in bounds).
#[inline(always)]
fn word(o: &PyObjCopy, off: u32) -> u64 {
    let off = (off as usize) & 0x7f;
    if off + 8 > PY_OBJ_BYTES {
        return 0;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&o.data[off..off + 8]);
    u64::from_ne_bytes(b)
}

pub fn try_watch(ctx: &PerfEventContext) -> Result<u32, u32> {
    // SAFETY: a perf_event program's context is `bpf_perf_event_data`; `addr` is the
    // breakpoint's address for a watchpoint event.
    let (addr, ip) = unsafe { ((*ctx.ctx).addr, (*ctx.ctx).regs.rip) };
    // SAFETY: reads the current task's ids; no arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let key = PySiteKey {
        pid: (pid_tgid >> 32) as u32,
        _pad: 0,
        addr,
    };
    let site_ptr = PY_SITES.get_ptr_mut(&key).ok_or(1u32)?;
    // SAFETY: a valid map value for this key while the program runs.
    let site = unsafe { &mut *site_ptr };
    if ip < site.eval_start || ip >= site.eval_end {
        bump(&mut site.spurious);
        return Ok(0);
    }
    let off = site.offsets;
    let tstate: u64 = read(off.tstate_current).ok_or(1u32)?;
    let cframe: u64 = read(tstate + off.tstate_cframe as u64).ok_or(1u32)?;
    let frame: u64 = read(cframe + off.cframe_current_frame as u64).ok_or(1u32)?;
    let code: u64 = read(frame + off.frame_code as u64).ok_or(1u32)?;
    let prev: u64 = read(frame + off.frame_prev_instr as u64).unwrap_or(0);
    // Another frame touching the word, or the instruction rewriting itself (specialization
    // runs while it executes): not a fetch of the watched instruction.
    if code != site.code || prev == addr {
        bump(&mut site.spurious);
        return Ok(0);
    }
    // The request this thread serves, where the tracker keeps it for a thread (a Python
    // process is tracked as a plain one: no goroutines, no tokio tasks); then the same
    // scope and rate checks as the native capture.
    let trace = current_trace(pid_tgid, None);
    let scoped = site.flags & u32::from(ProbeConfig::FLAG_SCOPED) != 0;
    if (scoped || site.header_bits != 0)
        && !in_scope(scoped, &site.scope_trace, site.header_bits, trace.as_ref())
    {
        bump(&mut site.out_of_scope);
        return Ok(0);
    }
    if !rate_allows(
        site.rate_interval_ns,
        site.rate_burst_ns,
        &mut site.rate_tat,
    ) {
        bump(&mut site.rate_limited);
        return Ok(0);
    }
    let claimed = bump(&mut site.claimed);
    if site.hit_limit != 0 && claimed >= site.hit_limit {
        return Ok(0);
    }

    let s = PY_SCRATCH.get_ptr_mut(0).ok_or(1u32)?;
    // SAFETY: per-CPU scratch, used by one program run at a time on this CPU.
    let s = unsafe { &mut *s };
    s.site = *site;
    s.hit.breakpoint_id = site.breakpoint_id;
    s.hit.site_addr = addr;
    // SAFETY: no arguments.
    s.hit.time_ns = unsafe { bpf_ktime_get_ns() };
    s.hit.pid = key.pid;
    s.hit.tid = pid_tgid as u32;
    s.hit.n_objects = 0;
    s.hit.objects_dropped = 0;
    s.hit.trace_id = [0; 16];
    s.hit.span_id = [0; 8];
    if let Some(t) = &trace {
        s.hit.trace_id = t.trace_id;
        s.hit.span_id = t.span_id;
    }

    copy_frames(s, frame);
    copy_locals(s, frame, code);

    let mut state = s as *mut PyScratch;
    // SAFETY: the callback only uses `state` (this CPU's scratch) during the call.
    unsafe {
        bpf_loop(
            PY_MAX_OBJECTS as u32,
            object_step as *mut c_void,
            (&mut state as *mut *mut PyScratch).cast(),
            0,
        )
    };
    PY_HITS.output::<PyHit>(&s.hit, 0).map_err(|_| 1u32)?;
    Ok(0)
}

fn copy_frames(s: &mut PyScratch, mut frame: u64) {
    let off = s.site.offsets;
    let mut n = 0u32;
    for i in 0..PY_MAX_FRAMES {
        if frame == 0 {
            break;
        }
        let code: u64 = read(frame + off.frame_code as u64).unwrap_or(0);
        let prev: u64 = read(frame + off.frame_prev_instr as u64).unwrap_or(0);
        s.hit.frames[i].code = code;
        s.hit.frames[i].prev_instr = prev;
        n += 1;
        frame = read(frame + off.frame_previous as u64).unwrap_or(0);
    }
    s.hit.n_frames = n;
}

fn copy_locals(s: &mut PyScratch, frame: u64, code: u64) {
    let off = s.site.offsets;
    let n: i32 = read(code + off.code_nlocalsplus as u64).unwrap_or(0);
    s.hit.n_locals = n.max(0) as u32;
    let n = (n.max(0) as usize).min(PY_MAX_LOCALS);
    let base = frame + off.frame_localsplus as u64;
    for i in 0..PY_MAX_LOCALS {
        if i >= n {
            break;
        }
        let obj: u64 = read(base + 8 * i as u64).unwrap_or(0);
        push(s, obj, PY_NO_PARENT, i as u16, 0);
    }
}

#[inline(always)]
fn push(s: &mut PyScratch, addr: u64, parent: u16, slot: u16, depth: u8) {
    if addr == 0 {
        return;
    }
    let n = s.hit.n_objects as usize;
    if n >= PY_MAX_OBJECTS {
        s.hit.objects_dropped += 1;
        return;
    }
    let o = &mut s.hit.objects[n];
    o.addr = addr;
    o.parent = parent;
    o.slot = slot;
    o.depth = depth;
    o.status = 1;
    o.type_addr = 0;
    o.type_flags = 0;
    o.len_hint = 0;
    s.hit.n_objects = n as u32 + 1;
}

extern "C" fn object_step(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the pointer to this CPU's scratch that `try_watch` passed.
    let s = unsafe { &mut **(ctx as *mut *mut PyScratch) };
    let i = index as usize;
    if i >= PY_MAX_OBJECTS || i >= s.hit.n_objects as usize {
        return 1;
    }
    copy_object(s, i);
    0
}

fn copy_object(s: &mut PyScratch, i: usize) {
    let off = s.site.offsets;
    let Some(o) = s.hit.objects.get_mut(i) else {
        return;
    };
    let addr = o.addr;
    // SAFETY: copies into the object's data area, PY_OBJ_BYTES long; fails on a fault.
    let mut r = unsafe {
        bpf_probe_read_user(
            o.data.as_mut_ptr().cast(),
            PY_OBJ_BYTES as u32,
            addr as *const c_void,
        )
    };
    o.status = 0;
    if r != 0 {
        // An object near the end of its mapping: its header alone.
        // SAFETY: as above, 32 bytes into the same area.
        r = unsafe { bpf_probe_read_user(o.data.as_mut_ptr().cast(), 32, addr as *const c_void) };
        o.status = 2;
    }
    if r != 0 {
        o.status = 1;
        return;
    }
    let ty = word(o, off.object_type);
    o.type_addr = ty;
    o.type_flags = read(ty + off.type_flags as u64).unwrap_or(0);
    let name: u64 = read(ty + off.type_name as u64).unwrap_or(0);
    if name != 0 {
        // SAFETY: copies a NUL-terminated string of at most PY_NAME_BYTES into the area.
        unsafe {
            bpf_probe_read_user_str(
                o.type_name.as_mut_ptr().cast(),
                PY_NAME_BYTES as u32,
                name as *const c_void,
            )
        };
    }
    let depth = o.depth;
    if u32::from(depth) >= s.site.max_depth || o.status != 0 {
        return;
    }
    let flags = o.type_flags;
    let max = (s.site.max_children as usize).min(PY_MAX_CHILDREN);
    let parent = i as u16;
    if flags & type_flags::LIST != 0 {
        let n = word(o, off.var_size);
        let items = word(o, off.list_items);
        o.len_hint = n.min(u16::MAX as u64) as u16;
        push_array(s, items, n, max, parent, depth + 1);
    } else if flags & type_flags::TUPLE != 0 {
        let n = word(o, off.var_size);
        o.len_hint = n.min(u16::MAX as u64) as u16;
        push_array(s, addr + off.tuple_items as u64, n, max, parent, depth + 1);
    } else if flags & type_flags::DICT != 0 {
        let keys = word(o, off.dict_keys);
        let values = word(o, off.dict_values);
        push_items(s, keys, values, max, parent, depth + 1);
    } else if flags & type_flags::MANAGED_DICT != 0 {
        let dict: u64 = read(addr - off.managed_dict_before as u64).unwrap_or(0);
        if dict != 0 {
            // The attributes are one level below the instance, not two.
            push(s, dict, parent, PY_SLOT_DICT, depth);
        } else {
            let values: u64 = read(addr - off.managed_values_before as u64).unwrap_or(0);
            let keys: u64 = read(ty + off.heaptype_cached_keys as u64).unwrap_or(0);
            if values != 0 {
                push_items(s, keys, values, max, parent, depth + 1);
            }
        }
    } else if flags & type_flags::TYPE == 0 {
        let dictoffset: i64 = read(ty + off.type_dictoffset as u64).unwrap_or(0);
        if dictoffset > 0 {
            let dict: u64 = read(addr + dictoffset as u64).unwrap_or(0);
            push(s, dict, parent, PY_SLOT_DICT, depth);
        }
    }
}

#[inline(always)]
fn push_array(s: &mut PyScratch, items: u64, n: u64, max: usize, parent: u16, depth: u8) {
    let n = (n as usize).min(max).min(PY_MAX_CHILDREN);
    if n == 0 || items == 0 {
        return;
    }
    // SAFETY: copies n <= PY_MAX_CHILDREN words into `tmp` (TMP_WORDS >= that).
    let r = unsafe {
        bpf_probe_read_user(
            s.tmp.as_mut_ptr().cast(),
            (8 * n) as u32,
            items as *const c_void,
        )
    };
    if r != 0 {
        return;
    }
    for j in 0..PY_MAX_CHILDREN {
        if j >= n {
            break;
        }
        let a = s.tmp[j];
        push(s, a, parent, j as u16, depth);
    }
}

/// A dict's (or an instance's split dict's) first items: keys from the keys object's
/// entries, values from the entries or from the separate values array.
#[inline(always)]
fn push_items(s: &mut PyScratch, keys: u64, values: u64, max: usize, parent: u16, depth: u8) {
    let off = s.site.offsets;
    if keys == 0 {
        return;
    }
    let log2_index: u8 = read(keys + off.keys_log2_index_bytes as u64).unwrap_or(0);
    let kind: u8 = read(keys + off.keys_kind as u64).unwrap_or(0);
    let nentries: i64 = read(keys + off.keys_nentries as u64).unwrap_or(0);
    let entries = keys + off.keys_indices as u64 + (1u64 << (log2_index & 31));
    // DICT_KEYS_GENERAL entries are (hash, key, value); unicode ones are (key, value).
    let (esize, koff) = if kind == 0 { (3usize, 1usize) } else { (2, 0) };
    let n = (nentries.max(0) as usize).min(max).min(PY_MAX_CHILDREN);
    if n == 0 {
        return;
    }
    if let Some(p) = s.parent_len(parent) {
        *p = nentries.clamp(0, u16::MAX as i64) as u16;
    }
    let bytes = 8 * esize * n;
    if bytes > 8 * TMP_WORDS {
        return;
    }
    // SAFETY: `bytes` <= the size of `tmp`, checked above.
    let r = unsafe {
        bpf_probe_read_user(
            s.tmp.as_mut_ptr().cast(),
            bytes as u32,
            entries as *const c_void,
        )
    };
    if r != 0 {
        return;
    }
    if values != 0 {
        // SAFETY: n <= PY_MAX_CHILDREN words into `vals`.
        let r = unsafe {
            bpf_probe_read_user(
                s.vals.as_mut_ptr().cast(),
                (8 * n) as u32,
                values as *const c_void,
            )
        };
        if r != 0 {
            return;
        }
    }
    for j in 0..PY_MAX_CHILDREN {
        if j >= n {
            break;
        }
        let k = j * esize + koff;
        if k + 1 >= TMP_WORDS {
            break;
        }
        let key = s.tmp[k];
        let value = if values != 0 { s.vals[j] } else { s.tmp[k + 1] };
        // A deleted entry (no key) or an attribute not set (no value) is skipped.
        if key == 0 || value == 0 {
            continue;
        }
        push(s, key, parent, (2 * j) as u16, depth);
        push(s, value, parent, (2 * j + 1) as u16, depth);
    }
}

impl PyScratch {
    fn parent_len(&mut self, parent: u16) -> Option<&mut u16> {
        self.hit
            .objects
            .get_mut(parent as usize)
            .map(|o| &mut o.len_hint)
    }
}
