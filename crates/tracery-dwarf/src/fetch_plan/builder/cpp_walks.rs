//! Following libstdc++ containers at the hit: a vector's buffer from its start pointer, a
//! tree in order with the kernel's `RbTree` walk, a hash table along its node list with a
//! `Chain` walk, and a shared pointer's control block. Each is one op, capped by
//! [`super::CaptureLimits::max_elements`] and [`MAX_COPY`]. A deque is a few plain copies:
//! its first node's elements, its node pointers, then one copy per later node.

use tracery_common::{plan::rb_node, FetchOp, OpKind, DATA_CAP, MAX_COPY};

use super::{Builder, Follow, Part, Payload, RegionId};
use crate::types::{
    deque_per_node, variant_alternatives, Aggregate, AggregateKind, CppShape, DequeAt, Member,
    Type, TypeId, TypeKind,
};

/// Bytes of a control block read for its counts: vtable pointer, `_M_use_count`,
/// `_M_weak_count`.
pub(crate) const CONTROL_BLOCK: u64 = 16;

/// Offset of the value in an `std::unordered_*` node, after its `_M_nxt` link.
pub(crate) const HASH_NODE_VALUE: u64 = 8;

/// Most deque nodes after the first one read per hit: each costs an op, and
/// `max_elements` usually needs one or two.
const MAX_DEQUE_NODES: u64 = 8;

/// Synthetic type ids for node types (never DIE offsets, which stay far below 2^48).
const TREE_NODE: u64 = 1 << 62;
const HASH_NODE: u64 = 1 << 61;

impl Builder<'_, '_> {
    /// Plans the follows of a libstdc++ value at `off` in region `r`. Returns false when the
    /// generic member scan should run instead (wrappers whose pointers are plain members).
    pub(super) fn follow_cpp(
        &mut self,
        r: RegionId,
        off: u64,
        shape: CppShape,
        depth: u8,
        nest: usize,
    ) -> bool {
        match shape {
            CppShape::Vector { start, elem, .. } => self.follow_vector(r, off + start, elem, depth),
            CppShape::Deque(at) => self.follow_deque(r, off, at, depth),
            CppShape::Tree { header, val, .. } => self.follow_tree(r, off + header, val, depth),
            CppShape::Hash { first, val, .. } => self.follow_chain(r, off + first, val, depth),
            CppShape::Shared { ptr, ptr_ty, pi } => {
                self.scan(r, off + ptr, ptr_ty, depth, nest + 1);
                self.follow_fixed(r, off + pi, None, CONTROL_BLOCK, depth);
            }
            CppShape::Storage { ty } => {
                self.loader.load(ty);
                self.scan(r, off, ty, depth, nest + 1);
            }
            // The active alternative's type must be in the table for the decoder.
            CppShape::Variant { union_ty, .. } => {
                for (_, ty) in variant_alternatives(self.table(), union_ty) {
                    self.loader.load(ty);
                }
                return false;
            }
            CppShape::Unique { .. } | CppShape::Optional { .. } => return false,
        }
        true
    }

    /// Element size of `ty` when a walk can copy it, or records why not at (r, off).
    fn elem_size(&mut self, r: RegionId, off: u64, ty: TypeId) -> Option<u64> {
        self.loader.load(ty);
        match self.table().size_of(ty) {
            Some(s) if s > 0 && s <= MAX_COPY as u64 / 2 => Some(s),
            _ => {
                let why = "elements of zero, unknown or too large size".to_string();
                self.follows.insert((r, off), Follow::Skipped(why));
                None
            }
        }
    }

    /// Bytes for `max_elements` items of `unit` bytes, within one op and the data left.
    fn walk_cap(&self, unit: u64) -> u64 {
        let mut cap = (u64::from(self.limits.max_elements).max(1) * unit).min(MAX_COPY as u64);
        let room = DATA_CAP.saturating_sub((self.data + 7) & !7) as u64;
        cap = cap.min(room);
        cap - cap % unit
    }

    /// A vector's first `max_elements` elements from `_M_start`. The count (finish - start)
    /// is not a word the kernel can scale, so the copy has a fixed length and the decoder
    /// keeps only the elements before `_M_finish`.
    fn follow_vector(&mut self, r: RegionId, start: u64, elem: TypeId, depth: u8) {
        let Some(size) = self.elem_size(r, start, elem) else {
            return;
        };
        let Some(from) = self.pointer_source(r, start, depth, true) else {
            return;
        };
        let cap = self.walk_cap(size);
        if cap == 0 {
            self.follows.insert((r, start), Follow::Budget);
            return;
        }
        let template = FetchOp {
            kind: OpKind::Copy as u8,
            ..FetchOp::EMPTY
        };
        let Some(op) = self.push_follow(r, start, from, cap, template) else {
            return;
        };
        let payload = Payload::Elems { elem, size };
        let id = self.new_region(Some(elem), cap, cap, op, payload, depth);
        self.follows.insert((r, start), Follow::Region(id));
        if self.contains_pointers(elem, 0) {
            self.queue.push_back(id);
        }
    }

    /// A deque's first `max_elements` elements. The kernel cannot subtract the iterators'
    /// `_M_node` words, so the node count is fixed: a copy from `_M_start._M_cur` (the rest
    /// of the first node), a copy of the node pointers after `_M_start._M_node`, and one
    /// copy through each of those, up to [`MAX_DEQUE_NODES`]. The decoder keeps only the
    /// elements before `_M_finish._M_cur`. Element regions are one hop from the deque, as a
    /// vector's buffer is; the node pointers region is keyed at `_M_start._M_node`.
    fn follow_deque(&mut self, r: RegionId, off: u64, at: DequeAt, depth: u8) {
        let cur = off + at.start + at.cur;
        let Some(size) = self.elem_size(r, cur, at.elem) else {
            return;
        };
        let Some(from) = self.pointer_source(r, cur, depth, true) else {
            return;
        };
        let per_node = deque_per_node(size);
        let max = u64::from(self.limits.max_elements).max(1);
        let first = self.walk_cap(size).min(max.min(per_node) * size);
        if first == 0 {
            self.follows.insert((r, cur), Follow::Budget);
            return;
        }
        let copy = FetchOp {
            kind: OpKind::Copy as u8,
            ..FetchOp::EMPTY
        };
        let Some(op) = self.push_follow(r, cur, from, first, copy) else {
            return;
        };
        self.walked(r, cur, op, at.elem, size, first, depth);
        // The first node may hold a single element: the rest can need this many nodes.
        let nodes = (max - 1).div_ceil(per_node).min(MAX_DEQUE_NODES);
        let node = off + at.start + at.node;
        if nodes == 0 {
            return;
        }
        let Some(from) = self.pointer_source(r, node, depth, true) else {
            return;
        };
        // Slots past `_M_finish._M_node` (or past the map) are never decoded: their
        // copies at worst fault or read bytes nobody looks at.
        let next = FetchOp { offset: 8, ..copy };
        let Some(op) = self.push_follow(r, node, from, nodes * 8, next) else {
            return;
        };
        let ptrs = self.new_region(None, nodes * 8, nodes * 8, op, Payload::Fixed, depth);
        self.follows.insert((r, node), Follow::Region(ptrs));
        let mut left = (max - 1) * size;
        for j in 0..nodes {
            let want = left.min(per_node * size);
            let len = self.walk_cap(size).min(want);
            if len == 0 {
                self.follows.insert((ptrs, j * 8), Follow::Budget);
                return;
            }
            let slot = self.ops[op].out + (j * 8) as u16;
            let Some(o) = self.push_follow(ptrs, j * 8, (op, slot), len, copy) else {
                return;
            };
            self.walked(ptrs, j * 8, o, at.elem, size, len, depth);
            left -= want;
        }
    }

    /// The tree whose header node is at (r, header): an `RbTree` op from the header's own
    /// address, each node copied whole (links, then the value at `rb_node::VALUE`).
    fn follow_tree(&mut self, r: RegionId, header: u64, val: TypeId, depth: u8) {
        let Some(size) = self.elem_size(r, header, val) else {
            return;
        };
        if depth >= self.limits.max_depth {
            let why = "not captured: pointer depth limit".to_string();
            self.follows.insert((r, header), Follow::Skipped(why));
            return;
        }
        let Some(at) = self.address_of(r, header) else {
            let why = "the tree's address is not known at this point (held in registers or \
                       inside a walked node)"
                .to_string();
            self.follows.insert((r, header), Follow::Skipped(why));
            return;
        };
        let node = (rb_node::VALUE + size).next_multiple_of(8);
        let node_ty = self.node_type(TREE_NODE, val, rb_node::VALUE, node);
        let cap = self.walk_cap(node);
        let Some(out) = (cap > 0).then(|| self.alloc(cap as usize)).flatten() else {
            self.follows.insert((r, header), Follow::Budget);
            return;
        };
        let op = self.push(FetchOp {
            kind: OpKind::RbTree as u8,
            out,
            len: cap as u16,
            len_scale: node as u16,
            ..at
        });
        self.walked(r, header, op, node_ty, node, cap, depth);
    }

    /// The node list of a hash table: a `Chain` op from `_M_before_begin._M_nxt` at
    /// (r, first), each node `{ _M_nxt, value }` copied, the link at node offset 0.
    fn follow_chain(&mut self, r: RegionId, first: u64, val: TypeId, depth: u8) {
        let Some(size) = self.elem_size(r, first, val) else {
            return;
        };
        let Some(from) = self.pointer_source(r, first, depth, true) else {
            return;
        };
        let node = HASH_NODE_VALUE + size;
        let node_ty = self.node_type(HASH_NODE, val, HASH_NODE_VALUE, node);
        let cap = self.walk_cap(node);
        if cap == 0 {
            self.follows.insert((r, first), Follow::Budget);
            return;
        }
        let template = FetchOp {
            kind: OpKind::Chain as u8,
            len_slot: 0,
            len_scale: node as u16,
            ..FetchOp::EMPTY
        };
        let Some(op) = self.push_follow(r, first, from, cap, template) else {
            return;
        };
        self.walked(r, first, op, node_ty, node, cap, depth);
    }

    /// The region of nodes (or elements) of `node` bytes that op `op` copies for the
    /// pointer at (r, key).
    #[allow(clippy::too_many_arguments)] // reason: the walk's op, its node layout and budget
    fn walked(
        &mut self,
        r: RegionId,
        key: u64,
        op: usize,
        node_ty: TypeId,
        node: u64,
        cap: u64,
        depth: u8,
    ) {
        let payload = Payload::Elems {
            elem: node_ty,
            size: node,
        };
        let id = self.new_region(Some(node_ty), cap, cap, op, payload, depth);
        self.follows.insert((r, key), Follow::Region(id));
        if self.contains_pointers(node_ty, 0) {
            self.queue.push_back(id);
        }
    }

    /// A struct type for one node: `value` of type `val` at `at`, `size` bytes in all.
    fn node_type(&mut self, tag: u64, val: TypeId, at: u64, size: u64) -> TypeId {
        let id = TypeId(tag | val.0);
        let member = Member {
            name: "value".into(),
            ty: val,
            offset: at,
            bits: None,
            artificial: true,
        };
        self.loader.define(
            id,
            Type {
                name: "<node>".into(),
                size: Some(size),
                kind: TypeKind::Aggregate(Aggregate {
                    kind: AggregateKind::Struct,
                    members: vec![member],
                    variants: None,
                    params: Vec::new(),
                    go_kind: None,
                }),
            },
        );
        id
    }

    /// An op template (base, register or pointer, offset) that addresses byte `off` of
    /// region `r` in the process, when a plain forward copy captured it.
    fn address_of(&self, r: RegionId, off: u64) -> Option<FetchOp> {
        self.regions[r].parts.iter().find_map(|p| match p {
            Part::Op { at, len, op } if *at <= off && off < at + len => {
                let o = self.ops[*op];
                let plain = o.kind == OpKind::Copy as u8 && o.flags & FetchOp::FLAG_BACKWARD == 0;
                plain.then(|| FetchOp {
                    offset: o.offset.wrapping_add((off - at) as i64),
                    base: o.base,
                    reg: o.reg,
                    base_op: o.base_op,
                    base_slot: o.base_slot,
                    ..FetchOp::EMPTY
                })
            }
            _ => None,
        })
    }
}
