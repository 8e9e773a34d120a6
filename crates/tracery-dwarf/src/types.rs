//! A DWARF type model: just what turning captured bytes into values needs.
//!
//! Types are keyed by the `.debug_info` offset of their DIE ([`TypeId`]), so two variables
//! of the same type share one entry and recursive types (linked lists) terminate. A
//! [`TypeTable`] holds the types one capture plan uses; it is filled by the loader in
//! [`load`], which reads a type and everything it contains by value, but the target of a
//! pointer only when the plan follows that pointer.

use std::collections::HashMap;

mod cpp_shape;
mod load;
mod names;
mod rust_btree;
mod shape;

pub(crate) use cpp_shape::{
    deque_per_node, template_base, variant_alternatives, CppShape, DequeAt,
};
pub(crate) use load::{TypeLoader, DW_AT_GO_RUNTIME_TYPE};
pub(crate) use rust_btree::{btree_node, BTreeAt, BTreeNode};
pub(crate) use shape::{dyn_trait, go_map_layout, shape_of, Shape};

/// A type, identified by the `.debug_info` offset of its DIE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeId(pub u64);

/// How a base type's bytes are read (`DW_AT_encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Two's complement signed integer.
    Signed,
    /// Unsigned integer.
    Unsigned,
    /// IEEE float (4 or 8 bytes) or x87 extended (10 or 16).
    Float,
    /// Zero is false.
    Bool,
    /// C `char`, `signed char`.
    SignedChar,
    /// C `unsigned char`.
    UnsignedChar,
    /// A Unicode scalar (Rust `char`, C `char32_t`).
    Utf,
    /// Any other encoding; the value is shown as unsigned.
    Other(u8),
}

/// One type of the model.
#[derive(Clone, Debug)]
pub struct Type {
    /// Display name in the source language ("struct order *", "&str", "[]int").
    pub name: String,
    /// Size in bytes, when DWARF states or implies it.
    pub size: Option<u64>,
    /// How the bytes are laid out.
    pub kind: TypeKind,
}

/// The shape of a type.
#[derive(Clone, Debug)]
pub enum TypeKind {
    /// An integer, float, bool or character.
    Base(Encoding),
    /// A pointer or reference; `target` is `None` for `void *`.
    Pointer {
        target: Option<TypeId>,
        reference: bool,
    },
    /// Struct, union or class, including Rust enums (a variant part).
    Aggregate(Aggregate),
    /// A C-like enumeration.
    Enumeration(Enumeration),
    /// An array; `dims` has one count per dimension, `None` when unknown.
    Array {
        elem: TypeId,
        dims: Vec<Option<u64>>,
    },
    /// typedef, const, volatile, restrict, atomic: the same bytes as `target`.
    Alias { target: Option<TypeId> },
    /// A function (the target of a function pointer).
    Function,
    /// `void`, Rust `()`, or any type of no bytes.
    Void,
    /// A DWARF tag this model does not decode.
    Unsupported { tag: String },
}

/// Struct, union or class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregateKind {
    /// `struct`: members at their offsets.
    Struct,
    /// `union`: every member at offset 0.
    Union,
    /// C++ `class`.
    Class,
}

/// The members of a struct-like type.
#[derive(Clone, Debug)]
pub struct Aggregate {
    /// Struct, union or class.
    pub kind: AggregateKind,
    /// Data members in declaration order.
    pub members: Vec<Member>,
    /// A Rust enum's variants (`DW_TAG_variant_part`).
    pub variants: Option<VariantPart>,
    /// Template type parameters (`T` of `Vec<T>`).
    pub params: Vec<(String, TypeId)>,
    /// Go's `DW_AT_go_kind`, when present.
    pub go_kind: Option<u8>,
}

/// One data member.
#[derive(Clone, Debug)]
pub struct Member {
    /// The member's name (`__0` for tuple fields, `<base>` for a C++ base class).
    pub name: String,
    /// The member's type.
    pub ty: TypeId,
    /// Byte offset from the start of the containing value.
    pub offset: u64,
    /// Set for bit-fields.
    pub bits: Option<BitField>,
    /// Compiler-generated (`DW_AT_artificial`).
    pub artificial: bool,
}

/// Position of a bit-field inside the bytes that start at its member offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitField {
    /// Bits from the least significant bit of the byte at the member offset.
    pub bit_offset: u64,
    /// Width in bits.
    pub bit_size: u64,
}

/// A Rust enum's variants and how the active one is found.
#[derive(Clone, Debug)]
pub struct VariantPart {
    /// The discriminant (tag or niche); `None` for a single-variant enum.
    pub discr: Option<Member>,
    /// Every variant, in DWARF order.
    pub variants: Vec<Variant>,
}

/// One variant: the member carrying its fields, and the discriminant value selecting it
/// (`None` for the default variant, the one a niche encoding does not name).
#[derive(Clone, Debug)]
pub struct Variant {
    /// The discriminant value that selects this variant; `None` for the default one.
    pub discr_value: Option<u64>,
    /// The member whose type holds the variant's fields; its name is the variant's.
    pub member: Member,
}

/// The enumerators of a C-like enum.
#[derive(Clone, Debug)]
pub struct Enumeration {
    /// Whether the underlying integer is signed.
    pub signed: bool,
    /// Name and value of each enumerator.
    pub enumerators: Vec<(String, i128)>,
}

/// The types one capture plan refers to.
#[derive(Clone, Debug, Default)]
pub struct TypeTable {
    types: HashMap<TypeId, Type>,
}

impl TypeTable {
    /// The type with this id, when it was loaded.
    pub fn get(&self, id: TypeId) -> Option<&Type> {
        self.types.get(&id)
    }

    /// Follows typedefs and qualifiers to the type that says how to read the bytes.
    pub fn strip(&self, mut id: TypeId) -> Option<(TypeId, &Type)> {
        for _ in 0..32 {
            let t = self.types.get(&id)?;
            match t.kind {
                TypeKind::Alias { target: Some(next) } => id = next,
                _ => return Some((id, t)),
            }
        }
        None
    }

    /// Size in bytes of a type, through aliases.
    pub fn size_of(&self, id: TypeId) -> Option<u64> {
        let t = self.types.get(&id)?;
        t.size.or_else(|| match t.kind {
            TypeKind::Alias { target: Some(next) } => self.size_of(next),
            TypeKind::Alias { target: None } | TypeKind::Void => Some(0),
            _ => None,
        })
    }

    /// Offset of member `name` of aggregate `ty`, through aliases.
    pub fn member_offset(&self, ty: TypeId, name: &str) -> Option<u64> {
        match &self.strip(ty)?.1.kind {
            TypeKind::Aggregate(agg) => agg
                .members
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.offset),
            _ => None,
        }
    }

    /// Display name of a type ("?" when it was not loaded).
    pub fn name_of(&self, id: TypeId) -> &str {
        self.types.get(&id).map_or("?", |t| t.name.as_str())
    }

    pub(crate) fn contains(&self, id: TypeId) -> bool {
        self.types.contains_key(&id)
    }

    pub(crate) fn insert(&mut self, id: TypeId, t: Type) {
        self.types.insert(id, t);
    }
}
