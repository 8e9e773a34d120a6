//! libstdc++ containers and wrappers as DWARF describes them (GCC 9 and later layouts).
//!
//! The layouts are found by member names through base classes (`<base>` members), not by
//! fixed offsets: `std::vector`'s pointers sit in `_Vector_base::_Vector_impl_data`, a
//! map's tree header in `_Rb_tree_impl`'s `_Rb_tree_header` base, and so on. The element
//! type of a tree or hash table is its `_Val` / `_Value` template parameter (the node types
//! are not data members anywhere). The plan ([`crate::fetch_plan`]) and the decoder both
//! ask [`cpp_shape`].

use super::{shape::Shape, Aggregate, TypeId, TypeKind, TypeTable};

/// How deep member searches go through bases and wrappers.
const SEARCH_DEPTH: usize = 10;

/// A libstdc++ value with a layout of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CppShape {
    /// `std::vector<T>`: offsets of `_M_start`, `_M_finish` and `_M_end_of_storage`.
    Vector {
        start: u64,
        finish: u64,
        end: u64,
        elem: TypeId,
    },
    /// `std::deque<T>`: where its `_M_start` and `_M_finish` iterators and their words are.
    Deque(DequeAt),
    /// `std::map`, `std::set` and multi forms: offsets of the tree's `_M_header` node and
    /// `_M_node_count`; nodes hold a `val` (`std::pair<const K, V>` for maps) at
    /// [`tracery_common::plan::rb_node::VALUE`].
    Tree {
        header: u64,
        count: u64,
        val: TypeId,
    },
    /// `std::unordered_*`: offsets of `_M_before_begin` (whose `_M_nxt` is the first node)
    /// and `_M_element_count`; nodes are `{ _M_nxt, val, [hash] }`.
    Hash { first: u64, count: u64, val: TypeId },
    /// `std::shared_ptr` / `std::weak_ptr`: offsets of `_M_ptr` and of the control block
    /// pointer `_M_refcount._M_pi`; `ptr_ty` is `_M_ptr`'s pointer type.
    Shared { ptr: u64, ptr_ty: TypeId, pi: u64 },
    /// `std::unique_ptr`: offset and pointer type of the owned pointer.
    Unique { ptr: u64, ptr_ty: TypeId },
    /// `std::optional`: offsets of `_M_engaged` and `_M_value`, and the value's type.
    Optional {
        engaged: u64,
        value: u64,
        ty: TypeId,
    },
    /// `std::variant`: offset of `_M_index` (its size in `index_size`) and of the
    /// `_Variadic_union` `_M_u`, whose type lists the alternatives.
    Variant {
        index: u64,
        index_size: u64,
        union: u64,
        union_ty: TypeId,
    },
    /// `__gnu_cxx::__aligned_membuf<T>` / `__aligned_buffer<T>`: raw storage of one `T`.
    Storage { ty: TypeId },
}

/// Offsets in a `std::deque<T>`: of its `_M_start` and `_M_finish` iterators, and of
/// `_M_cur`, `_M_first`, `_M_last` and `_M_node` inside an iterator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DequeAt {
    pub start: u64,
    pub finish: u64,
    pub cur: u64,
    pub first: u64,
    pub last: u64,
    pub node: u64,
    pub elem: TypeId,
}

/// Bytes of one deque node: libstdc++'s `__deque_buf_size` makes a node 512 bytes of
/// elements, or one element when that is larger.
pub(crate) const DEQUE_NODE_BYTES: u64 = 512;

/// Elements per node of a deque of `size`-byte elements (`__deque_buf_size`).
pub(crate) fn deque_per_node(size: u64) -> u64 {
    if size < DEQUE_NODE_BYTES {
        DEQUE_NODE_BYTES / size.max(1)
    } else {
        1
    }
}

/// The shape of a C++ struct, class or union named `name`.
pub(super) fn shape(table: &TypeTable, name: &str, agg: &Aggregate) -> Shape {
    if agg.variants.is_some() {
        return Shape::Other;
    }
    if let Some((ptr, len)) = string_layout(table, name, agg) {
        return Shape::Text { ptr, len };
    }
    cpp_shape(table, name, agg).map_or(Shape::Other, Shape::Cpp)
}

/// The template's name without arguments: `std::map` from `std::map<int, int, ...>`.
pub(crate) fn template_base(name: &str) -> &str {
    &name[..name.find('<').unwrap_or(name.len())]
}

/// The libstdc++ shape of a struct or class named `name`, when it has one. Strings are
/// [`super::Shape::Text`] and handled by the caller through [`string_layout`].
fn cpp_shape(table: &TypeTable, name: &str, agg: &Aggregate) -> Option<CppShape> {
    let base = template_base(name);
    let base = base.strip_prefix("std::").unwrap_or(base);
    let param = |p: &str| agg.params.iter().find(|(n, _)| n == p).map(|(_, t)| *t);
    match base {
        "vector" | "__cxx1998::vector" => {
            let (start, sty) = find(table, agg, "_M_start", 0)?;
            let elem = pointer_target(table, sty)?;
            let (finish, _) = find(table, agg, "_M_finish", 0)?;
            let (end, _) = find(table, agg, "_M_end_of_storage", 0)?;
            Some(CppShape::Vector {
                start,
                finish,
                end,
                elem,
            })
        }
        "deque" | "__cxx1998::deque" => {
            let (start, it_ty) = find(table, agg, "_M_start", 0)?;
            let (finish, _) = find(table, agg, "_M_finish", 0)?;
            let it = aggregate(table, it_ty)?;
            let (cur, cur_ty) = find(table, it, "_M_cur", 0)?;
            let elem = pointer_target(table, cur_ty)?;
            Some(CppShape::Deque(DequeAt {
                start,
                finish,
                cur,
                first: find(table, it, "_M_first", 0)?.0,
                last: find(table, it, "_M_last", 0)?.0,
                node: find(table, it, "_M_node", 0)?.0,
                elem,
            }))
        }
        "map" | "multimap" | "set" | "multiset" => {
            let (t_off, t_ty) = find(table, agg, "_M_t", 0)?;
            let tree = aggregate(table, t_ty)?;
            let val = tree.params.iter().find(|(n, _)| n == "_Val")?.1;
            let (header, _) = find(table, tree, "_M_header", 0)?;
            let (count, _) = find(table, tree, "_M_node_count", 0)?;
            Some(CppShape::Tree {
                header: t_off + header,
                count: t_off + count,
                val,
            })
        }
        "unordered_map" | "unordered_multimap" | "unordered_set" | "unordered_multiset" => {
            let (h_off, h_ty) = find(table, agg, "_M_h", 0)?;
            let hash = aggregate(table, h_ty)?;
            let val = hash.params.iter().find(|(n, _)| n == "_Value")?.1;
            let (first, _) = find(table, hash, "_M_before_begin", 0)?;
            let (count, _) = find(table, hash, "_M_element_count", 0)?;
            Some(CppShape::Hash {
                first: h_off + first,
                count: h_off + count,
                val,
            })
        }
        "shared_ptr" | "weak_ptr" => {
            let (ptr, ptr_ty) = find(table, agg, "_M_ptr", 0)?;
            let (rc, rc_ty) = find(table, agg, "_M_refcount", 0)?;
            let (pi, _) = find(table, aggregate(table, rc_ty)?, "_M_pi", 0)?;
            Some(CppShape::Shared {
                ptr,
                ptr_ty,
                pi: rc + pi,
            })
        }
        "unique_ptr" => {
            let (ptr, ptr_ty) = find_where(table, agg, "_M_head_impl", 0, &|ty| {
                pointer_target(table, ty).is_some()
            })?;
            Some(CppShape::Unique { ptr, ptr_ty })
        }
        "optional" => {
            let (engaged, _) = find(table, agg, "_M_engaged", 0)?;
            let (value, ty) = find(table, agg, "_M_value", 0)?;
            Some(CppShape::Optional { engaged, value, ty })
        }
        "variant" => {
            let (index, ity) = find(table, agg, "_M_index", 0)?;
            let (union, union_ty) = find(table, agg, "_M_u", 0)?;
            Some(CppShape::Variant {
                index,
                index_size: table.size_of(ity).unwrap_or(1).clamp(1, 8),
                union,
                union_ty,
            })
        }
        "__gnu_cxx::__aligned_membuf" | "__gnu_cxx::__aligned_buffer" => {
            param("_Tp").map(|ty| CppShape::Storage { ty })
        }
        _ => None,
    }
}

/// Offsets of `_M_p` and `_M_string_length` in a `std::basic_string` of bytes.
fn string_layout(table: &TypeTable, name: &str, agg: &Aggregate) -> Option<(u64, u64)> {
    let base = template_base(name);
    if base != "std::__cxx11::basic_string" && base != "std::basic_string" {
        return None;
    }
    let (_, ch) = agg.params.iter().find(|(n, _)| n == "_CharT")?;
    if table.size_of(*ch) != Some(1) {
        return None;
    }
    let (ptr, _) = find(table, agg, "_M_p", 0)?;
    let (len, _) = find(table, agg, "_M_string_length", 0)?;
    Some((ptr, len))
}

/// The alternatives of a `_Variadic_union<T0, T1, ...>`: offset in the union (always 0
/// for GCC, kept for clarity) and type of each, in index order.
pub(crate) fn variant_alternatives(table: &TypeTable, union_ty: TypeId) -> Vec<(u64, TypeId)> {
    let mut out = Vec::new();
    let mut cur = union_ty;
    let mut at = 0u64;
    for _ in 0..64 {
        let Some(u) = aggregate(table, cur) else {
            break;
        };
        let Some(first) = u.members.iter().find(|m| m.name == "_M_first") else {
            break;
        };
        // `_Uninitialized<T, trivial>` holds `T _M_storage` or an aligned buffer of `T`.
        let ty = aggregate(table, first.ty)
            .and_then(|a| a.params.iter().find(|(n, _)| n == "_Type").map(|p| p.1))
            .unwrap_or(first.ty);
        out.push((at + first.offset, ty));
        let Some(rest) = u.members.iter().find(|m| m.name == "_M_rest") else {
            break;
        };
        at += rest.offset;
        cur = rest.ty;
    }
    out
}

/// The struct or class behind `id`, through typedefs and qualifiers.
pub(crate) fn aggregate(table: &TypeTable, id: TypeId) -> Option<&Aggregate> {
    match &table.strip(id)?.1.kind {
        TypeKind::Aggregate(a) => Some(a),
        _ => None,
    }
}

fn pointer_target(table: &TypeTable, id: TypeId) -> Option<TypeId> {
    match table.strip(id)?.1.kind {
        TypeKind::Pointer { target, .. } => target,
        _ => None,
    }
}

/// Offset and type of the first member named `name`, depth first through members and
/// bases.
fn find(table: &TypeTable, agg: &Aggregate, name: &str, depth: usize) -> Option<(u64, TypeId)> {
    find_where(table, agg, name, depth, &|_| true)
}

fn find_where(
    table: &TypeTable,
    agg: &Aggregate,
    name: &str,
    depth: usize,
    ok: &dyn Fn(TypeId) -> bool,
) -> Option<(u64, TypeId)> {
    if depth > SEARCH_DEPTH {
        return None;
    }
    if let Some(m) = agg.members.iter().find(|m| m.name == name && ok(m.ty)) {
        return Some((m.offset, m.ty));
    }
    agg.members.iter().find_map(|m| {
        let inner = aggregate(table, m.ty)?;
        let (off, ty) = find_where(table, inner, name, depth + 1, ok)?;
        Some((m.offset + off, ty))
    })
}
