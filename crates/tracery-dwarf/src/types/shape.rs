//! Language-level shapes hidden in DWARF structs: strings, slices, vectors, interfaces.
//!
//! DWARF describes a Rust `String` as nested structs ending in a raw pointer, and a Go
//! `string` as `{str *uint8; len int}`. The plan must follow such a pointer with the length
//! field as a dynamic length, and the decoder must show text, so both ask [`shape_of`].
//! Field names differ between Rust versions (`vec.buf.inner.ptr.pointer.pointer`,
//! `buf.ptr.pointer`), so the pointer is found by walking members, not by a fixed path.

use super::{Aggregate, AggregateKind, Encoding, TypeId, TypeKind, TypeTable};
use crate::render::SourceLanguage;

/// What a (stripped) type is at the language level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// UTF-8 bytes: a pointer at `ptr` and a byte count at `len` (offsets in the value).
    Text { ptr: u64, len: u64 },
    /// A run of `elem`: a pointer at `ptr` and an element count at `len`.
    Slice { ptr: u64, len: u64, elem: TypeId },
    /// A Go interface: `eface` (`interface{}`: type word first) or `iface` (itab first).
    GoInterface { eface: bool },
    /// A hashbrown table (Rust `HashMap`, `HashSet`): offsets of `bucket_mask`, `ctrl`
    /// and `items`; buckets of `elem` lie below `ctrl`. `set` when the entries are keys only.
    HashTable {
        mask: u64,
        ctrl: u64,
        items: u64,
        elem: TypeId,
        set: bool,
    },

    /// A ring buffer (Rust `VecDeque`): `len` elements of `elem` from slot `head` on,
    /// wrapping at the capacity (`cap`), in the buffer at `ptr`. The plan copies the
    /// buffer from slot 0, its length the capacity, like a slice's.
    Ring {
        ptr: u64,
        cap: u64,
        head: u64,
        len: u64,
        elem: TypeId,
    },

    /// A libstdc++ container or wrapper (C++ units only).
    Cpp(super::cpp_shape::CppShape),

    /// A Rust trait object (`&dyn T`, `Box<dyn T>`): offsets of the data pointer and of
    /// the vtable pointer, which names the concrete type.
    DynTrait { data: u64, vtable: u64 },

    /// A Rust `BTreeMap` or `BTreeSet`: root node, height and length, node type.
    BTree(super::BTreeAt),

    /// Nothing special: decode by the DWARF kind.
    Other,
}

/// The shape of type `id` (already stripped of aliases) in a unit of language `lang`.
pub(crate) fn shape_of(table: &TypeTable, id: TypeId, lang: SourceLanguage) -> Shape {
    let Some(t) = table.get(id) else {
        return Shape::Other;
    };
    let TypeKind::Aggregate(agg) = &t.kind else {
        return Shape::Other;
    };
    // libstdc++ types are classes as often as structs.
    if lang == SourceLanguage::Cpp {
        return super::cpp_shape::shape(table, &t.name, agg);
    }
    if agg.kind != AggregateKind::Struct || agg.variants.is_some() {
        return Shape::Other;
    }
    match lang {
        SourceLanguage::Rust => rust_shape(table, &t.name, agg),
        SourceLanguage::Go => go_shape(table, &t.name, agg),
        _ => Shape::Other,
    }
}

fn member<'a>(agg: &'a Aggregate, name: &str) -> Option<&'a super::Member> {
    agg.members.iter().find(|m| m.name == name)
}

/// The bare type name: `Vec` from `alloc::vec::Vec<u32, alloc::alloc::Global>`.
fn short(name: &str) -> &str {
    let generic = name.find('<').unwrap_or(name.len());
    let base = &name[..generic];
    match base.rfind("::") {
        Some(i) => &base[i + 2..],
        None => base,
    }
}

fn is_pointer(table: &TypeTable, id: TypeId) -> Option<Option<TypeId>> {
    match table.strip(id)?.1.kind {
        TypeKind::Pointer { target, .. } => Some(target),
        _ => None,
    }
}

fn is_word(table: &TypeTable, id: TypeId) -> bool {
    matches!(
        table.strip(id),
        Some((_, t)) if t.size == Some(8)
            && matches!(t.kind, TypeKind::Base(Encoding::Signed | Encoding::Unsigned))
    )
}

/// Layout of a Go 1.19 to 1.23 map (`runtime.hmap` and its bucket type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GoMapLayout {
    /// The `hash<K,V>` header type.
    pub header: TypeId,
    /// Offsets in the header of `count`, `B` and `buckets`.
    pub count: u64,
    pub b: u64,
    pub buckets: u64,
    /// The `bucket<K,V>` type and its size.
    pub bucket: TypeId,
    pub bucket_size: u64,
}

/// True for a fat pointer to an OS string: `&Path`, `&OsStr`, `Box<Path>`, `Rc<OsStr>`...
fn is_os_str_pointer(name: &str) -> bool {
    ["::Path", "::OsStr"].iter().any(|s| {
        name.ends_with(s) || name.contains(&format!("{s},")) || name.ends_with(&format!("{s}>"))
    })
}

fn rust_shape(table: &TypeTable, name: &str, agg: &Aggregate) -> Shape {
    // &dyn T, Box<dyn T>: `{ pointer, vtable }`.
    if name.starts_with('&') || name.starts_with("*") || short(name) == "Box" {
        if let (Some(p), Some(v)) = (member(agg, "pointer"), member(agg, "vtable")) {
            if dyn_trait(name).is_some() && is_pointer(table, p.ty).is_some() {
                return Shape::DynTrait {
                    data: p.offset,
                    vtable: v.offset,
                };
            }
        }
    }
    // &str, &[T], Box<str>, Box<[T]>: fat pointers.
    if let (Some(p), Some(l)) = (member(agg, "data_ptr"), member(agg, "length")) {
        let Some(target) = is_pointer(table, p.ty) else {
            return Shape::Other;
        };
        if !is_word(table, l.ty) {
            return Shape::Other;
        }
        let text = name.ends_with("str") || name.ends_with("str>") || name.contains("str,");
        // Paths and OS strings are bytes on Unix; `{:?}` shows them as (lossy) text.
        if text || is_os_str_pointer(name) {
            return Shape::Text {
                ptr: p.offset,
                len: l.offset,
            };
        }
        return match target {
            Some(elem) => Shape::Slice {
                ptr: p.offset,
                len: l.offset,
                elem,
            },
            None => Shape::Other,
        };
    }
    match short(name) {
        "String" => {
            let Some(v) = member(agg, "vec") else {
                return Shape::Other;
            };
            match vec_parts(table, v.ty) {
                Some((ptr, len, _)) => Shape::Text {
                    ptr: v.offset + ptr,
                    len: v.offset + len,
                },
                None => Shape::Other,
            }
        }
        // PathBuf { inner: OsString { inner: Buf { inner: Vec<u8> } } }.
        "PathBuf" | "OsString" => match wrapped_vec(table, agg, 0) {
            Some((ptr, len)) => Shape::Text { ptr, len },
            None => Shape::Other,
        },
        "HashMap" | "HashSet" => match hash_table(table, agg, 0) {
            Some((mask, ctrl, items, elem)) => Shape::HashTable {
                mask,
                ctrl,
                items,
                elem,
                set: short(name) == "HashSet",
            },
            None => Shape::Other,
        },
        "VecDeque" => ring_layout(table, agg).unwrap_or(Shape::Other),
        "BTreeMap" | "BTreeSet" => {
            super::rust_btree::btree_shape(table, agg, short(name) == "BTreeSet")
                .unwrap_or(Shape::Other)
        }
        "Vec" => match vec_layout(table, agg) {
            Some((ptr, len, Some(elem))) => Shape::Slice { ptr, len, elem },
            _ => Shape::Other,
        },
        _ => Shape::Other,
    }
}

/// `VecDeque { head, len, buf: RawVec { inner: RawVecInner { ptr, cap, .. }, .. } }`.
fn ring_layout(table: &TypeTable, agg: &Aggregate) -> Option<Shape> {
    let head = member(agg, "head")?;
    let len = member(agg, "len")?;
    if !is_word(table, head.ty) || !is_word(table, len.ty) {
        return None;
    }
    let buf = member(agg, "buf")?;
    let ptr = first_pointer(table, buf.ty, 0)?;
    let cap = member_path(table, buf.ty, &["inner", "cap"])?;
    let (_, elem) = agg.params.iter().find(|(n, _)| n == "T")?;
    Some(Shape::Ring {
        ptr: buf.offset + ptr,
        cap: buf.offset + cap,
        head: head.offset,
        len: len.offset,
        elem: *elem,
    })
}

/// The offset of the word-sized member at `path` inside a value of type `id`.
fn member_path(table: &TypeTable, id: TypeId, path: &[&str]) -> Option<u64> {
    let Some((first, rest)) = path.split_first() else {
        // A word, or a one-word newtype (`Cap(usize)`, `UsizeNoHighBit`).
        let t = table.strip(id)?.1;
        return (t.size == Some(8)).then_some(0);
    };
    let TypeKind::Aggregate(a) = &table.strip(id)?.1.kind else {
        return None;
    };
    let m = member(a, first)?;
    Some(m.offset + member_path(table, m.ty, rest)?)
}

/// Pointer and length offsets of the `Vec<u8>` at the bottom of single-field wrappers.
fn wrapped_vec(table: &TypeTable, agg: &Aggregate, depth: usize) -> Option<(u64, u64)> {
    let inner = member(agg, "inner")?;
    let t = table.strip(inner.ty)?.1;
    let TypeKind::Aggregate(a) = &t.kind else {
        return None;
    };
    if short(&t.name) == "Vec" {
        let (ptr, len, _) = vec_layout(table, a)?;
        return Some((inner.offset + ptr, inner.offset + len));
    }
    if depth > 4 {
        return None;
    }
    let (ptr, len) = wrapped_vec(table, a, depth + 1)?;
    Some((inner.offset + ptr, inner.offset + len))
}

/// Offsets of `bucket_mask`, `ctrl` and `items` of the hashbrown `RawTable` inside a
/// `HashMap`/`HashSet` (`base.table.table` in std, `map.table` for sets), and its `T`.
fn hash_table(table: &TypeTable, agg: &Aggregate, depth: usize) -> Option<(u64, u64, u64, TypeId)> {
    if depth > 6 {
        return None;
    }
    let raw_table = || {
        let inner = member(agg, "table")?;
        let (_, elem) = agg.params.iter().find(|(n, _)| n == "T")?;
        let TypeKind::Aggregate(raw) = &table.strip(inner.ty)?.1.kind else {
            return None;
        };
        let mask = member(raw, "bucket_mask")?;
        let ctrl = member(raw, "ctrl")?;
        let items = member(raw, "items")?;
        let ptr = first_pointer(table, ctrl.ty, 0)?;
        let at = inner.offset;
        Some((
            at + mask.offset,
            at + ctrl.offset + ptr,
            at + items.offset,
            *elem,
        ))
    };
    if let Some(found) = raw_table() {
        return Some(found);
    }
    agg.members.iter().find_map(|m| {
        let TypeKind::Aggregate(a) = &table.strip(m.ty)?.1.kind else {
            return None;
        };
        let (mask, ctrl, items, elem) = hash_table(table, a, depth + 1)?;
        Some((m.offset + mask, m.offset + ctrl, m.offset + items, elem))
    })
}

/// Pointer offset, length offset and element type of a `Vec<T>` value of type `id`.
fn vec_parts(table: &TypeTable, id: TypeId) -> Option<(u64, u64, Option<TypeId>)> {
    match &table.strip(id)?.1.kind {
        TypeKind::Aggregate(agg) => vec_layout(table, agg),
        _ => None,
    }
}

fn vec_layout(table: &TypeTable, agg: &Aggregate) -> Option<(u64, u64, Option<TypeId>)> {
    let len = member(agg, "len")?;
    if !is_word(table, len.ty) {
        return None;
    }
    let buf = member(agg, "buf")?;
    let ptr = first_pointer(table, buf.ty, 0)?;
    let elem = agg.params.iter().find(|(n, _)| n == "T").map(|(_, t)| *t);
    Some((buf.offset + ptr, len.offset, elem))
}

/// Offset of the first raw pointer inside a value of type `id`, depth first. Used for
/// `RawVec { inner: RawVecInner { ptr: Unique { pointer: NonNull { pointer } } } }`; the
/// capacity is a plain or wrapped integer, never a pointer.
fn first_pointer(table: &TypeTable, id: TypeId, depth: usize) -> Option<u64> {
    if depth > 8 {
        return None;
    }
    match &table.strip(id)?.1.kind {
        TypeKind::Pointer { .. } => Some(0),
        TypeKind::Aggregate(a) if a.variants.is_none() => {
            let mut members: Vec<_> = a.members.iter().collect();
            // Prefer members named like pointers, whatever their order in DWARF.
            members.sort_by_key(|m| !(m.name.contains("ptr") || m.name == "pointer"));
            members
                .into_iter()
                .find_map(|m| Some(m.offset + first_pointer(table, m.ty, depth + 1)?))
        }
        _ => None,
    }
}

fn go_shape(table: &TypeTable, name: &str, agg: &Aggregate) -> Shape {
    match name {
        "runtime.eface" => return Shape::GoInterface { eface: true },
        "runtime.iface" => return Shape::GoInterface { eface: false },
        _ => {}
    }
    if name == "string" {
        if let (Some(p), Some(l)) = (member(agg, "str"), member(agg, "len")) {
            return Shape::Text {
                ptr: p.offset,
                len: l.offset,
            };
        }
    }
    if name.starts_with("[]") {
        if let (Some(p), Some(l)) = (member(agg, "array"), member(agg, "len")) {
            if let Some(Some(elem)) = is_pointer(table, p.ty) {
                return Shape::Slice {
                    ptr: p.offset,
                    len: l.offset,
                    elem,
                };
            }
        }
    }
    Shape::Other
}

/// The layout of a Go map header type (`hash<K,V>`), when it is one with typed buckets.
pub(crate) fn go_map_layout(table: &TypeTable, header: TypeId) -> Option<GoMapLayout> {
    let (sid, t) = table.strip(header)?;
    if !t.name.starts_with("hash<") {
        return None;
    }
    let TypeKind::Aggregate(agg) = &t.kind else {
        return None;
    };
    let count = member(agg, "count")?;
    let b = member(agg, "B")?;
    let buckets = member(agg, "buckets")?;
    let bucket = is_pointer(table, buckets.ty)??;
    Some(GoMapLayout {
        header: sid,
        count: count.offset,
        b: b.offset,
        buckets: buckets.offset,
        bucket,
        bucket_size: table.size_of(bucket).unwrap_or(0),
    })
}

/// The trait of a trait-object type name: `collections::Shape` of `&dyn collections::Shape`
/// or `Box<dyn collections::Shape + core::marker::Send, alloc::alloc::Global>`.
pub(crate) fn dyn_trait(name: &str) -> Option<&str> {
    let rest = &name[name.find("dyn ")? + 4..];
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' if depth == 0 => return Some(rest[..i].trim_end()),
            '>' | ')' | ']' => depth -= 1,
            ',' | '+' if depth == 0 => return Some(rest[..i].trim_end()),
            _ => {}
        }
    }
    Some(rest.trim_end())
}
