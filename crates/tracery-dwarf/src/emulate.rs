//! Fetch plans run in user space, exactly as the kernel's capture program runs them
//! (`crates/tracery-ebpf/src/capture.rs`), against memory a caller provides: a stopped
//! thread's (`trace eval`) or a test's.
//!
//! - ops run in order; `Reg` bases add `offset` to the `pt_regs` word, `PtrAt` bases read
//!   the `u64` at `base_slot` and fail with `BaseFailed` unless op `base_op` is `Ok`, and
//!   with `Null` when the pointer is 0; `Absolute` bases are the offset itself;
//! - dynamic lengths are `min(len, min(count, MAX_COPY) * len_scale)`;
//! - `Value` stores `base + offset` as 8 bytes; `Copy` reads all bytes or fails with
//!   `Fault` (like `bpf_probe_read_user`); `CStr` copies up to `len - 1` bytes plus a NUL
//!   and reports the length without it (like `bpf_probe_read_user_str`);
//! - `FLAG_POW2_COUNT`, `FLAG_COUNT_PLUS_ONE` and `FLAG_BACKWARD` adjust dynamic lengths and
//!   addresses; `Chain` and `RbTree` walk nodes into the op's budget (`walk.rs`), `BTree` too
//!   (`btree_walk.rs`).

use tracery_common::{
    plan::{rb_node, MAX_CHAIN, MAX_TREE_DEPTH},
    BaseKind, FetchOp, HitHeader, OpKind, OpResult, OpStatus, ProbeConfig, DATA_CAP, MAX_COPY,
    MAX_OPS,
};

mod btree;

/// Memory the ops read: all of `buf` from `addr`, or false (the kernel's fault).
pub trait Memory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
}

impl<F: Fn(u64, &mut [u8]) -> bool> Memory for F {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self(addr, buf)
    }
}

/// What one op did, and where it read: enough to re-read a value the caps cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpRun {
    pub status: OpStatus,
    /// Bytes written (for strings, without the NUL).
    pub len: usize,
    /// Address read from (0 for `Value` ops and failures).
    pub addr: u64,
    /// A `Copy` op cut by its cap: the whole length the plan asked for.
    pub full_len: Option<u64>,
    /// A `CStr` op that filled its cap: the string may go on.
    pub cstr_cut: bool,
}

impl OpRun {
    fn failed(status: OpStatus) -> Self {
        Self {
            status,
            len: 0,
            addr: 0,
            full_len: None,
            cstr_cut: false,
        }
    }
}

/// Runs every op of `cfg` into `data` (at least `DATA_CAP` bytes) and records each result in
/// `h.results`, as the kernel does before it emits a record.
pub fn run_ops(
    cfg: &ProbeConfig,
    h: &mut HitHeader,
    data: &mut [u8],
    mem: &impl Memory,
) -> Vec<OpRun> {
    let n = (cfg.n_ops as usize).min(MAX_OPS);
    (0..n)
        .map(|i| {
            let run = run_op(&cfg.ops[i], h, data, mem);
            h.results[i] = OpResult {
                status: run.status as u8,
                _pad: 0,
                len: run.len as u16,
            };
            run
        })
        .collect()
}

fn ok(h: &HitHeader, i: u8) -> bool {
    (i as usize) < MAX_OPS && h.results[i as usize].status == OpStatus::Ok as u8
}

fn word(data: &[u8], off: usize) -> Option<u64> {
    if off > DATA_CAP - 8 {
        return None;
    }
    Some(u64::from_le_bytes(data.get(off..off + 8)?.try_into().ok()?))
}

/// One op, as `run_op` in the kernel runs it.
pub fn run_op(op: &FetchOp, h: &HitHeader, data: &mut [u8], mem: &impl Memory) -> OpRun {
    let out = op.out as usize;
    let mut len = op.len as usize;
    if out >= DATA_CAP || len > MAX_COPY || out + len > DATA_CAP || data.len() < DATA_CAP {
        return OpRun::failed(OpStatus::OutOfBounds);
    }
    let mut full_len = None;
    if op.flags & FetchOp::FLAG_DYNAMIC_LEN != 0 {
        if !ok(h, op.len_op) {
            return OpRun::failed(OpStatus::BaseFailed);
        }
        let Some(mut count) = word(data, op.len_slot as usize) else {
            return OpRun::failed(OpStatus::OutOfBounds);
        };
        if op.flags & FetchOp::FLAG_POW2_COUNT != 0 {
            count = 1u64 << (count & 0xff).min(31);
        }
        if op.flags & FetchOp::FLAG_COUNT_PLUS_ONE != 0 {
            count = count.saturating_add(1);
        }
        let bytes = count.min(MAX_COPY as u64) * u64::from(op.len_scale);
        if bytes < len as u64 {
            len = bytes as usize;
        }
        full_len = Some(count.saturating_mul(u64::from(op.len_scale)));
    }
    let mut addr = if op.base == BaseKind::Reg as u8 {
        let Some(r) = h.regs.get(op.reg as usize) else {
            return OpRun::failed(OpStatus::OutOfBounds);
        };
        r.wrapping_add(op.offset as u64)
    } else if op.base == BaseKind::PtrAt as u8 {
        if !ok(h, op.base_op) {
            return OpRun::failed(OpStatus::BaseFailed);
        }
        let Some(p) = word(data, op.base_slot as usize) else {
            return OpRun::failed(OpStatus::OutOfBounds);
        };
        if p == 0 {
            return OpRun::failed(OpStatus::Null);
        }
        p.wrapping_add(op.offset as u64)
    } else {
        op.offset as u64
    };
    if op.flags & FetchOp::FLAG_BACKWARD != 0 {
        addr = addr.wrapping_sub(len as u64);
    }
    if op.kind == OpKind::Chain as u8 || op.kind == OpKind::RbTree as u8 {
        return walk(op, addr, &mut data[out..out + len], mem);
    }
    if op.kind == OpKind::BTree as u8 {
        // `offset` holds the node layout, not an address offset; `len_slot` the height.
        if !ok(h, op.len_op) {
            return OpRun::failed(OpStatus::BaseFailed);
        }
        let Some(height) = word(data, op.len_slot as usize) else {
            return OpRun::failed(OpStatus::OutOfBounds);
        };
        let root = addr.wrapping_sub(op.offset as u64);
        return btree::walk(op, root, height, &mut data[out..out + len], mem);
    }
    let done = |len, full_len, cstr_cut| OpRun {
        status: OpStatus::Ok,
        len,
        addr,
        full_len,
        cstr_cut,
    };
    if op.kind == OpKind::Value as u8 {
        if out > DATA_CAP - 8 {
            return OpRun::failed(OpStatus::OutOfBounds);
        }
        data[out..out + 8].copy_from_slice(&addr.to_le_bytes());
        OpRun {
            addr: 0,
            ..done(8, None, false)
        }
    } else if op.kind == OpKind::Copy as u8 {
        if len == 0 {
            return done(0, None, false);
        }
        if !mem.read(addr, &mut data[out..out + len]) {
            return OpRun::failed(OpStatus::Fault);
        }
        done(len, full_len.filter(|f| *f > len as u64), false)
    } else if op.kind == OpKind::CStr as u8 {
        if len == 0 {
            return done(0, None, false);
        }
        match read_cstr(mem, addr, &mut data[out..out + len]) {
            Some(got) => done(got, None, got + 1 == len),
            None => OpRun::failed(OpStatus::Fault),
        }
    } else {
        OpRun::failed(OpStatus::OutOfBounds)
    }
}

/// A `Chain` or `RbTree` op into `buf` (its byte budget), as `walk.rs` in the kernel.
fn walk(op: &FetchOp, addr: u64, buf: &mut [u8], mem: &impl Memory) -> OpRun {
    let node = op.len_scale as usize;
    if !(8..=MAX_COPY).contains(&node) || buf.is_empty() {
        return OpRun::failed(OpStatus::OutOfBounds);
    }
    let tree = op.kind == OpKind::RbTree as u8;
    let read_word = |a: u64| {
        let mut b = [0u8; 8];
        mem.read(a, &mut b).then(|| u64::from_le_bytes(b))
    };
    let mut next = addr;
    if tree {
        next = match read_word(addr.wrapping_add(rb_node::LEFT)) {
            Some(p) if p != addr => p,
            Some(_) => 0,
            None => return OpRun::failed(OpStatus::Fault),
        };
    }
    let mut wrote = 0usize;
    for _ in 0..MAX_CHAIN {
        if next == 0 || wrote + node > buf.len() {
            break;
        }
        if !mem.read(next, &mut buf[wrote..wrote + node]) {
            if wrote == 0 {
                return OpRun::failed(OpStatus::Fault);
            }
            break;
        }
        let here = next;
        let link = op.len_slot as usize;
        next = if tree {
            rb_next(here, addr, &read_word).unwrap_or(0)
        } else if link + 8 > node {
            0
        } else {
            let at = wrote + link;
            u64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or([0; 8]))
        };
        wrote += node;
    }
    OpRun {
        status: OpStatus::Ok,
        len: wrote,
        addr,
        full_len: None,
        cstr_cut: false,
    }
}

/// libstdc++'s `_Rb_tree_increment`, each climb bounded by `MAX_TREE_DEPTH`.
fn rb_next(mut x: u64, header: u64, read_word: &impl Fn(u64) -> Option<u64>) -> Option<u64> {
    let right = read_word(x.wrapping_add(rb_node::RIGHT))?;
    if right != 0 {
        x = right;
        for _ in 0..MAX_TREE_DEPTH {
            let left = read_word(x.wrapping_add(rb_node::LEFT))?;
            if left == 0 {
                break;
            }
            x = left;
        }
        return (x != header).then_some(x);
    }
    let mut y = read_word(x.wrapping_add(rb_node::PARENT))?;
    for _ in 0..MAX_TREE_DEPTH {
        if x != read_word(y.wrapping_add(rb_node::RIGHT))? {
            break;
        }
        x = y;
        y = read_word(y.wrapping_add(rb_node::PARENT))?;
    }
    if read_word(x.wrapping_add(rb_node::RIGHT))? != y {
        x = y;
    }
    (x != header).then_some(x)
}

/// `bpf_probe_read_user_str`: up to `buf.len() - 1` bytes and a NUL; returns the length
/// without the NUL. Reads page by page, so a string that ends just before unmapped memory
/// still reads; `None` when not even its first page is readable.
pub fn read_cstr(mem: &impl Memory, addr: u64, buf: &mut [u8]) -> Option<usize> {
    let cap = buf.len().checked_sub(1)?;
    let mut got = 0;
    while got < cap {
        let at = addr.wrapping_add(got as u64);
        let want = (4096 - (at % 4096) as usize).min(cap - got);
        if !mem.read(at, &mut buf[got..got + want]) {
            if got == 0 {
                return None;
            }
            break;
        }
        if let Some(z) = buf[got..got + want].iter().position(|b| *b == 0) {
            return Some(got + z);
        }
        got += want;
    }
    buf[got] = 0;
    Some(got)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tracery_common::OpKind;

    use super::*;

    /// Memory made of fixed-size blocks at known addresses.
    fn memory(blocks: &[(u64, Vec<u8>)]) -> impl Memory + '_ {
        let map: HashMap<u64, &Vec<u8>> = blocks.iter().map(|(a, b)| (*a, b)).collect();
        move |addr: u64, buf: &mut [u8]| {
            map.iter().any(|(base, bytes)| {
                let Some(off) = addr.checked_sub(*base) else {
                    return false;
                };
                let off = off as usize;
                match bytes.get(off..off + buf.len()) {
                    Some(src) => {
                        buf.copy_from_slice(src);
                        true
                    }
                    None => false,
                }
            })
        }
    }

    fn words(ws: &[u64]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn walk_op(kind: OpKind, at: u64, len: u16, node: u16, link: u16) -> FetchOp {
        FetchOp {
            offset: at as i64,
            base: BaseKind::Absolute as u8,
            kind: kind as u8,
            len,
            len_scale: node,
            len_slot: link,
            ..FetchOp::EMPTY
        }
    }

    fn header() -> HitHeader {
        // SAFETY: HitHeader is repr(C) and holds only integers: all zeroes is a valid value.
        unsafe { std::mem::zeroed() }
    }

    fn run(op: &FetchOp, mem: &impl Memory) -> (OpRun, Vec<u8>) {
        let h = header();
        let mut data = vec![0u8; DATA_CAP];
        let r = run_op(op, &h, &mut data, mem);
        (r, data)
    }

    #[test]
    fn chains_follow_links_until_null_or_budget() {
        // Nodes { next, value }.
        let blocks = vec![
            (0x1000, words(&[0x2000, 10])),
            (0x2000, words(&[0x3000, 20])),
            (0x3000, words(&[0, 30])),
        ];
        let mem = memory(&blocks);
        let (r, data) = run(&walk_op(OpKind::Chain, 0x1000, 256, 16, 0), &mem);
        assert_eq!((r.status, r.len), (OpStatus::Ok, 48));
        assert_eq!(&data[..48], &words(&[0x2000, 10, 0x3000, 20, 0, 30])[..]);
        // The byte budget stops the walk between nodes.
        let (r, _) = run(&walk_op(OpKind::Chain, 0x1000, 40, 16, 0), &mem);
        assert_eq!(r.len, 32);
        // An unreadable first node is a fault; a later one ends the walk.
        let (r, _) = run(&walk_op(OpKind::Chain, 0x9000, 64, 16, 0), &mem);
        assert_eq!(r.status, OpStatus::Fault);
        let broken = vec![(0x1000, words(&[0x7000, 10]))];
        let (r, _) = run(&walk_op(OpKind::Chain, 0x1000, 64, 16, 0), &memory(&broken));
        assert_eq!((r.status, r.len), (OpStatus::Ok, 16));
    }

    #[test]
    fn red_black_trees_are_walked_in_order() {
        // libstdc++ nodes { color, parent, left, right, value }; header at 0x100.
        let header = 0x100;
        let node = |parent, left, right, v| words(&[0, parent, left, right, v]);
        let blocks = vec![
            (header, words(&[0, 0x200, 0x300, 0x500])),
            (0x200, node(header, 0x300, 0x400, 20)),
            (0x300, node(0x200, 0, 0, 10)),
            (0x400, node(0x200, 0, 0x500, 30)),
            (0x500, node(0x400, 0, 0, 40)),
        ];
        let mem = memory(&blocks);
        let (r, data) = run(&walk_op(OpKind::RbTree, header, 400, 40, 0), &mem);
        assert_eq!((r.status, r.len), (OpStatus::Ok, 160));
        let values: Vec<u64> = (0..4)
            .map(|i| u64::from_le_bytes(data[i * 40 + 32..i * 40 + 40].try_into().unwrap()))
            .collect();
        assert_eq!(values, [10, 20, 30, 40]);
        // An empty tree (null root) captures nothing, successfully.
        let empty = vec![(header, words(&[0, 0, header, header]))];
        let (r, _) = run(
            &walk_op(OpKind::RbTree, header, 400, 40, 0),
            &memory(&empty),
        );
        assert_eq!((r.status, r.len), (OpStatus::Ok, 0));
    }

    #[test]
    fn backward_and_power_of_two_lengths() {
        // hashbrown: 4 buckets of 8 bytes end at ctrl = 0x2020; mask 3 at data[0].
        let blocks = vec![(0x2000, words(&[1, 2, 3, 4]))];
        let mem = memory(&blocks);
        let mut h = header();
        h.results[0].status = OpStatus::Ok as u8;
        let mut data = vec![0u8; DATA_CAP];
        data[..8].copy_from_slice(&3u64.to_le_bytes());
        let op = FetchOp {
            offset: 0x2020,
            base: BaseKind::Absolute as u8,
            kind: OpKind::Copy as u8,
            flags: FetchOp::FLAG_DYNAMIC_LEN
                | FetchOp::FLAG_COUNT_PLUS_ONE
                | FetchOp::FLAG_BACKWARD,
            out: 64,
            len: 512,
            len_scale: 8,
            ..FetchOp::EMPTY
        };
        let r = run_op(&op, &h, &mut data, &mem);
        assert_eq!((r.status, r.len, r.addr), (OpStatus::Ok, 32, 0x2000));
        assert_eq!(&data[64..96], &words(&[1, 2, 3, 4])[..]);
        // Go: B = 1 in the low byte means two buckets.
        data[..8].copy_from_slice(&0x0301u64.to_le_bytes());
        let op = FetchOp {
            offset: 0x2000,
            flags: FetchOp::FLAG_DYNAMIC_LEN | FetchOp::FLAG_POW2_COUNT,
            len_scale: 16,
            ..op
        };
        let r = run_op(&op, &h, &mut data, &mem);
        assert_eq!((r.status, r.len), (OpStatus::Ok, 32));
    }
}
