//! A kernel record ([`PyHit`]) to variables and a stack: the copied objects are decoded by
//! their type (`int` of any size, `float`, `str`, `bytes`, `bool`, `None`, `list`,
//! `tuple`, `dict`, instances as class name and `__dict__`).

use tracery_common::python::{
    type_flags, PyHit, PyObjCopy, PY_NO_PARENT, PY_OBJ_BYTES, PY_SLOT_DICT,
};
use tracery_model::{
    value::{VarKind, Variable},
    StackFrame, Value,
};

use super::{code::CodeInfo, interpreter::V3_11, memory::word_at};

/// The copied objects of one hit, with each object's children in slot order.
pub struct Objects<'a> {
    objs: &'a [PyObjCopy],
    children: Vec<Vec<usize>>,
}

impl<'a> Objects<'a> {
    pub fn new(hit: &'a PyHit) -> Self {
        let n = (hit.n_objects as usize).min(hit.objects.len());
        let objs = &hit.objects[..n];
        let mut children = vec![Vec::new(); n];
        for (i, o) in objs.iter().enumerate() {
            if o.parent != PY_NO_PARENT && (o.parent as usize) < n {
                children[o.parent as usize].push(i);
            }
        }
        for c in &mut children {
            c.sort_by_key(|i| objs[*i].slot);
        }
        Self { objs, children }
    }

    /// The object of local slot `slot`, when it was bound and copied.
    pub fn local(&self, slot: usize) -> Option<usize> {
        self.objs
            .iter()
            .position(|o| o.parent == PY_NO_PARENT && o.slot as usize == slot)
    }

    /// The type name of object `i`.
    pub fn type_name(&self, i: usize) -> String {
        c_string(&self.objs[i].type_name)
    }

    /// The value of object `i`.
    pub fn value(&self, i: usize) -> Value {
        let o = &self.objs[i];
        if o.status == 1 {
            return Value::unavailable(format!("object at {:#x} is unreadable", o.addr));
        }
        let avail = if o.status == 2 { 32 } else { PY_OBJ_BYTES };
        let data = &o.data[..avail];
        let name = self.type_name(i);
        let flags = o.type_flags;
        let kids = &self.children[i];
        let total = |shown: usize| {
            let n = u64::from(o.len_hint);
            (n > shown as u64).then_some(n)
        };
        if name == "bool" {
            return Value::Bool(word_at(data, 16) != 0);
        }
        if name == "NoneType" {
            return Value::Null;
        }
        if name == "float" {
            let bits = word_at(data, V3_11.float_value as usize);
            return Value::Float(f64::from_bits(bits));
        }
        if flags & type_flags::LONG != 0 {
            return decode_int(data);
        }
        if flags & type_flags::UNICODE != 0 {
            let (text, truncated) =
                super::memory::decode_str(data, |_, _| None, o.addr, PY_OBJ_BYTES);
            return match text {
                Some(text) => Value::Str { text, truncated },
                None => Value::unavailable("a legacy (non-compact) str"),
            };
        }
        if flags & type_flags::BYTES != 0 {
            let n = word_at(data, 16) as usize;
            let at = V3_11.bytes_data as usize;
            let have = data.len().saturating_sub(at).min(n);
            let text = escape_bytes(&data[at..at + have]);
            return Value::Interface {
                type_name: "bytes".into(),
                value: Some(Box::new(Value::Str {
                    text,
                    truncated: have < n,
                })),
            };
        }
        if flags & type_flags::LIST != 0 {
            let items: Vec<Value> = kids.iter().map(|k| self.value(*k)).collect();
            let n = items.len();
            return Value::Array {
                items,
                total: total(n),
            };
        }
        if flags & type_flags::TUPLE != 0 {
            return Value::Struct {
                name: "tuple".into(),
                fields: kids
                    .iter()
                    .enumerate()
                    .map(|(j, k)| (format!("__{j}"), self.value(*k)))
                    .collect(),
            };
        }
        if flags & type_flags::DICT != 0 {
            let pairs = self.pairs(kids);
            let n = pairs.len();
            return Value::map("dict", pairs, total(n));
        }
        // An instance: its attributes, from its __dict__ object or its split values.
        let attrs: Vec<(Value, Value)> = match kids.as_slice() {
            [d] if self.objs[*d].slot == PY_SLOT_DICT => self.pairs(&self.children[*d]),
            _ => self.pairs(kids),
        };
        if attrs.is_empty() && flags & type_flags::HEAPTYPE == 0 {
            return Value::Interface {
                type_name: name,
                value: None,
            };
        }
        Value::Struct {
            name,
            fields: attrs
                .into_iter()
                .map(|(k, v)| match k {
                    Value::Str { text, .. } => (text, v),
                    other => (format!("{other:?}"), v),
                })
                .collect(),
        }
    }

    /// Key/value pairs from children at slots `2i` and `2i+1`.
    fn pairs(&self, kids: &[usize]) -> Vec<(Value, Value)> {
        let mut out = Vec::new();
        let mut key: Option<(u16, usize)> = None;
        for &k in kids {
            let slot = self.objs[k].slot;
            if slot.is_multiple_of(2) {
                key = Some((slot, k));
            } else if let Some((ks, ki)) = key.take() {
                if ks + 1 == slot {
                    out.push((self.value(ki), self.value(k)));
                }
            }
        }
        out
    }
}

/// An `int` from its copied bytes: `ob_size` (sign and digit count) at 16, then 30-bit
/// digits (least significant first) as `u32`s.
pub fn decode_int(data: &[u8]) -> Value {
    let size = word_at(data, 16) as i64;
    let n = size.unsigned_abs() as usize;
    let at = V3_11.long_digits as usize;
    if data.len() < at + 4 * n {
        return Value::unavailable(format!(
            "an int of {} bits, more than the {} copied",
            30 * n,
            30 * (data.len().saturating_sub(at) / 4)
        ));
    }
    let digits: Vec<u32> = (0..n)
        .map(|i| {
            let b = &data[at + 4 * i..at + 4 * i + 4];
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x3fff_ffff
        })
        .collect();
    if n * 30 <= 126 {
        let mut v: i128 = 0;
        for d in digits.iter().rev() {
            v = (v << 30) | i128::from(*d);
        }
        return Value::Int(if size < 0 { -v } else { v });
    }
    // Beyond i128: exact decimal text (base 2^30 to base 10^9, schoolbook).
    let mut limbs = digits.clone();
    let mut chunks = Vec::new();
    while limbs.iter().any(|d| *d != 0) {
        let mut rem: u64 = 0;
        for d in limbs.iter_mut().rev() {
            let cur = (rem << 30) | u64::from(*d);
            *d = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem);
    }
    let mut text = if size < 0 {
        "-".to_owned()
    } else {
        String::new()
    };
    for (j, c) in chunks.iter().rev().enumerate() {
        if j == 0 {
            text.push_str(&c.to_string());
        } else {
            text.push_str(&format!("{c:09}"));
        }
    }
    Value::Str {
        text,
        truncated: false,
    }
}

fn escape_bytes(b: &[u8]) -> String {
    b.iter()
        .flat_map(|c| std::ascii::escape_default(*c))
        .map(char::from)
        .collect()
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// The variables of the hit frame: its bound locals, parameters first.
pub fn variables(hit: &PyHit, code: &CodeInfo) -> Vec<Variable> {
    let objects = Objects::new(hit);
    let mut out = Vec::new();
    let n = (hit.n_locals as usize).min(code.local_names.len());
    for slot in 0..n {
        let name = &code.local_names[slot];
        let kind = if slot < code.nargs {
            VarKind::Arg
        } else {
            VarKind::Local
        };
        let (type_name, value) = if slot >= tracery_common::python::PY_MAX_LOCALS {
            (
                String::new(),
                Value::unavailable(format!(
                    "past the first {} locals captured",
                    tracery_common::python::PY_MAX_LOCALS
                )),
            )
        } else {
            match objects.local(slot) {
                Some(i) => (objects.type_name(i), objects.value(i)),
                // Not bound yet at this line (or deleted): Python has no value for it.
                None => continue,
            }
        };
        out.push(Variable {
            name: name.clone(),
            kind,
            type_name,
            value,
            frame: None,
        });
    }
    out
}

/// The Python stack, innermost first; `line0` is the hit's own line.
pub fn stack(
    hit: &PyHit,
    line0: u32,
    mut code_of: impl FnMut(u64) -> Option<CodeInfo>,
) -> Vec<StackFrame> {
    let n = (hit.n_frames as usize).min(hit.frames.len());
    hit.frames[..n]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let code = code_of(f.code);
            let line = if i == 0 {
                Some(line0)
            } else {
                code.as_ref()
                    .and_then(|c| c.line_of(c.unit_of(f.prev_instr)?))
            };
            StackFrame {
                function: code
                    .as_ref()
                    .map_or_else(|| format!("<code {:#x}>", f.code), |c| c.qualname.clone()),
                file: code.as_ref().map(|c| c.filename.clone()),
                line,
                address: f.prev_instr,
                inlined: false,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int_bytes(size: i64, digits: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        b[16..24].copy_from_slice(&size.to_le_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b
    }

    #[test]
    fn ints_of_any_size() {
        assert_eq!(decode_int(&int_bytes(0, &[])), Value::Int(0));
        assert_eq!(decode_int(&int_bytes(-1, &[5])), Value::Int(-5));
        // 2**70 + 3 = digits [3, 0, 1 << 10]
        assert_eq!(
            decode_int(&int_bytes(3, &[3, 0, 1 << 10])),
            Value::Int((1i128 << 70) + 3)
        );
        // 2**150 = digits [0, 0, 0, 0, 0, 1]
        assert_eq!(
            decode_int(&int_bytes(6, &[0, 0, 0, 0, 0, 1])),
            Value::Str {
                text: "1427247692705959881058285969449495136382746624".into(),
                truncated: false
            }
        );
    }
}
