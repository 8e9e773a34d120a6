//! Bounded walks of linked structures at the hit: linked lists ([`OpKind::Chain`]) and
//! libstdc++ red-black trees in order ([`OpKind::RbTree`]).
//!
//! Each walk runs in a `bpf_loop` of at most about 3 × [`MAX_CHAIN`] steps, so the verifier checks
//! one step, not every node. Every node copy is clamped against the scratch buffer first;
//! the walk stops at the op's byte budget, a null link or the first fault.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_probe_read_user},
    macros::map,
    maps::PerCpuArray,
};
use tracery_common::{
    plan::{rb_node, MAX_CHAIN, MAX_TREE_DEPTH},
    FetchOp, OpKind, OpStatus, DATA_CAP, MAX_COPY,
};

/// Where the tree walk keeps its stack of nodes: the last bytes of the scratch buffer's
/// slack past [`DATA_CAP`], which exists only so the verifier can bound copies (every op
/// stops at `DATA_CAP`), so nothing else writes there at run time.
const TREE_STACK_AT: usize = DATA_CAP + MAX_COPY - 8 * MAX_TREE_DEPTH as usize;

/// One walk's state, in a per-CPU map rather than on the stack: the verifier tracks stack
/// scalars exactly, so a counter there makes every iteration a new state and the loop
/// never converges; a map value's contents are unknown scalars, checked once.
#[repr(C)]
pub struct Walk {
    /// Next node to copy, 0 when done.
    next: u64,
    /// Data offset of the next node copy.
    out: u64,
    /// Data offset the walk must not pass.
    end: u64,
    /// Bytes copied per node.
    node: u64,
    /// Link offset inside a node (Chain).
    link: u64,
    /// Nodes on the tree walk's stack (RbTree).
    sp: u64,
    /// Bytes written so far.
    wrote: u64,
    /// Non-zero for a tree walk.
    tree: u64,
    /// Non-zero when the first node could not be read.
    fault: u64,
}

/// Runs a Chain or RbTree op whose node budget is `len` bytes at data offset `out`, from
/// `addr` (the first node, or the tree's header). Returns the op's status and length.
#[map(name = "WALK")]
static WALK: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn walk(op: &FetchOp, out: usize, len: usize, addr: u64) -> (OpStatus, usize) {
    let node = op.len_scale as u64;
    if node < 8 || node > MAX_COPY as u64 || len == 0 {
        return (OpStatus::OutOfBounds, 0);
    }
    let tree = op.kind == OpKind::RbTree as u8;
    let Some(w) = WALK.get_ptr_mut(0) else {
        return (OpStatus::OutOfBounds, 0);
    };
    // SAFETY: this CPU's walk state; one program run at a time uses it.
    let w = unsafe { &mut *w };
    w.next = addr;
    w.out = out as u64;
    w.end = (out + len) as u64;
    w.node = node;
    w.link = op.len_slot as u64;
    w.sp = 0;
    w.wrote = 0;
    w.tree = tree as u64;
    w.fault = 0;
    if tree {
        // Start at the root (the header's `_M_parent`; null in an empty tree).
        w.next = match read_word(addr.wrapping_add(rb_node::PARENT)) {
            Some(p) => p,
            None => return (OpStatus::Fault, 0),
        };
    }
    // SAFETY: the callback finds its state in the WALK map; no context pointer is passed.
    unsafe {
        bpf_loop(
            // A tree walk takes up to three steps per node (push, null left, pop).
            MAX_CHAIN * 3 + 1,
            walk_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    if w.fault != 0 && w.wrote == 0 {
        return (OpStatus::Fault, 0);
    }
    (OpStatus::Ok, (w.wrote as usize).min(len))
}

/// The 8 bytes of user memory at `addr`, if readable.
#[inline(always)]
pub fn read_word(addr: u64) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes of user memory into a local with the fault-safe helper.
    let r = unsafe { bpf_probe_read_user((&mut v as *mut u64).cast(), 8, addr as *const c_void) };
    (r == 0).then_some(v)
}

extern "C" fn walk_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = WALK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's walk state, set up by `walk` before the loop.
    let w = unsafe { &mut *w };
    let Some(buf) = crate::capture::scratch_buf() else {
        return 1;
    };
    if w.tree != 0 {
        return tree_step(w, buf);
    }
    if w.next == 0 || w.out + w.node > w.end {
        return 1;
    }
    let out = (w.out as usize) & (DATA_CAP - 1);
    let node = (w.node as usize) & (2 * MAX_COPY - 1);
    if node > MAX_COPY || node < 8 {
        return 1;
    }
    let dst = buf.wrapping_add(out);
    // SAFETY: `out < DATA_CAP` and `node <= MAX_COPY`, and the buffer is DATA_CAP + MAX_COPY
    // bytes; the source is user memory read with the fault-safe helper.
    let r = unsafe { bpf_probe_read_user(dst.cast(), node as u32, w.next as *const c_void) };
    if r != 0 {
        w.fault = 1;
        return 1;
    }
    w.wrote += node as u64;
    w.out += node as u64;
    let link = (w.link as usize) & (MAX_COPY - 1);
    w.next = if link + 8 > node {
        0
    } else {
        word_at(dst, link)
    };
    0
}

/// One step of an in-order tree walk with an explicit stack: push the current node and go
/// left, or pop a node, copy it and go right. One read or copy per step, no inner loop, so
/// the verifier checks a single straight path.
#[inline(always)]
fn tree_step(w: &mut Walk, buf: *mut u8) -> i64 {
    let stack = buf.wrapping_add(TREE_STACK_AT).cast::<u64>();
    if w.next != 0 {
        if w.sp >= MAX_TREE_DEPTH as u64 {
            w.fault = 1;
            return 1;
        }
        let i = (w.sp as usize) & (MAX_TREE_DEPTH as usize - 1);
        // SAFETY: `i < MAX_TREE_DEPTH`; the stack lies in the scratch buffer's slack.
        unsafe { *stack.add(i) = w.next };
        w.sp += 1;
        match read_word(w.next.wrapping_add(rb_node::LEFT)) {
            Some(left) => w.next = left,
            None => {
                w.fault = 1;
                return 1;
            }
        }
        return 0;
    }
    if w.sp == 0 || w.out + w.node > w.end {
        return 1;
    }
    w.sp -= 1;
    let i = (w.sp as usize) & (MAX_TREE_DEPTH as usize - 1);
    // SAFETY: as above.
    let here = unsafe { *stack.add(i) };
    let out = (w.out as usize) & (DATA_CAP - 1);
    let node = (w.node as usize) & (2 * MAX_COPY - 1);
    if node > MAX_COPY || node < rb_node::VALUE as usize {
        return 1;
    }
    let dst = buf.wrapping_add(out);
    // SAFETY: `out < DATA_CAP`, `node <= MAX_COPY`: inside the buffer; fault-safe read.
    if unsafe { bpf_probe_read_user(dst.cast(), node as u32, here as *const c_void) } != 0 {
        w.fault = 1;
        return 1;
    }
    w.wrote += node as u64;
    w.out += node as u64;
    w.next = word_at(dst, rb_node::RIGHT as usize);
    0
}

/// The little-endian word at `at + off`, which the caller just wrote.
#[inline(always)]
fn word_at(at: *mut u8, off: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        // SAFETY: the caller copied at least `off + 8` bytes to `at`.
        *x = unsafe { *at.add(off + i) };
    }
    u64::from_le_bytes(b)
}
