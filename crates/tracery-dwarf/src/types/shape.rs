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

fn rust_shape(table: &TypeTable, name: &str, agg: &Aggregate) -> Shape {
    // &str, &[T], Box<str>, Box<[T]>: fat pointers.
    if let (Some(p), Some(l)) = (member(agg, "data_ptr"), member(agg, "length")) {
        let Some(target) = is_pointer(table, p.ty) else {
            return Shape::Other;
        };
        if !is_word(table, l.ty) {
            return Shape::Other;
        }
        if name.ends_with("str") || name.ends_with("str>") || name.contains("str,") {
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
        "Vec" => match vec_layout(table, agg) {
            Some((ptr, len, Some(elem))) => Shape::Slice { ptr, len, elem },
            _ => Shape::Other,
        },
        _ => Shape::Other,
    }
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
