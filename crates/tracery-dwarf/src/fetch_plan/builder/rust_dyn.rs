//! Rust trait objects (`&dyn T`, `Box<dyn T>`): the concrete type behind the vtable
//! pointer, and its value behind the data pointer.
//!
//! rustc describes each vtable it emits as a DWARF variable named
//! `<Concrete as Trait>::{vtable}` at the vtable's address, whose type (`{vtable_type}`)
//! has `DW_AT_containing_type` pointing at `Concrete`. The plan lists the vtables of the
//! trait in scope; at the hit the vtable word picks one. With one candidate the data is
//! copied as that type (its pointers followed too); with several, a copy as long as the
//! vtable's `size` word, capped at the largest candidate.

use std::collections::HashMap;

use gimli::{AttributeValue, Operation};
use tracery_common::{FetchOp, OpKind, MAX_COPY};

use super::{Builder, Follow, Payload, RegionId};
use crate::{
    render::SourceLanguage,
    scope::{DieRef, Units},
    types::{dyn_trait, TypeId},
};

/// Bytes of a vtable read for the size word: `drop_in_place`, then `size`.
const VTABLE_HEAD: u64 = 16;

/// One vtable rustc emitted.
#[derive(Clone, Debug)]
struct Vtable {
    /// Link-time address.
    addr: u64,
    concrete: String,
    trait_name: String,
    ty: Option<TypeId>,
}

/// Every vtable of the binary (read once per plan, when a trait object is in scope), and
/// the ones the plan's trait objects may point at.
#[derive(Default)]
pub(crate) struct RustDyn {
    index: Option<Vec<Vtable>>,
    /// Link-time vtable address: concrete type name and type.
    pub seen: HashMap<u64, (String, Option<TypeId>)>,
}

/// `("collections::Circle", "collections::Shape")` from
/// `<collections::Circle as collections::Shape>::{vtable}`.
fn split_vtable_name(name: &str) -> Option<(&str, &str)> {
    let inner = name.strip_prefix('<')?.strip_suffix(">::{vtable}")?;
    let mut depth = 0i32;
    for (i, c) in inner.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ' ' if depth == 0 && inner[i..].starts_with(" as ") => {
                return Some((&inner[..i], &inner[i + 4..]));
            }
            _ => {}
        }
    }
    None
}

fn read_vtables(units: &Units<'_>) -> Vec<Vtable> {
    let mut out = Vec::new();
    for u in 0..units.len() {
        let Ok(info) = units.get(u) else { continue };
        if SourceLanguage::from_dwarf(info.lang) != SourceLanguage::Rust {
            continue;
        }
        let mut cursor = info.unit.entries();
        while let Ok(Some(e)) = cursor.next_dfs() {
            if e.tag() != gimli::DW_TAG_variable {
                continue;
            }
            let Some(name) = units.name(u, e) else {
                continue;
            };
            let Some((concrete, trait_name)) = split_vtable_name(&name) else {
                continue;
            };
            let addr = match e.attr_value(gimli::DW_AT_location) {
                Some(AttributeValue::Exprloc(x)) => {
                    match x.operations(info.unit.encoding()).next() {
                        Ok(Some(Operation::Address { address })) => Some(address),
                        Ok(Some(Operation::AddressIndex { index })) => {
                            units.dwarf.address(&info.unit, index).ok()
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            let Some(addr) = addr else { continue };
            let ty = e
                .attr_value(gimli::DW_AT_type)
                .and_then(|v| units.follow(u, v))
                .and_then(|die| {
                    let vt = units.entry(die).ok()?;
                    let c = units.follow(die.unit, vt.attr_value(gimli::DW_AT_containing_type)?)?;
                    Some(TypeId(units.global(DieRef {
                        unit: c.unit,
                        offset: c.offset,
                    })))
                });
            out.push(Vtable {
                addr,
                concrete: concrete.to_string(),
                trait_name: trait_name.to_string(),
                ty,
            });
        }
    }
    out
}

impl Builder<'_, '_> {
    /// Plans the value behind the trait object at `off` in region `r` (type `name`), whose
    /// data and vtable pointers lie at `off + data` and `off + vtable`.
    pub(super) fn follow_dyn(
        &mut self,
        r: RegionId,
        off: u64,
        name: &str,
        (data, vtable): (u64, u64),
        depth: u8,
    ) {
        let Some(trait_name) = dyn_trait(name) else {
            return;
        };
        if self.rust_dyn.index.is_none() {
            self.rust_dyn.index = Some(read_vtables(self.loader.units()));
        }
        let candidates: Vec<Vtable> = self
            .rust_dyn
            .index
            .iter()
            .flatten()
            .filter(|v| v.trait_name == trait_name)
            .cloned()
            .collect();
        let mut sizes = Vec::new();
        for v in &candidates {
            if let Some(ty) = v.ty {
                self.loader.load(ty);
                sizes.push((ty, self.table().size_of(ty)));
            }
            self.rust_dyn
                .seen
                .insert(v.addr, (v.concrete.clone(), v.ty));
        }
        let at = off + data;
        match sizes.as_slice() {
            [] => {
                let why = format!("no vtable of {trait_name} described in DWARF");
                self.follows.insert((r, at), Follow::Skipped(why));
            }
            // Zero-sized: nothing to read.
            [(_, Some(0))] => {}
            [(ty, Some(size))] => self.follow_fixed(r, at, Some(*ty), *size, depth),
            _ => {
                let most = sizes.iter().filter_map(|(_, s)| *s).max().unwrap_or(0);
                self.follow_sized_by_vtable(r, at, off + vtable, most, depth);
            }
        }
    }

    /// Copies as many bytes at the pointer at (`r`, `data`) as the vtable at (`r`, `vtable`)
    /// says the value has, at most `most`.
    fn follow_sized_by_vtable(
        &mut self,
        r: RegionId,
        data: u64,
        vtable: u64,
        most: u64,
        depth: u8,
    ) {
        let cap = most.min(MAX_COPY as u64);
        if cap == 0 {
            return;
        }
        let Some(from) = self.pointer_source(r, vtable, depth, true) else {
            return;
        };
        let copy = FetchOp {
            kind: OpKind::Copy as u8,
            ..FetchOp::EMPTY
        };
        let Some(vop) = self.push_follow(r, vtable, from, VTABLE_HEAD, copy) else {
            return;
        };
        let id = self.new_region(None, VTABLE_HEAD, VTABLE_HEAD, vop, Payload::Fixed, depth);
        self.follows.insert((r, vtable), Follow::Region(id));
        let Some(from) = self.pointer_source(r, data, depth, true) else {
            return;
        };
        let sized = FetchOp {
            kind: OpKind::Copy as u8,
            flags: FetchOp::FLAG_DYNAMIC_LEN,
            len_op: vop as u8,
            len_slot: self.ops[vop].out + 8,
            len_scale: 1,
            ..FetchOp::EMPTY
        };
        let Some(op) = self.push_follow(r, data, from, cap, sized) else {
            return;
        };
        let id = self.new_region(None, cap, cap, op, Payload::Text, depth);
        self.follows.insert((r, data), Follow::Region(id));
    }
}
