//! Reading DWARF type DIEs into the [`TypeTable`].
//!
//! A type is loaded with everything it holds by value (members, elements, alias targets);
//! a pointer's target is loaded only when a plan follows it ([`TypeLoader::load`] again).
//! A DIE the loader cannot read becomes [`TypeKind::Unsupported`], never an error: the
//! variable then decodes as unavailable instead of failing the whole plan.

use std::collections::HashMap;

use gimli::AttributeValue;

use super::{
    Aggregate, AggregateKind, BitField, Encoding, Enumeration, Member, Type, TypeId, TypeKind,
    TypeTable, Variant, VariantPart,
};
use crate::{
    binary::Reader,
    render::SourceLanguage,
    scope::{DieRef, Units},
};

type Entry = gimli::DebuggingInformationEntry<Reader>;

/// `DW_AT_go_kind`: Go's reflect.Kind of a type.
pub(crate) const DW_AT_GO_KIND: gimli::DwAt = gimli::DwAt(0x2900);
/// `DW_AT_go_runtime_type`: offset of the type's runtime descriptor from `runtime.types`.
pub(crate) const DW_AT_GO_RUNTIME_TYPE: gimli::DwAt = gimli::DwAt(0x2904);

/// Loads types on demand for one plan.
pub(crate) struct TypeLoader<'u, 'a> {
    pub(super) units: &'u Units<'a>,
    table: TypeTable,
    pub(super) names: HashMap<TypeId, String>,
}

impl<'u, 'a> TypeLoader<'u, 'a> {
    pub fn new(units: &'u Units<'a>) -> Self {
        Self {
            units,
            table: TypeTable::default(),
            names: HashMap::new(),
        }
    }

    /// The DWARF units types are read from.
    pub fn units(&self) -> &'u Units<'a> {
        self.units
    }

    /// The types loaded so far.
    pub fn table(&self) -> &TypeTable {
        &self.table
    }

    /// Adds a type DWARF does not describe (a container's node, built from its element
    /// type); `id` must not be a DIE offset.
    pub fn define(&mut self, id: TypeId, t: Type) {
        self.table.insert(id, t);
    }

    /// Hands the table over to the plan.
    pub fn into_table(self) -> TypeTable {
        self.table
    }

    /// The type id of a DIE.
    pub fn id_of(&self, die: DieRef) -> TypeId {
        TypeId(self.units.global(die))
    }

    /// The `DW_AT_type` of an entry, as a type id.
    pub fn type_attr(&self, unit: usize, e: &Entry) -> Option<TypeId> {
        let die = self.units.follow(unit, e.attr_value(gimli::DW_AT_type)?)?;
        Some(self.id_of(die))
    }

    /// Makes sure `id` and everything it holds by value are in the table.
    pub fn load(&mut self, id: TypeId) {
        if self.table.contains(id) {
            return;
        }
        // A placeholder first, so a type that (wrongly) contains itself terminates.
        self.table.insert(
            id,
            Type {
                name: "?".into(),
                size: None,
                kind: TypeKind::Unsupported {
                    tag: "recursive type".into(),
                },
            },
        );
        let t = match self.units.at_offset(id.0) {
            Some(die) => self.read(die).unwrap_or_else(|e| Type {
                name: "?".into(),
                size: None,
                kind: TypeKind::Unsupported {
                    tag: format!("unreadable DWARF: {e}"),
                },
            }),
            None => Type {
                name: "?".into(),
                size: None,
                kind: TypeKind::Unsupported {
                    tag: "type outside .debug_info".into(),
                },
            },
        };
        self.table.insert(id, t);
        // By-value dependencies.
        let deps: Vec<TypeId> = match &self.table.get(id).map(|t| t.kind.clone()) {
            Some(TypeKind::Aggregate(a)) => a
                .members
                .iter()
                .map(|m| m.ty)
                .chain(a.variants.iter().flat_map(|v| {
                    v.discr
                        .iter()
                        .map(|d| d.ty)
                        .chain(v.variants.iter().map(|x| x.member.ty))
                        .collect::<Vec<_>>()
                }))
                .collect(),
            Some(TypeKind::Array { elem, .. }) => vec![*elem],
            Some(TypeKind::Alias { target: Some(t) }) => vec![*t],
            _ => Vec::new(),
        };
        for d in deps {
            self.load(d);
        }
        // Sizes that DWARF leaves implicit (arrays without DW_AT_byte_size).
        if let Some(t) = self.table.get(id) {
            if t.size.is_none() {
                if let TypeKind::Array { elem, dims } = &t.kind {
                    let n: Option<u64> =
                        dims.iter().try_fold(1u64, |acc, d| acc.checked_mul((*d)?));
                    let size = n.and_then(|n| n.checked_mul(self.table.size_of(*elem)?));
                    let mut t = t.clone();
                    t.size = size;
                    self.table.insert(id, t);
                }
            }
        }
    }

    pub(super) fn lang(&self, unit: usize) -> SourceLanguage {
        SourceLanguage::from_dwarf(self.units.get(unit).ok().and_then(|u| u.lang))
    }

    fn read(&mut self, die: DieRef) -> Result<Type, gimli::Error> {
        let e = self.units.entry(die)?;
        let size = e
            .attr_value(gimli::DW_AT_byte_size)
            .and_then(|v| v.udata_value());
        let name = self.name_of(TypeId(self.units.global(die)));
        let unit = die.unit;
        let kind = match e.tag() {
            gimli::DW_TAG_base_type => {
                let enc = match e.attr_value(gimli::DW_AT_encoding) {
                    Some(AttributeValue::Encoding(enc)) => encoding(enc),
                    _ => Encoding::Other(0),
                };
                if size == Some(0) {
                    TypeKind::Void
                } else {
                    TypeKind::Base(enc)
                }
            }
            gimli::DW_TAG_unspecified_type => TypeKind::Void,
            gimli::DW_TAG_pointer_type
            | gimli::DW_TAG_reference_type
            | gimli::DW_TAG_rvalue_reference_type => TypeKind::Pointer {
                target: self.type_attr(unit, &e),
                reference: e.tag() != gimli::DW_TAG_pointer_type,
            },
            gimli::DW_TAG_ptr_to_member_type => TypeKind::Pointer {
                target: None,
                reference: false,
            },
            gimli::DW_TAG_structure_type | gimli::DW_TAG_class_type | gimli::DW_TAG_union_type => {
                if e.attr_value(gimli::DW_AT_declaration).is_some() {
                    return Ok(Type {
                        name,
                        size: None,
                        kind: TypeKind::Unsupported {
                            tag: "incomplete type (declaration only)".into(),
                        },
                    });
                }
                let kind = match e.tag() {
                    gimli::DW_TAG_union_type => AggregateKind::Union,
                    gimli::DW_TAG_class_type => AggregateKind::Class,
                    _ => AggregateKind::Struct,
                };
                TypeKind::Aggregate(self.aggregate(die, &e, kind)?)
            }
            gimli::DW_TAG_enumeration_type => TypeKind::Enumeration(self.enumeration(die, &e)?),
            gimli::DW_TAG_array_type => self.array(die, &e)?,
            gimli::DW_TAG_typedef
            | gimli::DW_TAG_const_type
            | gimli::DW_TAG_volatile_type
            | gimli::DW_TAG_restrict_type
            | gimli::DW_TAG_atomic_type
            | gimli::DW_TAG_immutable_type
            | gimli::DW_TAG_packed_type
            | gimli::DW_TAG_shared_type => TypeKind::Alias {
                target: self.type_attr(unit, &e),
            },
            gimli::DW_TAG_subroutine_type => TypeKind::Function,
            tag => TypeKind::Unsupported {
                tag: tag.static_string().unwrap_or("unknown tag").to_string(),
            },
        };
        let size = match kind {
            TypeKind::Pointer { .. } => size.or(Some(8)),
            TypeKind::Alias { .. } => None,
            _ => size,
        };
        Ok(Type { name, size, kind })
    }

    pub(super) fn children(&self, die: DieRef) -> Result<Vec<(DieRef, Entry)>, gimli::Error> {
        let info = self.units.get(die.unit)?;
        let mut tree = info.unit.entries_tree(Some(die.offset))?;
        let root = tree.root()?;
        let mut out = Vec::new();
        let mut iter = root.children();
        while let Some(child) = iter.next()? {
            let e = child.entry().clone();
            out.push((
                DieRef {
                    unit: die.unit,
                    offset: e.offset(),
                },
                e,
            ));
        }
        Ok(out)
    }

    fn aggregate(
        &mut self,
        die: DieRef,
        e: &Entry,
        kind: AggregateKind,
    ) -> Result<Aggregate, gimli::Error> {
        let go_kind = e
            .attr_value(DW_AT_GO_KIND)
            .and_then(|v| v.udata_value())
            .map(|k| k as u8);
        let mut agg = Aggregate {
            kind,
            members: Vec::new(),
            variants: None,
            params: Vec::new(),
            go_kind,
        };
        for (child, ce) in self.children(die)? {
            match ce.tag() {
                gimli::DW_TAG_member | gimli::DW_TAG_inheritance => {
                    // Static members have no storage in the value.
                    if ce.attr_value(gimli::DW_AT_external).is_some()
                        || ce.attr_value(gimli::DW_AT_declaration).is_some()
                    {
                        continue;
                    }
                    if let Some(m) = self.member(child.unit, &ce) {
                        agg.members.push(m);
                    }
                }
                gimli::DW_TAG_variant_part => {
                    agg.variants = Some(self.variant_part(child, &ce)?);
                }
                gimli::DW_TAG_template_type_parameter => {
                    if let Some(t) = self.type_attr(child.unit, &ce) {
                        let n = self.units.name(child.unit, &ce).unwrap_or_default();
                        agg.params.push((n, t));
                    }
                }
                _ => {}
            }
        }
        Ok(agg)
    }

    fn member(&self, unit: usize, e: &Entry) -> Option<Member> {
        let ty = self.type_attr(unit, e)?;
        let name = match self.units.name(unit, e) {
            Some(n) => n,
            None if e.tag() == gimli::DW_TAG_inheritance => "<base>".into(),
            None => String::new(),
        };
        let mut offset = match e.attr_value(gimli::DW_AT_data_member_location) {
            Some(AttributeValue::Exprloc(expr)) => plus_uconst(expr, self.encoding(unit)?)?,
            Some(v) => v.udata_value()?,
            None => 0,
        };
        let bit_size = e
            .attr_value(gimli::DW_AT_bit_size)
            .and_then(|v| v.udata_value());
        let bits = match bit_size {
            None => None,
            Some(bit_size) => {
                if let Some(dbo) = e
                    .attr_value(gimli::DW_AT_data_bit_offset)
                    .and_then(|v| v.udata_value())
                {
                    offset += dbo / 8;
                    Some(BitField {
                        bit_offset: dbo % 8,
                        bit_size,
                    })
                } else if let Some(bo) = e
                    .attr_value(gimli::DW_AT_bit_offset)
                    .and_then(|v| v.udata_value())
                {
                    // DWARF 2/3: counted from the most significant bit of a storage unit of
                    // DW_AT_byte_size bytes; convert to little-endian bit numbering.
                    let storage = e.attr_value(gimli::DW_AT_byte_size)?.udata_value()? * 8;
                    Some(BitField {
                        bit_offset: storage.checked_sub(bo + bit_size)?,
                        bit_size,
                    })
                } else {
                    Some(BitField {
                        bit_offset: 0,
                        bit_size,
                    })
                }
            }
        };
        Some(Member {
            name,
            ty,
            offset,
            bits,
            artificial: e.attr_value(gimli::DW_AT_artificial).is_some(),
        })
    }

    fn encoding(&self, unit: usize) -> Option<gimli::Encoding> {
        Some(self.units.get(unit).ok()?.unit.encoding())
    }

    fn variant_part(&mut self, die: DieRef, e: &Entry) -> Result<VariantPart, gimli::Error> {
        let discr_die = e
            .attr_value(gimli::DW_AT_discr)
            .and_then(|v| self.units.follow(die.unit, v));
        let mut part = VariantPart {
            discr: None,
            variants: Vec::new(),
        };
        for (child, ce) in self.children(die)? {
            match ce.tag() {
                gimli::DW_TAG_member if Some(child) == discr_die => {
                    part.discr = self.member(child.unit, &ce);
                }
                gimli::DW_TAG_variant => {
                    // A value this model cannot represent never matches, rather than
                    // turning the variant into the default one.
                    let discr_value = ce
                        .attr_value(gimli::DW_AT_discr_value)
                        .map(|v| discr_u64(v).unwrap_or(u64::MAX));
                    for (m, me) in self.children(child)? {
                        if me.tag() == gimli::DW_TAG_member {
                            if let Some(member) = self.member(m.unit, &me) {
                                part.variants.push(Variant {
                                    discr_value,
                                    member,
                                });
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(part)
    }

    fn enumeration(&mut self, die: DieRef, e: &Entry) -> Result<Enumeration, gimli::Error> {
        let signed = match self.type_attr(die.unit, e) {
            Some(t) => {
                self.load(t);
                matches!(
                    self.table.strip(t).map(|(_, t)| &t.kind),
                    Some(TypeKind::Base(Encoding::Signed | Encoding::SignedChar))
                )
            }
            // C enums without a stated underlying type are `int` unless a value is negative.
            None => true,
        };
        let mut enumerators = Vec::new();
        for (child, ce) in self.children(die)? {
            if ce.tag() != gimli::DW_TAG_enumerator {
                continue;
            }
            let Some(name) = self.units.name(child.unit, &ce) else {
                continue;
            };
            let value = match ce.attr_value(gimli::DW_AT_const_value) {
                Some(AttributeValue::Sdata(v)) => i128::from(v),
                Some(AttributeValue::Udata(v)) => i128::from(v),
                Some(AttributeValue::Data1(v)) => {
                    i128::from(if signed { v as i8 as i64 } else { v as i64 })
                }
                Some(AttributeValue::Data2(v)) => {
                    i128::from(if signed { v as i16 as i64 } else { v as i64 })
                }
                Some(AttributeValue::Data4(v)) => {
                    i128::from(if signed { v as i32 as i64 } else { v as i64 })
                }
                Some(AttributeValue::Data8(v)) => {
                    if signed {
                        i128::from(v as i64)
                    } else {
                        i128::from(v)
                    }
                }
                _ => continue,
            };
            enumerators.push((name, value));
        }
        Ok(Enumeration {
            signed,
            enumerators,
        })
    }

    pub(super) fn array(&mut self, die: DieRef, e: &Entry) -> Result<TypeKind, gimli::Error> {
        let Some(elem) = self.type_attr(die.unit, e) else {
            return Ok(TypeKind::Unsupported {
                tag: "array without element type".into(),
            });
        };
        let mut dims = Vec::new();
        for (_, ce) in self.children(die)? {
            if ce.tag() != gimli::DW_TAG_subrange_type && ce.tag() != gimli::DW_TAG_enumeration_type
            {
                continue;
            }
            let count =
                if let Some(c) = ce.attr_value(gimli::DW_AT_count).and_then(|v| constant(&v)) {
                    Some(c)
                } else if let Some(ub) = ce.attr_value(gimli::DW_AT_upper_bound) {
                    let lb = ce
                        .attr_value(gimli::DW_AT_lower_bound)
                        .and_then(|v| constant(&v))
                        .unwrap_or(0);
                    // An upper bound of -1 (all ones) is how GCC writes a zero-length array.
                    constant(&ub).map(|u| {
                        if u == u64::MAX {
                            0
                        } else {
                            u + 1 - lb.min(u + 1)
                        }
                    })
                } else {
                    None
                };
            dims.push(count);
        }
        if dims.is_empty() {
            dims.push(None);
        }
        Ok(TypeKind::Array { elem, dims })
    }
}

fn encoding(enc: gimli::DwAte) -> Encoding {
    match enc {
        gimli::DW_ATE_signed => Encoding::Signed,
        gimli::DW_ATE_unsigned => Encoding::Unsigned,
        gimli::DW_ATE_float => Encoding::Float,
        gimli::DW_ATE_boolean => Encoding::Bool,
        gimli::DW_ATE_signed_char => Encoding::SignedChar,
        gimli::DW_ATE_unsigned_char => Encoding::UnsignedChar,
        gimli::DW_ATE_UTF => Encoding::Utf,
        other => Encoding::Other(other.0),
    }
}

/// A constant attribute as `u64` (counts and bounds).
fn constant(v: &AttributeValue<Reader>) -> Option<u64> {
    match *v {
        AttributeValue::Sdata(s) => Some(s as u64),
        _ => v.udata_value(),
    }
}

/// `DW_AT_discr_value` as the raw bit pattern of the discriminant.
fn discr_u64(v: AttributeValue<Reader>) -> Option<u64> {
    match v {
        AttributeValue::Data1(x) => Some(u64::from(x)),
        AttributeValue::Data2(x) => Some(u64::from(x)),
        AttributeValue::Data4(x) => Some(u64::from(x)),
        AttributeValue::Data8(x) => Some(x),
        AttributeValue::Udata(x) => Some(x),
        AttributeValue::Sdata(x) => Some(x as u64),
        _ => None,
    }
}

/// DWARF 2 member offsets are `DW_OP_plus_uconst N` expressions.
fn plus_uconst(expr: gimli::Expression<Reader>, encoding: gimli::Encoding) -> Option<u64> {
    let mut ops = expr.operations(encoding);
    match ops.next().ok()? {
        Some(gimli::Operation::PlusConstant { value }) => Some(value),
        Some(gimli::Operation::UnsignedConstant { value }) => Some(value),
        _ => None,
    }
}
