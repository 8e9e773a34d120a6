//! Bounded pre-order walk of a Rust `BTreeMap` at the hit ([`OpKind::BTree`]).
//!
//! Each node is copied once, when the walk first reaches it; its children follow it in
//! order. Going back up reads the node's `parent` and `parent_idx`, so there is no stack.
//! One copy or up to three word reads per `bpf_loop` step; the walk stops at the op's byte
//! budget, [`MAX_CHAIN`] nodes, the root, or the first fault.
//!
//! [`OpKind::BTree`]: tracery_common::OpKind::BTree

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_probe_read_user},
    macros::map,
    maps::PerCpuArray,
};
use tracery_common::{
    plan::{btree_node, MAX_CHAIN, MAX_TREE_DEPTH},
    FetchOp, OpStatus, DATA_CAP, MAX_COPY,
};

use crate::walk::read_word;

/// One walk's state, in a per-CPU map for the reason `walk.rs` gives.
#[repr(C)]
pub struct BTreeWalk {
    /// Node to copy next (going down), or the node just finished (going up).
    cur: u64,
    /// Height of `cur` (0 for a leaf).
    h: u64,
    /// Height of the root: going up stops there.
    root_h: u64,
    /// Non-zero while going up.
    up: u64,
    /// Data offset of the next node copy.
    out: u64,
    /// Data offset the walk must not pass.
    end: u64,
    /// Bytes copied per node.
    node: u64,
    /// Offsets in a node of `parent`, `parent_idx`, `len` and `edges`.
    parent: u64,
    parent_idx: u64,
    len: u64,
    edges: u64,
    /// Bytes written so far.
    wrote: u64,
    /// Non-zero when a read failed.
    fault: u64,
}

#[map(name = "BTREE_WALK")]
static BTREE_WALK: PerCpuArray<BTreeWalk> = PerCpuArray::with_max_entries(1, 0);

/// Runs a BTree op from `root` (the root node) of height `height`, its node budget `len`
/// bytes at data offset `out`. Returns the op's status and length.
#[inline(always)]
pub fn walk(op: &FetchOp, out: usize, len: usize, root: u64, height: u64) -> (OpStatus, usize) {
    let node = op.len_scale as u64;
    if node < 8 || node > MAX_COPY as u64 || len == 0 || height > MAX_TREE_DEPTH as u64 {
        return (OpStatus::OutOfBounds, 0);
    }
    let Some(w) = BTREE_WALK.get_ptr_mut(0) else {
        return (OpStatus::OutOfBounds, 0);
    };
    // SAFETY: this CPU's walk state; one program run at a time uses it.
    let w = unsafe { &mut *w };
    let (parent, parent_idx, node_len, edges) = btree_node::unpack(op.offset);
    w.cur = root;
    w.h = height;
    w.root_h = height;
    w.up = 0;
    w.out = out as u64;
    w.end = (out + len) as u64;
    w.node = node;
    w.parent = parent;
    w.parent_idx = parent_idx;
    w.len = node_len;
    w.edges = edges;
    w.wrote = 0;
    w.fault = 0;
    // SAFETY: the callback finds its state in the BTREE_WALK map; no context is passed.
    unsafe {
        bpf_loop(
            // One step down per node, at most one up per node, plus the climb to the root.
            MAX_CHAIN * 2 + MAX_TREE_DEPTH,
            step as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    if w.fault != 0 && w.wrote == 0 {
        return (OpStatus::Fault, 0);
    }
    (OpStatus::Ok, (w.wrote as usize).min(len))
}

#[inline(always)]
fn read_u16(addr: u64) -> Option<u64> {
    let mut v = 0u16;
    // SAFETY: reads 2 bytes of user memory into a local with the fault-safe helper.
    let r = unsafe { bpf_probe_read_user((&mut v as *mut u16).cast(), 2, addr as *const c_void) };
    (r == 0).then_some(v as u64)
}

extern "C" fn step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = BTREE_WALK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's walk state, set up by `walk` before the loop.
    let w = unsafe { &mut *w };
    if w.up == 0 {
        return down(w);
    }
    // Up: the node `cur` and its subtree are done; continue with the parent's next edge.
    if w.h >= w.root_h {
        return 1;
    }
    let (Some(parent), Some(idx)) = (
        read_word(w.cur.wrapping_add(w.parent)),
        read_u16(w.cur.wrapping_add(w.parent_idx)),
    ) else {
        w.fault = 1;
        return 1;
    };
    if parent == 0 {
        return 1;
    }
    let Some(plen) = read_u16(parent.wrapping_add(w.len)) else {
        w.fault = 1;
        return 1;
    };
    w.cur = parent;
    w.h += 1;
    if idx < plen && plen <= btree_node::CAPACITY {
        let at = parent.wrapping_add(w.edges).wrapping_add(8 * (idx + 1));
        let Some(next) = read_word(at) else {
            w.fault = 1;
            return 1;
        };
        w.cur = next;
        w.h -= 1;
        w.up = 0;
    }
    0
}

/// Down: copy `cur`, then go to its first child, or start going up from a leaf.
#[inline(always)]
fn down(w: &mut BTreeWalk) -> i64 {
    if w.cur == 0 || w.out + w.node > w.end {
        return 1;
    }
    let Some(buf) = crate::capture::scratch_buf() else {
        return 1;
    };
    let out = (w.out as usize) & (DATA_CAP - 1);
    let node = (w.node as usize) & (2 * MAX_COPY - 1);
    if node > MAX_COPY || node < 8 {
        return 1;
    }
    let dst = buf.wrapping_add(out);
    // SAFETY: `out < DATA_CAP` and `node <= MAX_COPY`, and the buffer is DATA_CAP + MAX_COPY
    // bytes; the source is user memory read with the fault-safe helper.
    if unsafe { bpf_probe_read_user(dst.cast(), node as u32, w.cur as *const c_void) } != 0 {
        w.fault = 1;
        return 1;
    }
    w.wrote += node as u64;
    w.out += node as u64;
    if w.h == 0 {
        w.up = 1;
        return 0;
    }
    match read_word(w.cur.wrapping_add(w.edges)) {
        Some(child) => {
            w.cur = child;
            w.h -= 1;
        }
        None => {
            w.fault = 1;
            return 1;
        }
    }
    0
}
