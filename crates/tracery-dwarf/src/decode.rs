//! Turning one hit's captured bytes into typed values.
//!
//! The plan says which op wrote which bytes of which value ([`crate::fetch_plan`]); the
//! kernel's per-op status says whether it did. Bytes an op did not write are holes, and a
//! value overlapping a hole decodes to the hole's reason: the scratch buffer is reused
//! between hits, so unwritten bytes are never read as data.

mod btree;
mod collections;
mod cpp_std;
mod go_values;
mod rust_dyn;
mod rust_std;
mod scalar;
mod text;

use tracery_common::{regs::pt, BaseKind, HitHeader, OpStatus};

use scalar::{base, signed, unsigned};

use crate::{
    binary::Binary,
    fetch_plan::{CapturePlan, Follow, Part, Payload, RegionId, Root},
    render::SourceLanguage,
    types::{shape_of, Aggregate, Encoding, Shape, TypeId, TypeKind, VariantPart},
    value::{Value, Variable},
};

/// Nesting bound for decoding, against malformed type graphs.
const MAX_NEST: usize = 48;

/// Decodes one hit. `data` is everything after the [`HitHeader`] (data area, then stack).
///
/// Never fails: what cannot be decoded becomes [`Value::Unavailable`] or
/// [`Value::OptimizedOut`] in place.
pub fn decode(
    _binary: &Binary,
    plan: &CapturePlan,
    header: &HitHeader,
    data: &[u8],
) -> Vec<Variable> {
    let data_len = (header.data_len as usize).min(data.len());
    let d = Decoder {
        plan,
        header,
        data: &data[..data_len],
        bias: header.regs[pt::RIP as usize].wrapping_sub(plan.address.0),
    };
    plan.vars
        .iter()
        .map(|v| Variable {
            name: v.name.clone(),
            kind: v.kind,
            type_name: v.type_name.clone(),
            value: match &v.root {
                Root::Value(val) => val.clone(),
                Root::Region(r, ty) => {
                    let bytes = d.region(*r);
                    d.value(*r, &bytes, 0, *ty, 0)
                }
            },
            frame: v.frame.clone(),
        })
        .collect()
}

/// `map[string][]int` from the runtime's header type name `hash<string,[]int>`.
fn go_map_name(header: &str) -> String {
    let inner = header
        .strip_prefix("hash<")
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(header);
    // The key type never holds a comma at top level in these names except inside brackets.
    let mut depth = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '<' | '[' | '(' | '{' => depth += 1,
            '>' | ']' | ')' | '}' => depth -= 1,
            ',' if depth == 0 => return format!("map[{}]{}", &inner[..i], &inner[i + 1..]),
            _ => {}
        }
    }
    format!("map<{inner}>")
}

/// A region's bytes as captured, with the ranges that were not.
struct Bytes {
    buf: Vec<u8>,
    holes: Vec<(u64, u64, Value)>,
}

impl Bytes {
    fn read(&self, off: u64, len: u64) -> Result<&[u8], Value> {
        for (at, hlen, why) in &self.holes {
            if off < at + hlen && *at < off + len {
                return Err(why.clone());
            }
        }
        self.buf
            .get(off as usize..(off + len) as usize)
            .ok_or_else(|| Value::unavailable("value outside the captured bytes"))
    }

    fn word(&self, off: u64) -> Result<u64, Value> {
        let b = self.read(off, 8)?;
        let b = <[u8; 8]>::try_from(b)
            .map_err(|_| Value::unavailable("value outside the captured bytes"))?;
        Ok(u64::from_le_bytes(b))
    }
}

struct Decoder<'p> {
    plan: &'p CapturePlan,
    header: &'p HitHeader,
    data: &'p [u8],
    /// Load bias of the process, from the hit's instruction pointer.
    bias: u64,
}

impl Decoder<'_> {
    fn status(&self, op: usize) -> OpStatus {
        self.header
            .results
            .get(op)
            .map_or(OpStatus::NotRun, |r| OpStatus::from_u8(r.status))
    }

    /// Why op `op` wrote nothing, for the user.
    fn failure(&self, op: usize) -> Value {
        let fop = &self.plan.config.ops[op];
        match self.status(op) {
            OpStatus::Fault => {
                let addr = if fop.base == BaseKind::Reg as u8 {
                    self.header
                        .regs
                        .get(fop.reg as usize)
                        .map(|r| r.wrapping_add(fop.offset as u64))
                } else if fop.base == BaseKind::PtrAt as u8 {
                    // A BTree op's offset is its node layout, not part of the address.
                    let offset = if fop.kind == tracery_common::OpKind::BTree as u8 {
                        0
                    } else {
                        fop.offset as u64
                    };
                    self.slot(fop.base_slot as usize)
                        .map(|p| p.wrapping_add(offset))
                } else {
                    Some((fop.offset as u64).wrapping_add(self.bias))
                };
                match addr {
                    Some(a) => Value::unavailable(format!("unreadable memory at {a:#x}")),
                    None => Value::unavailable("unreadable memory"),
                }
            }
            OpStatus::Null => Value::Null,
            OpStatus::BaseFailed => {
                Value::unavailable("the pointer or length it depends on was not captured")
            }
            OpStatus::OutOfBounds => Value::unavailable("capture budget exhausted"),
            OpStatus::NotRun | OpStatus::Ok => Value::unavailable("not captured by the kernel"),
        }
    }

    fn slot(&self, off: usize) -> Option<u64> {
        let b = self.data.get(off..off + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// Assembles a region's bytes from the op outputs.
    fn region(&self, r: RegionId) -> Bytes {
        let region = &self.plan.regions[r];
        let dynamic = region.payload != Payload::Fixed;
        let mut len = region.len;
        if dynamic {
            // Payloads are as long as what the op wrote.
            len = match region.parts.first() {
                Some(Part::Op { op, .. }) if self.status(*op) == OpStatus::Ok => {
                    u64::from(self.header.results[*op].len)
                }
                _ => 0,
            };
        }
        let mut b = Bytes {
            buf: vec![0; len as usize],
            holes: Vec::new(),
        };
        for part in &region.parts {
            match part {
                Part::Op { at, len: plen, op } => {
                    let want = if dynamic { len } else { *plen };
                    if self.status(*op) != OpStatus::Ok {
                        b.holes.push((*at, *plen, self.failure(*op)));
                        continue;
                    }
                    let wrote = u64::from(self.header.results[*op].len).min(want);
                    let out = self.plan.config.ops[*op].out as usize;
                    match self.data.get(out..out + wrote as usize) {
                        Some(src) => {
                            b.buf[*at as usize..(*at + wrote) as usize].copy_from_slice(src)
                        }
                        None => b
                            .holes
                            .push((*at, want, Value::unavailable("record truncated"))),
                    }
                    if wrote < want {
                        b.holes.push((
                            *at + wrote,
                            want - wrote,
                            Value::unavailable("not captured by the kernel"),
                        ));
                    }
                }
                Part::Const { at, bytes } => {
                    let start = (*at as usize).min(b.buf.len());
                    let end = (start + bytes.len()).min(b.buf.len());
                    b.buf[start..end].copy_from_slice(&bytes[..end - start]);
                }
                Part::Missing { at, len, why } => b.holes.push((*at, *len, why.clone())),
            }
        }
        b
    }

    fn value(&self, r: RegionId, b: &Bytes, off: u64, ty: TypeId, nest: usize) -> Value {
        if nest > MAX_NEST {
            return Value::unavailable("value nested too deeply");
        }
        let types = &self.plan.types;
        let Some((sid, t)) = types.strip(ty) else {
            return Value::unavailable("type not loaded");
        };
        if self.plan.lang == SourceLanguage::Go {
            if let Some(v) = self.go_value(r, b, off, t, nest) {
                return v;
            }
        }
        match shape_of(types, sid, self.plan.lang) {
            Shape::Text { ptr, len } => {
                let text = self.text(r, b, off, ptr, len);
                if self.plan.lang == SourceLanguage::Cpp && !matches!(text, Value::Str { .. }) {
                    return self.cpp_short_string(r, b, off, [ptr, len]).unwrap_or(text);
                }
                return text;
            }
            Shape::Slice { ptr, len, elem } => return self.slice(r, b, off, ptr, len, elem, nest),
            Shape::Ring {
                ptr,
                cap,
                head,
                len,
                elem,
            } => {
                let at = text::RingAt {
                    ptr,
                    cap,
                    head,
                    len,
                    elem,
                };
                return self.ring(r, b, off, at, nest);
            }
            Shape::GoInterface { eface } => return self.interface(r, b, off, eface, nest),
            Shape::HashTable {
                mask,
                ctrl,
                items,
                elem,
                set,
            } => {
                let at = collections::TableAt {
                    mask,
                    ctrl,
                    items,
                    elem,
                    set,
                };
                return self.hash_table(r, b, off, &t.name, at, nest);
            }
            Shape::Cpp(cpp) => {
                if let Some(v) = self.cpp(r, b, off, &t.name, cpp, nest) {
                    return v;
                }
            }
            Shape::BTree(at) => return self.btree(r, b, off, &t.name, at, nest),
            Shape::DynTrait { data, vtable } => {
                return self.dyn_trait(r, b, off, (data, vtable), nest)
            }
            Shape::Other => {}
        }
        let size = t.size.unwrap_or(0);
        match &t.kind {
            TypeKind::Base(enc) => match b.read(off, size) {
                Ok(bytes) => base(*enc, bytes),
                Err(hole) => hole,
            },
            TypeKind::Enumeration(e) => match b.read(off, size) {
                Ok(bytes) => {
                    let v = if e.signed {
                        signed(bytes)
                    } else {
                        unsigned(bytes) as i128
                    };
                    match e.enumerators.iter().find(|(_, x)| *x == v) {
                        Some((n, _)) => Value::Enum {
                            name: t.name.clone(),
                            variant: n.clone(),
                            fields: Vec::new(),
                        },
                        None if e.signed => Value::Int(v),
                        None => Value::UInt(unsigned(bytes)),
                    }
                }
                Err(hole) => hole,
            },
            TypeKind::Pointer {
                target: Some(target),
                ..
            } if self.plan.lang == SourceLanguage::Go
                && types.name_of(*target).starts_with("hash<") =>
            {
                let name = go_map_name(types.name_of(*target));
                self.go_map(r, b, off, &name, nest)
            }
            TypeKind::Pointer { target, .. } => self.pointer(r, b, off, *target, nest),
            TypeKind::Aggregate(agg) => match &agg.variants {
                Some(part) => self.variant(r, b, off, &t.name, part, nest),
                None if self.plan.lang == SourceLanguage::Rust => {
                    rust_std::sugar(&t.name, self.fields(r, b, off, agg, nest))
                }
                None => Value::Struct {
                    name: t.name.clone(),
                    fields: self.fields(r, b, off, agg, nest),
                },
            },
            TypeKind::Array { elem, dims } => self.array(r, b, off, *elem, dims, nest),
            TypeKind::Void => Value::Unit,
            TypeKind::Alias { .. } => Value::Unit,
            TypeKind::Function => Value::unavailable("a function"),
            TypeKind::Unsupported { tag } => {
                Value::unavailable(format!("unsupported type ({tag})"))
            }
        }
    }

    fn fields(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        agg: &Aggregate,
        nest: usize,
    ) -> Vec<(String, Value)> {
        agg.members
            .iter()
            .map(|m| {
                let v = match m.bits {
                    Some(bits) => {
                        self.bitfield(b, off + m.offset, m.ty, bits.bit_offset, bits.bit_size)
                    }
                    None => self.value(r, b, off + m.offset, m.ty, nest + 1),
                };
                (m.name.clone(), v)
            })
            .collect()
    }

    fn bitfield(&self, b: &Bytes, off: u64, ty: TypeId, bit_offset: u64, bit_size: u64) -> Value {
        let nbytes = (bit_offset + bit_size).div_ceil(8);
        if nbytes > 16 || bit_size == 0 {
            return Value::unavailable("bit-field wider than 128 bits");
        }
        let bytes = match b.read(off, nbytes) {
            Ok(x) => x,
            Err(hole) => return hole,
        };
        let raw = unsigned(bytes) >> bit_offset;
        let mask = if bit_size >= 128 {
            u128::MAX
        } else {
            (1u128 << bit_size) - 1
        };
        let v = raw & mask;
        let is_signed = matches!(
            self.plan.types.strip(ty).map(|(_, t)| &t.kind),
            Some(TypeKind::Base(Encoding::Signed | Encoding::SignedChar))
                | Some(TypeKind::Enumeration(crate::types::Enumeration {
                    signed: true,
                    ..
                }))
        );
        let is_bool = matches!(
            self.plan.types.strip(ty).map(|(_, t)| &t.kind),
            Some(TypeKind::Base(Encoding::Bool))
        );
        if is_bool {
            Value::Bool(v != 0)
        } else if is_signed {
            let shift = 128 - bit_size;
            Value::Int(((v << shift) as i128) >> shift)
        } else {
            Value::UInt(v)
        }
    }

    /// A Rust enum: the discriminant picks the variant (niche values included).
    fn variant(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        name: &str,
        part: &VariantPart,
        nest: usize,
    ) -> Value {
        let chosen = match &part.discr {
            None => part.variants.first(),
            Some(d) => {
                let size = self.plan.types.size_of(d.ty).unwrap_or(0).min(16);
                let raw = match b.read(off + d.offset, size) {
                    Ok(x) => unsigned(x),
                    Err(hole) => return hole,
                };
                let mask = if size >= 8 {
                    u64::MAX
                } else {
                    (1u64 << (size * 8)) - 1
                };
                let tag = raw as u64 & mask;
                part.variants
                    .iter()
                    .find(|v| v.discr_value.is_some_and(|x| x & mask == tag))
                    .or_else(|| part.variants.iter().find(|v| v.discr_value.is_none()))
            }
        };
        let Some(v) = chosen else {
            return Value::unavailable("discriminant matches no variant");
        };
        let mut fields = match self.value(r, b, off + v.member.offset, v.member.ty, nest + 1) {
            Value::Struct { fields, .. } => fields,
            other => vec![("__0".into(), other)],
        };
        // `{:?}` of a `Cow` is its content's, borrowed or owned alike.
        if self.plan.lang == SourceLanguage::Rust
            && name.starts_with("alloc::borrow::Cow<")
            && fields.len() == 1
        {
            return fields.remove(0).1;
        }
        Value::Enum {
            name: name.to_string(),
            variant: v.member.name.clone(),
            fields,
        }
    }

    fn array(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        elem: TypeId,
        dims: &[Option<u64>],
        nest: usize,
    ) -> Value {
        let Some(&Some(n)) = dims.first() else {
            return Value::unavailable("array of unknown length");
        };
        let inner = &dims[1..];
        let elem_size = match self.plan.types.size_of(elem) {
            Some(s) => inner.iter().try_fold(s, |acc, d| acc.checked_mul((*d)?)),
            None => None,
        };
        let Some(elem_size) = elem_size else {
            return Value::unavailable("array element of unknown size");
        };
        // C `char name[16]` is text up to its NUL.
        if inner.is_empty() && self.is_c_char(elem) {
            return match b.read(off, n) {
                Ok(bytes) => {
                    let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
                    Value::Str {
                        text: String::from_utf8_lossy(&bytes[..end]).into_owned(),
                        truncated: false,
                    }
                }
                Err(hole) => hole,
            };
        }
        let shown = n.min(u64::from(self.plan.limits.max_elements));
        let items = (0..shown)
            .map(|i| {
                let at = off + i * elem_size;
                if inner.is_empty() {
                    self.value(r, b, at, elem, nest + 1)
                } else {
                    self.array(r, b, at, elem, inner, nest + 1)
                }
            })
            .collect();
        Value::Array {
            items,
            total: (shown < n).then_some(n),
        }
    }

    fn is_c_char(&self, ty: TypeId) -> bool {
        matches!(self.plan.lang, SourceLanguage::C | SourceLanguage::Cpp)
            && matches!(
                self.plan.types.strip(ty),
                Some((_, t)) if t.size == Some(1)
                    && matches!(t.kind, TypeKind::Base(Encoding::SignedChar | Encoding::UnsignedChar))
            )
    }

    fn pointer(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        target: Option<TypeId>,
        nest: usize,
    ) -> Value {
        let address = match b.word(off) {
            Ok(a) => a,
            Err(hole) => return hole,
        };
        if address == 0 {
            return Value::Null;
        }
        let target = match self.plan.follows.get(&(r, off)) {
            None => None,
            Some(Follow::Budget) => Some(Value::unavailable("capture budget exhausted")),
            Some(Follow::Skipped(why)) => Some(Value::unavailable(why.clone())),
            Some(Follow::Region(t)) => {
                let region = &self.plan.regions[*t];
                let tb = self.region(*t);
                if region.payload == Payload::CStr {
                    return match tb.read(0, tb.buf.len() as u64) {
                        Ok(bytes) => Value::Str {
                            text: String::from_utf8_lossy(bytes).into_owned(),
                            truncated: bytes.len() as u64 >= u64::from(self.plan.limits.max_string),
                        },
                        Err(hole) => Value::Pointer {
                            address,
                            target: Some(Box::new(hole)),
                        },
                    };
                }
                target.map(|ty| self.value(*t, &tb, 0, ty, nest + 1))
            }
        };
        Value::Pointer {
            address,
            target: target.map(Box::new),
        }
    }
}
