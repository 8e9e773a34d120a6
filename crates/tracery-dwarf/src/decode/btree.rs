//! `BTreeMap` and `BTreeSet`: entries in key order from the nodes the kernel copied in
//! pre-order (a node, then its children in order; `fetch_plan::builder::btree`).
//!
//! A node's `len` says how many entries it holds, and its depth in the walk whether it has
//! children, so the copies rebuild the tree's shape. Entries are shown in order up to the
//! first node the walk did not copy (its byte budget) or `max_elements`; the value then
//! says how many the map holds.

use tracery_common::plan::{btree_node::CAPACITY, MAX_TREE_DEPTH};

use super::{Bytes, Decoder};
use crate::{
    fetch_plan::RegionId,
    types::{btree_node, BTreeAt, BTreeNode},
    value::Value,
};

/// Where the in-order walk of the copies stands.
struct Walk<'a> {
    bytes: &'a Bytes,
    node: BTreeNode,
    /// Node copies in the capture.
    copies: u64,
    /// Next copy to read.
    next: u64,
    /// Most entries to show.
    max: usize,
    /// (copy, slot) of each entry shown, in key order.
    entries: Vec<(u64, u64)>,
}

impl Walk<'_> {
    /// The subtree whose root is the next copy, of height `h`; false when the walk ran
    /// out of copies or entries to show (the rest is cut).
    fn subtree(&mut self, h: u64) -> bool {
        if self.next >= self.copies {
            return false;
        }
        let copy = self.next;
        self.next += 1;
        let at = copy * self.node.size + self.node.len;
        let len = match self.bytes.read(at, 2) {
            Ok(b) => u64::from(u16::from_le_bytes([b[0], b[1]])),
            Err(_) => return false,
        };
        if len > CAPACITY {
            return false;
        }
        for slot in 0..len {
            if h > 0 && !self.subtree(h - 1) {
                return false;
            }
            if self.entries.len() >= self.max {
                return false;
            }
            self.entries.push((copy, slot));
        }
        h == 0 || self.subtree(h - 1)
    }
}

impl Decoder<'_> {
    /// A `BTreeMap` or `BTreeSet` of type `name` at `off`.
    pub(super) fn btree(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        name: &str,
        at: BTreeAt,
        nest: usize,
    ) -> Value {
        let empty = || {
            if at.set {
                Value::set(name, Vec::new(), None)
            } else {
                Value::map(name, Vec::new(), None)
            }
        };
        let length = match b.word(off + at.length) {
            Ok(n) => n,
            Err(hole) => return hole,
        };
        if length == 0 {
            return empty();
        }
        let (root, height) = match (b.word(off + at.root), b.word(off + at.height)) {
            (Ok(p), Ok(h)) => (p, h),
            (Err(hole), _) | (_, Err(hole)) => return hole,
        };
        if root == 0 || height > u64::from(MAX_TREE_DEPTH) {
            return Value::unavailable(format!(
                "inconsistent B-tree: {length} entries, root {root:#x}, height {height}"
            ));
        }
        let Some(node) = btree_node(&self.plan.types, at.leaf) else {
            return Value::unavailable("B-tree node of unknown layout");
        };
        let (nr, bytes) = match self.payload(r, off + at.root) {
            Ok(x) => x,
            Err(why) => return why,
        };
        let mut walk = Walk {
            bytes: &bytes,
            node,
            copies: bytes.buf.len() as u64 / node.size.max(1),
            next: 0,
            max: usize::from(self.plan.limits.max_elements),
            entries: Vec::new(),
        };
        walk.subtree(height);
        let entries = walk.entries;
        let at_key = |(copy, slot): (u64, u64)| copy * node.size + node.keys + slot * node.key_size;
        let at_val = |(copy, slot): (u64, u64)| copy * node.size + node.vals + slot * node.val_size;
        let total = ((entries.len() as u64) < length).then_some(length);
        if at.set {
            let keys = entries
                .iter()
                .map(|e| self.value(nr, &bytes, at_key(*e), node.key, nest + 1))
                .collect();
            return Value::set(name, keys, total);
        }
        let pairs = entries
            .iter()
            .map(|e| {
                let k = self.value(nr, &bytes, at_key(*e), node.key, nest + 1);
                let v = self.value(nr, &bytes, at_val(*e), node.val, nest + 1);
                (k, v)
            })
            .collect();
        Value::map(name, pairs, total)
    }
}
