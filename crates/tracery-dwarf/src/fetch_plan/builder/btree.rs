//! Following a Rust `BTreeMap`'s nodes: one `BTree` op walks them in pre-order in the
//! kernel (`crates/tracery-ebpf/src/btree_walk.rs`), copying each node's `LeafNode` part.

use tracery_common::{
    plan::{btree_node, MAX_CHAIN},
    FetchOp, OpKind, DATA_CAP, MAX_COPY,
};

use super::{Builder, Follow, Payload, RegionId, Word, NESTED_FOLLOWS};
use crate::types::{btree_node as node_layout, BTreeAt};

/// Entries a node is counted for when sizing a walk: nodes other than the root hold 5 to
/// 11, and the walk copies the nodes above the first leaves too.
const ENTRIES_PER_NODE: u64 = 8;

/// Most nodes one map's walk copies: enough for `CaptureLimits::max_elements` entries at
/// [`ENTRIES_PER_NODE`] each plus the root, and never more than this (nor [`MAX_COPY`]
/// bytes, nor the data area left). The bytes are reserved at plan time, whatever the
/// map's size at the hit, so the cap stays small.
pub(crate) const BTREE_NODES: u64 = 16;

impl Builder<'_, '_> {
    /// Plans the walk of the B-tree whose fields lie at `off + at.*` in region `r`. The
    /// follow is recorded at the root pointer. Pointers inside entries (a `String` key) are
    /// followed for the first node copied (the root) only: the others' places are known
    /// only at the hit.
    pub(super) fn follow_btree(&mut self, r: RegionId, off: u64, at: BTreeAt, depth: u8) {
        let root = off + at.root;
        let Some(from) = self.pointer_source(r, root, depth, true) else {
            return;
        };
        let Word::Op {
            op: height_op,
            slot: height_slot,
        } = self.word(r, off + at.height)
        else {
            let why = "tree height not captured".to_string();
            self.follows.insert((r, root), Follow::Skipped(why));
            return;
        };
        self.loader.load(at.leaf);
        let Some(node) = node_layout(self.table(), at.leaf) else {
            let why = "B-tree node of unknown layout".to_string();
            self.follows.insert((r, root), Follow::Skipped(why));
            return;
        };
        let fits = |x: u64| u16::try_from(x).is_ok();
        if node.size < 8 || node.size > MAX_COPY as u64 || !fits(node.edges) {
            let why = format!("B-tree node of {} bytes: larger than one copy", node.size);
            self.follows.insert((r, root), Follow::Skipped(why));
            return;
        }
        let wanted = u64::from(self.limits.max_elements).div_ceil(ENTRIES_PER_NODE) + 1;
        let nodes = wanted.min(BTREE_NODES).min(u64::from(MAX_CHAIN));
        let room = DATA_CAP.saturating_sub((self.data + 7) & !7) as u64;
        let mut cap = (nodes * node.size).min(MAX_COPY as u64).min(room);
        cap -= cap % node.size;
        if cap == 0 {
            self.follows.insert((r, root), Follow::Budget);
            return;
        }
        let layout = btree_node::pack(
            node.parent as u16,
            node.parent_idx as u16,
            node.len as u16,
            node.edges as u16,
        );
        let template = FetchOp {
            kind: OpKind::BTree as u8,
            offset: layout,
            len_op: height_op as u8,
            len_slot: height_slot,
            len_scale: node.size as u16,
            ..FetchOp::EMPTY
        };
        let Some(op) = self.push_follow(r, root, from, cap, template) else {
            return;
        };
        let payload = Payload::Elems {
            elem: at.leaf,
            size: node.size,
        };
        let id = self.new_region(Some(at.leaf), cap, cap, op, payload, depth);
        self.follows.insert((r, root), Follow::Region(id));
        let first = btree_node::CAPACITY.min(NESTED_FOLLOWS);
        for (ty, start, size) in [
            (node.key, node.keys, node.key_size),
            (node.val, node.vals, node.val_size),
        ] {
            if size == 0 || !self.contains_pointers(ty, 0) {
                continue;
            }
            for j in 0..first {
                self.scan(id, start + j * size, ty, depth + 1, 0);
            }
        }
    }
}
