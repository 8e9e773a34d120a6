//! Rust's `BTreeMap` and `BTreeSet` in DWARF: where the root node and height lie in the
//! map, and the layout of a node (`LeafNode<K, V>`; `InternalNode` adds `edges`).
//!
//! `BTreeMap { root: Option<NodeRef { node: NonNull<LeafNode>, height }>, length, .. }`;
//! a `BTreeSet<T>` is `{ map: BTreeMap<T, SetValZST> }`.

use super::{Aggregate, Shape, TypeId, TypeKind, TypeTable};

/// Where a B-tree lies in a `BTreeMap` or `BTreeSet` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BTreeAt {
    /// Offset of the root node pointer (0 in an empty map: `root` is `None`).
    pub root: u64,
    /// Offset of the root's height.
    pub height: u64,
    /// Offset of the entry count.
    pub length: u64,
    /// The `LeafNode<K, V>` type.
    pub leaf: TypeId,
    /// Entries are keys only (`BTreeSet`).
    pub set: bool,
}

/// Offsets and types inside one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BTreeNode {
    /// Size of a `LeafNode`: the bytes copied per node.
    pub size: u64,
    pub parent: u64,
    pub parent_idx: u64,
    pub len: u64,
    pub keys: u64,
    pub vals: u64,
    pub key: TypeId,
    pub key_size: u64,
    pub val: TypeId,
    pub val_size: u64,
    /// Offset of `edges` in an `InternalNode`: right after its `LeafNode`, 8-aligned.
    pub edges: u64,
}

fn member<'a>(agg: &'a Aggregate, name: &str) -> Option<&'a super::Member> {
    agg.members.iter().find(|m| m.name == name)
}

fn aggregate(table: &TypeTable, id: TypeId) -> Option<&Aggregate> {
    match &table.strip(id)?.1.kind {
        TypeKind::Aggregate(a) => Some(a),
        _ => None,
    }
}

/// Offset and target of the raw pointer at the bottom of `NonNull { pointer }` wrappers.
fn pointer_in(table: &TypeTable, id: TypeId, depth: usize) -> Option<(u64, TypeId)> {
    match &table.strip(id)?.1.kind {
        TypeKind::Pointer {
            target: Some(t), ..
        } => Some((0, *t)),
        TypeKind::Aggregate(a) if a.variants.is_none() && a.members.len() == 1 && depth < 4 => {
            let m = &a.members[0];
            let (at, t) = pointer_in(table, m.ty, depth + 1)?;
            Some((m.offset + at, t))
        }
        _ => None,
    }
}

/// The shape of a `BTreeMap` (`set` false) or `BTreeSet` (`set` true) struct.
pub(super) fn btree_shape(table: &TypeTable, agg: &Aggregate, set: bool) -> Option<Shape> {
    if set {
        let map = member(agg, "map")?;
        let inner = aggregate(table, map.ty)?;
        let at = btree_at(table, inner, true)?;
        return Some(Shape::BTree(BTreeAt {
            root: map.offset + at.root,
            height: map.offset + at.height,
            length: map.offset + at.length,
            ..at
        }));
    }
    btree_at(table, agg, false).map(Shape::BTree)
}

fn btree_at(table: &TypeTable, agg: &Aggregate, set: bool) -> Option<BTreeAt> {
    let root = member(agg, "root")?;
    let length = member(agg, "length")?;
    // Option<NodeRef>: the `Some` variant's `__0`, the node pointer being the niche.
    let option = aggregate(table, root.ty)?;
    let some = option
        .variants
        .as_ref()?
        .variants
        .iter()
        .find(|v| v.member.name == "Some")?;
    let some_ty = aggregate(table, some.member.ty)?;
    let node_ref = member(some_ty, "__0")?;
    let nr = aggregate(table, node_ref.ty)?;
    let node = member(nr, "node")?;
    let height = member(nr, "height")?;
    let (ptr, leaf) = pointer_in(table, node.ty, 0)?;
    let base = root.offset + some.member.offset + node_ref.offset;
    Some(BTreeAt {
        root: base + node.offset + ptr,
        height: base + height.offset,
        length: length.offset,
        leaf,
        set,
    })
}

/// The layout of `LeafNode<K, V>` (type `leaf`, loaded).
pub(crate) fn btree_node(table: &TypeTable, leaf: TypeId) -> Option<BTreeNode> {
    let t = table.strip(leaf)?.1;
    let TypeKind::Aggregate(agg) = &t.kind else {
        return None;
    };
    let param = |n: &str| agg.params.iter().find(|(p, _)| p == n).map(|(_, t)| *t);
    let (key, val) = (param("K")?, param("V")?);
    let size = t.size?;
    Some(BTreeNode {
        size,
        parent: member(agg, "parent")?.offset,
        parent_idx: member(agg, "parent_idx")?.offset,
        len: member(agg, "len")?.offset,
        keys: member(agg, "keys")?.offset,
        vals: member(agg, "vals")?.offset,
        key,
        key_size: table.size_of(key)?,
        val,
        val_size: table.size_of(val).unwrap_or(0),
        edges: size.div_ceil(8) * 8,
    })
}
