//! Strings and slices: values whose contents were followed into a payload.

use tracery_common::OpStatus;

use super::{Bytes, Decoder};
use crate::{
    fetch_plan::{Follow, Part, Payload, RegionId},
    render::SourceLanguage,
    types::TypeId,
    value::Value,
};

impl Decoder<'_> {
    /// The payload region a string or slice pointer was followed into, or why there is none.
    pub(super) fn payload(&self, r: RegionId, ptr_off: u64) -> Result<(RegionId, Bytes), Value> {
        match self.plan.follows.get(&(r, ptr_off)) {
            // Only the first elements of a captured collection have their own pointers
            // followed (fetch_plan::builder::NESTED_FOLLOWS).
            None => Err(Value::unavailable(
                "contents not captured: element beyond the follow limit",
            )),
            Some(Follow::Budget) => Err(Value::unavailable("capture budget exhausted")),
            Some(Follow::Skipped(why)) => Err(Value::unavailable(why.clone())),
            Some(Follow::Region(p)) => {
                if let Some(Part::Op { op, .. }) = self.plan.regions[*p].parts.first() {
                    if self.status(*op) != OpStatus::Ok {
                        return Err(self.failure(*op));
                    }
                }
                Ok((*p, self.region(*p)))
            }
        }
    }

    pub(super) fn text(&self, r: RegionId, b: &Bytes, off: u64, ptr: u64, len: u64) -> Value {
        let (p, n) = match (b.word(off + ptr), b.word(off + len)) {
            (Ok(p), Ok(n)) => (p, n),
            (Err(hole), _) | (_, Err(hole)) => return hole,
        };
        if n == 0 {
            return Value::Str {
                text: String::new(),
                truncated: false,
            };
        }
        if p == 0 {
            return Value::unavailable(format!("null pointer with length {n}"));
        }
        match self.payload(r, off + ptr) {
            Ok((_, bytes)) => {
                let got = bytes.buf.len().min(n as usize);
                let raw = &bytes.buf[..got];
                let truncated = (got as u64) < n;
                // A Rust string is UTF-8 by construction; other bytes mean the location
                // does not hold the string it claims to (a cut at the cap may split a
                // character at the very end, which is fine).
                if self.plan.lang == SourceLanguage::Rust {
                    if let Err(e) = std::str::from_utf8(raw) {
                        if !(truncated && e.error_len().is_none()) {
                            return Value::unavailable(format!(
                                "not valid UTF-8 at byte {}: not a Rust string",
                                e.valid_up_to()
                            ));
                        }
                    }
                }
                Value::Str {
                    text: String::from_utf8_lossy(raw).into_owned(),
                    truncated,
                }
            }
            Err(why) => why,
        }
    }

    #[allow(clippy::too_many_arguments)] // reason: mirrors `text` plus the element type
    pub(super) fn slice(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        ptr: u64,
        len: u64,
        elem: TypeId,
        nest: usize,
    ) -> Value {
        let (p, n) = match (b.word(off + ptr), b.word(off + len)) {
            (Ok(p), Ok(n)) => (p, n),
            (Err(hole), _) | (_, Err(hole)) => return hole,
        };
        if n == 0 {
            return Value::Array {
                items: Vec::new(),
                total: None,
            };
        }
        if p == 0 {
            return Value::unavailable(format!("null pointer with length {n}"));
        }
        let (pr, bytes) = match self.payload(r, off + ptr) {
            Ok(x) => x,
            Err(why) => return why,
        };
        let size = match self.plan.regions[pr].payload {
            Payload::Elems { size, .. } => size.max(1),
            _ => 1,
        };
        let got = (bytes.buf.len() as u64 / size).min(n);
        let items = (0..got)
            .map(|i| self.value(pr, &bytes, i * size, elem, nest + 1))
            .collect();
        Value::Array {
            items,
            total: (got < n).then_some(n),
        }
    }

    /// A `VecDeque`: its elements in logical order, slot `(head + i) % capacity`, as far
    /// as the captured prefix of the buffer holds them; `total` says how many it holds
    /// when they do not all show.
    pub(super) fn ring(&self, r: RegionId, b: &Bytes, off: u64, at: RingAt, nest: usize) -> Value {
        let words = (
            b.word(off + at.ptr),
            b.word(off + at.cap),
            b.word(off + at.head),
            b.word(off + at.len),
        );
        let (p, cap, head, n) = match words {
            (Ok(p), Ok(c), Ok(h), Ok(n)) => (p, c, h, n),
            (Err(hole), ..) | (_, Err(hole), ..) | (_, _, Err(hole), _) | (.., Err(hole)) => {
                return hole
            }
        };
        if n == 0 {
            return Value::Array {
                items: Vec::new(),
                total: None,
            };
        }
        if p == 0 || cap == 0 || n > cap || head >= cap {
            return Value::unavailable(format!("inconsistent ring: {n} of {cap} from {head}"));
        }
        let (pr, bytes) = match self.payload(r, off + at.ptr) {
            Ok(x) => x,
            Err(why) => return why,
        };
        let size = match self.plan.regions[pr].payload {
            Payload::Elems { size, .. } => size.max(1),
            _ => 1,
        };
        let slots = bytes.buf.len() as u64 / size;
        // The longest prefix in logical order whose slots were copied.
        let items: Vec<Value> = (0..n)
            .map(|i| (head + i) % cap)
            .take_while(|slot| *slot < slots)
            .map(|slot| self.value(pr, &bytes, slot * size, at.elem, nest + 1))
            .collect();
        let got = items.len() as u64;
        Value::Array {
            items,
            total: (got < n).then_some(n),
        }
    }
}

/// Offsets of a ring buffer's fields in its value, as [`crate::types::Shape::Ring`] says.
#[derive(Clone, Copy)]
pub(super) struct RingAt {
    pub ptr: u64,
    pub cap: u64,
    pub head: u64,
    pub len: u64,
    pub elem: TypeId,
}
