//! A `BTree` op in user space, step for step as `btree_walk.rs` runs it in the kernel.

use tracery_common::{
    plan::{btree_node, MAX_CHAIN, MAX_TREE_DEPTH},
    FetchOp, OpStatus, MAX_COPY,
};

use super::{Memory, OpRun};

/// Copies the nodes of the tree at `root` (height `height`) in pre-order into `buf`.
pub(super) fn walk(
    op: &FetchOp,
    root: u64,
    height: u64,
    buf: &mut [u8],
    mem: &impl Memory,
) -> OpRun {
    let node = op.len_scale as usize;
    if !(8..=MAX_COPY).contains(&node) || buf.is_empty() || height > u64::from(MAX_TREE_DEPTH) {
        return OpRun::failed(OpStatus::OutOfBounds);
    }
    let (parent, parent_idx, len, edges) = btree_node::unpack(op.offset);
    let word = |a: u64| {
        let mut b = [0u8; 8];
        mem.read(a, &mut b).then(|| u64::from_le_bytes(b))
    };
    let half = |a: u64| {
        let mut b = [0u8; 2];
        mem.read(a, &mut b)
            .then(|| u64::from(u16::from_le_bytes(b)))
    };
    let (mut cur, mut h, mut up) = (root, height, false);
    let mut wrote = 0usize;
    let mut fault = false;
    for _ in 0..MAX_CHAIN * 2 + MAX_TREE_DEPTH {
        if !up {
            if cur == 0 || wrote + node > buf.len() {
                break;
            }
            if !mem.read(cur, &mut buf[wrote..wrote + node]) {
                fault = true;
                break;
            }
            wrote += node;
            if h == 0 {
                up = true;
                continue;
            }
            match word(cur.wrapping_add(edges)) {
                Some(child) => {
                    cur = child;
                    h -= 1;
                }
                None => {
                    fault = true;
                    break;
                }
            }
            continue;
        }
        if h >= height {
            break;
        }
        let (Some(p), Some(idx)) = (
            word(cur.wrapping_add(parent)),
            half(cur.wrapping_add(parent_idx)),
        ) else {
            fault = true;
            break;
        };
        if p == 0 {
            break;
        }
        let Some(plen) = half(p.wrapping_add(len)) else {
            fault = true;
            break;
        };
        cur = p;
        h += 1;
        if idx < plen && plen <= btree_node::CAPACITY {
            let Some(next) = word(p.wrapping_add(edges).wrapping_add(8 * (idx + 1))) else {
                fault = true;
                break;
            };
            cur = next;
            h -= 1;
            up = false;
        }
    }
    if fault && wrote == 0 {
        return OpRun::failed(OpStatus::Fault);
    }
    OpRun {
        status: OpStatus::Ok,
        len: wrote,
        addr: root,
        full_len: None,
        cstr_cut: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracery_common::OpKind;

    /// Node layout of these tests: `parent` at 0, `parent_idx` at 8, `len` at 10, keys
    /// (u64) from 16: a `LeafNode` of 104 bytes; `edges` from 104.
    const SIZE: u64 = 104;

    fn node(parent: u64, idx: u16, keys: &[u64], edges: &[u64]) -> Vec<u8> {
        let mut b = vec![0u8; (SIZE + 96) as usize];
        b[..8].copy_from_slice(&parent.to_le_bytes());
        b[8..10].copy_from_slice(&idx.to_le_bytes());
        b[10..12].copy_from_slice(&(keys.len() as u16).to_le_bytes());
        for (i, k) in keys.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&k.to_le_bytes());
        }
        for (i, e) in edges.iter().enumerate() {
            let at = SIZE as usize + 8 * i;
            b[at..at + 8].copy_from_slice(&e.to_le_bytes());
        }
        b
    }

    /// Root 0x1000 holding 10 and 20 over leaves 0x2000 (1, 2), 0x3000 (11), 0x4000 (21).
    fn tree() -> Vec<(u64, Vec<u8>)> {
        vec![
            (0x1000, node(0, 0, &[10, 20], &[0x2000, 0x3000, 0x4000])),
            (0x2000, node(0x1000, 0, &[1, 2], &[])),
            (0x3000, node(0x1000, 1, &[11], &[])),
            (0x4000, node(0x1000, 2, &[21], &[])),
        ]
    }

    fn run(budget: usize) -> (OpRun, Vec<u64>) {
        let mem = tree();
        let read = |addr: u64, buf: &mut [u8]| {
            mem.iter().any(|(at, bytes)| {
                let Some(off) = addr.checked_sub(*at) else {
                    return false;
                };
                let end = off as usize + buf.len();
                if end > bytes.len() {
                    return false;
                }
                buf.copy_from_slice(&bytes[off as usize..end]);
                true
            })
        };
        let op = FetchOp {
            kind: OpKind::BTree as u8,
            offset: btree_node::pack(0, 8, 10, SIZE as u16),
            len_scale: SIZE as u16,
            ..FetchOp::EMPTY
        };
        let mut buf = vec![0u8; budget];
        let r = walk(&op, 0x1000, 1, &mut buf, &read);
        // The first key of each copied node, in copy order.
        let firsts = buf[..r.len]
            .chunks(SIZE as usize)
            .map(|n| u64::from_le_bytes(n[16..24].try_into().unwrap()))
            .collect();
        (r, firsts)
    }

    #[test]
    fn nodes_come_in_pre_order_up_to_the_budget() {
        let (r, firsts) = run(8 * SIZE as usize);
        assert_eq!(r.status, OpStatus::Ok);
        assert_eq!(firsts, [10, 1, 11, 21]);
        let (r, firsts) = run(2 * SIZE as usize + 50);
        assert_eq!(r.len, 2 * SIZE as usize);
        assert_eq!(firsts, [10, 1]);
    }
}
