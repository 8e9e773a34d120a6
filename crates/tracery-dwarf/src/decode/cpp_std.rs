//! libstdc++ values as gdb's libstdc++ pretty printers show them.
//!
//! Each becomes a struct whose name is the printer's header (`std::vector of length 2,
//! capacity 2`, `std::shared_ptr<Point> (use count 2, weak count 1)`) and whose fields are
//! what the printer lists after ` = `: `{items}` for sequences and variants, map and set
//! entries ([`Value::map`], [`Value::set`]), `get()` for smart pointers, `[contained value]`
//! for optionals. The C++ renderer writes these as gdb does; other consumers see a plain
//! struct. Everything comes from bytes captured at the hit: a vector's buffer and a tree's
//! or hash table's nodes are walks of the plan (`fetch_plan::builder::cpp_walks`).

use tracery_common::plan::rb_node;

use super::{scalar::unsigned, Bytes, Decoder};
use crate::{
    fetch_plan::{Payload, RegionId, CONTROL_BLOCK, HASH_NODE_VALUE},
    types::{deque_per_node, template_base, variant_alternatives, CppShape, DequeAt, TypeId},
    value::Value,
};

/// The field of a printer value that holds its elements.
pub(crate) const ITEMS: &str = "{items}";

/// Template arguments gdb's printers leave out of type names.
const DEFAULT_ARGS: [&str; 5] = [
    "std::allocator<",
    "std::default_delete<",
    "std::char_traits<",
    "std::less<",
    "std::hash<",
];

fn printer(header: String, fields: Vec<(String, Value)>) -> Value {
    Value::Struct {
        name: header,
        fields,
    }
}

fn items(items: Vec<Value>, total: Option<u64>) -> Vec<(String, Value)> {
    vec![(ITEMS.into(), Value::Array { items, total })]
}

impl Decoder<'_> {
    /// A libstdc++ value of type `name` at `off`; `None` leaves it to the generic decoding.
    pub(super) fn cpp(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        name: &str,
        shape: CppShape,
        nest: usize,
    ) -> Option<Value> {
        Some(match shape {
            CppShape::Storage { ty } => self.value(r, b, off, ty, nest + 1),
            CppShape::Vector {
                start,
                finish,
                end,
                elem,
            } => self.vector(r, b, off, [start, finish, end], elem, nest),
            CppShape::Deque(at) => self.deque(r, b, off, at, nest),
            CppShape::Tree { header, count, val } => {
                let at = NodesAt {
                    key: off + header,
                    count: off + count,
                    value: rb_node::VALUE,
                    val,
                };
                self.nodes(r, b, name, at, nest)
            }
            CppShape::Hash { first, count, val } => {
                let at = NodesAt {
                    key: off + first,
                    count: off + count,
                    value: HASH_NODE_VALUE,
                    val,
                };
                self.nodes(r, b, name, at, nest)
            }
            CppShape::Shared { ptr, ptr_ty, pi } => {
                let control = match b.word(off + pi) {
                    Ok(c) => c,
                    Err(hole) => return Some(hole),
                };
                let state = if control == 0 {
                    "empty".to_string()
                } else {
                    match self.payload(r, off + pi).and_then(|(_, cb)| {
                        let counts = cb.read(8, CONTROL_BLOCK - 8)?;
                        Ok((unsigned(&counts[..4]), unsigned(&counts[4..])))
                    }) {
                        Ok((0, weak)) => format!("expired, weak count {weak}"),
                        Ok((uses, weak)) => {
                            format!("use count {uses}, weak count {}", weak.saturating_sub(1))
                        }
                        Err(why) => return Some(why),
                    }
                };
                let get = self.value(r, b, off + ptr, ptr_ty, nest + 1);
                printer(
                    format!("{} ({state})", gdb_name(name)),
                    vec![("get()".into(), get)],
                )
            }
            CppShape::Unique { ptr, ptr_ty } => printer(
                gdb_name(name),
                vec![(
                    "get()".into(),
                    self.value(r, b, off + ptr, ptr_ty, nest + 1),
                )],
            ),
            CppShape::Optional { engaged, value, ty } => match b.read(off + engaged, 1) {
                Ok([0]) => printer(
                    format!("{} [no contained value]", gdb_name(name)),
                    items(Vec::new(), None),
                ),
                Ok(_) => printer(
                    gdb_name(name),
                    vec![(
                        "[contained value]".into(),
                        self.value(r, b, off + value, ty, nest + 1),
                    )],
                ),
                Err(hole) => hole,
            },
            CppShape::Variant {
                index,
                index_size,
                union,
                union_ty,
            } => {
                let i = match b.read(off + index, index_size) {
                    Ok(x) => unsigned(x) as u64,
                    Err(hole) => return Some(hole),
                };
                let alts = variant_alternatives(&self.plan.types, union_ty);
                match alts.get(i as usize) {
                    Some((at, ty)) => printer(
                        format!("{} [index {i}]", gdb_name(name)),
                        items(
                            vec![self.value(r, b, off + union + at, *ty, nest + 1)],
                            None,
                        ),
                    ),
                    // `variant_npos` in the index's width: valueless by exception.
                    None => printer(
                        format!("{} [no contained value]", gdb_name(name)),
                        items(Vec::new(), None),
                    ),
                }
            }
        })
    }

    /// A vector: its length and capacity from the three pointers, and the elements of the
    /// captured prefix of its buffer before `_M_finish`.
    fn vector(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        [start, finish, end]: [u64; 3],
        elem: TypeId,
        nest: usize,
    ) -> Value {
        let words = (b.word(off + start), b.word(off + finish), b.word(off + end));
        let (s, f, e) = match words {
            (Ok(s), Ok(f), Ok(e)) => (s, f, e),
            (Err(hole), ..) | (_, Err(hole), _) | (.., Err(hole)) => return hole,
        };
        let size = self.plan.types.size_of(elem).unwrap_or(0).max(1);
        if f < s || e < f {
            return Value::unavailable(format!("inconsistent vector: {s:#x} {f:#x} {e:#x}"));
        }
        let (n, cap) = ((f - s) / size, (e - s) / size);
        let header = format!("std::vector of length {n}, capacity {cap}");
        if n == 0 {
            return printer(header, items(Vec::new(), None));
        }
        let shown = match self.payload(r, off + start) {
            Ok((pr, bytes)) => {
                let got = (bytes.buf.len() as u64 / size).min(n);
                let xs = (0..got)
                    .map(|i| self.value(pr, &bytes, i * size, elem, nest + 1))
                    .collect();
                Value::Array {
                    items: xs,
                    total: (got < n).then_some(n),
                }
            }
            Err(why) => why,
        };
        printer(header, vec![(ITEMS.into(), shown)])
    }

    /// A deque: its length from the iterators as gdb's printer computes it, and its
    /// elements in order from the first node's copy and the later nodes' copies
    /// (`fetch_plan::builder::cpp_walks`), up to `max_elements` or the first node not
    /// captured; the value then carries the full length.
    fn deque(&self, r: RegionId, b: &Bytes, off: u64, at: DequeAt, nest: usize) -> Value {
        let word = |it: u64, w: u64| b.word(off + it + w);
        let words = [
            word(at.start, at.cur),
            word(at.start, at.last),
            word(at.start, at.node),
            word(at.finish, at.cur),
            word(at.finish, at.first),
            word(at.finish, at.node),
        ];
        let mut w = [0u64; 6];
        for (x, got) in w.iter_mut().zip(words) {
            match got {
                Ok(v) => *x = v,
                Err(hole) => return hole,
            }
        }
        let [s_cur, s_last, s_node, f_cur, f_first, f_node] = w;
        let size = self.plan.types.size_of(at.elem).unwrap_or(0).max(1);
        let per_node = deque_per_node(size);
        let later = f_node.wrapping_sub(s_node) / 8;
        if f_node < s_node
            || (f_node - s_node) % 8 != 0
            || s_last < s_cur
            || f_cur < f_first
            || (later == 0 && f_cur < s_cur)
        {
            return Value::unavailable(format!(
                "inconsistent deque: {s_cur:#x} {s_last:#x} {s_node:#x} {f_cur:#x} {f_first:#x} {f_node:#x}"
            ));
        }
        // Elements in node k (0: the first, from `_M_start._M_cur`), as gdb's printer walks.
        let in_node = |k: u64| match k {
            0 if later == 0 => (f_cur - s_cur) / size,
            0 => (s_last - s_cur) / size,
            k if k == later => (f_cur - f_first) / size,
            _ => per_node,
        };
        let n = match later {
            0 => in_node(0),
            // Saturating: a deque changing under the hit may hold any words.
            l => in_node(0)
                .saturating_add((l - 1).saturating_mul(per_node))
                .saturating_add(in_node(l)),
        };
        let plural = if n == 1 { "" } else { "s" };
        let header = format!("std::deque with {n} element{plural}");
        if n == 0 {
            return printer(header, items(Vec::new(), None));
        }
        let max = u64::from(self.plan.limits.max_elements).max(1).min(n);
        let mut xs = Vec::new();
        // Takes node k's captured elements; false when its copy was cut short.
        let at_node = |xs: &mut Vec<Value>, pr: RegionId, bytes: &Bytes, k: u64| {
            let got = (bytes.buf.len() as u64 / size).min(in_node(k));
            for i in 0..got.min(max - xs.len() as u64) {
                xs.push(self.value(pr, bytes, i * size, at.elem, nest + 1));
            }
            got == in_node(k)
        };
        let whole = match self.payload(r, off + at.start + at.cur) {
            Ok((pr, bytes)) => at_node(&mut xs, pr, &bytes, 0),
            Err(why) => return printer(header, vec![(ITEMS.into(), why)]),
        };
        if whole && (xs.len() as u64) < max {
            // Nodes not captured (cap, budget, fault) end the list; `total` says so.
            if let Ok((pr, _)) = self.payload(r, off + at.start + at.node) {
                for k in 1..=later {
                    let Ok((nr, bytes)) = self.payload(pr, (k - 1) * 8) else {
                        break;
                    };
                    if !at_node(&mut xs, nr, &bytes, k) || xs.len() as u64 >= max {
                        break;
                    }
                }
            }
        }
        let shown = xs.len() as u64;
        printer(
            header,
            vec![(
                ITEMS.into(),
                Value::Array {
                    items: xs,
                    total: (shown < n).then_some(n),
                },
            )],
        )
    }

    /// A tree's or hash table's entries from the nodes its walk copied: `std::map with 3
    /// elements`, with the count of entries held when the walk's cap cut it.
    fn nodes(&self, r: RegionId, b: &Bytes, name: &str, at: NodesAt, nest: usize) -> Value {
        let count = match b.word(at.count) {
            Ok(c) => c,
            Err(hole) => return hole,
        };
        let kind = template_base(name);
        let header = format!("{kind} with {count} elements");
        let set = !kind.ends_with("map");
        let wrap = |entries: Vec<Value>, total: Option<u64>| {
            if set {
                return Value::set(header.clone(), entries, total);
            }
            let pairs = entries
                .into_iter()
                .map(|e| {
                    // `std::pair` has an empty `__pair_base` base before `first`.
                    let field = |name: &str| match &e {
                        Value::Struct { fields, .. } => {
                            fields.iter().find(|(n, _)| n == name).map(|f| f.1.clone())
                        }
                        _ => None,
                    };
                    match (field("first"), field("second")) {
                        (Some(k), Some(v)) => (k, v),
                        _ => (e, Value::unavailable("entry is not a (key, value) pair")),
                    }
                })
                .collect();
            Value::map(header.clone(), pairs, total)
        };
        if count == 0 {
            return wrap(Vec::new(), None);
        }
        let (pr, nodes) = match self.payload(r, at.key) {
            Ok(x) => x,
            Err(why) => return why,
        };
        let size = match self.plan.regions[pr].payload {
            Payload::Elems { size, .. } => size.max(1),
            _ => return Value::unavailable("nodes of unknown size"),
        };
        let got = (nodes.buf.len() as u64 / size).min(count);
        let entries = (0..got)
            .map(|i| self.value(pr, &nodes, i * size + at.value, at.val, nest + 1))
            .collect();
        wrap(entries, (got < count).then_some(count))
    }
}

/// Where a node-based container's parts are: the follow key of its walk, its count, and
/// the value's offset in a node.
struct NodesAt {
    key: u64,
    count: u64,
    value: u64,
    val: TypeId,
}

/// A type name as gdb's printers write it: `std::string` for `std::__cxx11::basic_string<char,
/// ...>`, default template arguments (allocators, deleters, comparators) left out.
pub(crate) fn gdb_name(name: &str) -> String {
    let Some(open) = name.find('<') else {
        return name.to_string();
    };
    let base = &name[..open];
    let args = split_args(&name[open + 1..name.rfind('>').unwrap_or(name.len())]);
    let string = base == "std::__cxx11::basic_string" || base == "std::basic_string";
    if string && args.first().map(|a| a.trim()) == Some("char") {
        return "std::string".into();
    }
    let kept: Vec<String> = args
        .iter()
        .map(|a| a.trim())
        .filter(|a| !DEFAULT_ARGS.iter().any(|d| a.starts_with(d)))
        .map(gdb_name)
        .collect();
    let inner = kept.join(", ");
    let close = if inner.ends_with('>') { " >" } else { ">" };
    format!("{base}<{inner}{close}")
}

/// Top-level template arguments of `a, b<c, d>, e`.
fn split_args(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut from) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[from..]);
    out
}

/// Offset of `_M_local_buf` past `_M_string_length` in a libstdc++ string: a short string
/// (at most [`SSO_CAPACITY`] bytes) lives there and `_M_p` points at it.
const SSO_AFTER_LEN: u64 = 8;
const SSO_CAPACITY: u64 = 15;

impl Decoder<'_> {
    /// A short `std::string` read from its own in-place buffer when its pointer was not
    /// followed (follow limit or budget): only when `_M_p` provably points into the string
    /// itself, at the address the string's bytes were captured from.
    pub(super) fn cpp_short_string(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        [ptr, len]: [u64; 2],
    ) -> Option<Value> {
        let (p, n) = (b.word(off + ptr).ok()?, b.word(off + len).ok()?);
        if n > SSO_CAPACITY {
            return None;
        }
        let buf = off + len + SSO_AFTER_LEN;
        if !self.captured_from(r, b, buf, p) {
            return None;
        }
        let bytes = b.read(buf, n).ok()?;
        Some(Value::Str {
            text: String::from_utf8_lossy(bytes).into_owned(),
            truncated: false,
        })
    }

    /// Whether byte `off` of region `r` was copied from process address `addr`. For a walk,
    /// the node holding `off` must start where the walk began (a chain's first node) or
    /// where a copied link points (the previous node's `_M_nxt`, a tree node's parent or
    /// child links).
    fn captured_from(&self, r: RegionId, b: &Bytes, off: u64, addr: u64) -> bool {
        use tracery_common::{BaseKind, FetchOp, OpKind, OpStatus};
        let region = &self.plan.regions[r];
        let Some(crate::fetch_plan::Part::Op { at: 0, op, .. }) = region.parts.first() else {
            return false;
        };
        let o = &self.plan.config.ops[*op];
        if self.status(*op) != OpStatus::Ok || o.flags & FetchOp::FLAG_BACKWARD != 0 {
            return false;
        }
        let base = if o.base == BaseKind::Reg as u8 {
            self.header.regs.get(o.reg as usize).copied()
        } else if o.base == BaseKind::PtrAt as u8 {
            self.slot(o.base_slot as usize)
        } else {
            Some(self.bias)
        };
        let Some(start) = base.map(|x| x.wrapping_add(o.offset as u64)) else {
            return false;
        };
        if o.kind == OpKind::Copy as u8 {
            return start.wrapping_add(off) == addr;
        }
        let Payload::Elems { size, .. } = region.payload else {
            return false;
        };
        let size = size.max(1);
        let i = off / size;
        let node = addr.wrapping_sub(off - i * size);
        if o.kind == OpKind::Chain as u8 {
            return match i {
                0 => node == start,
                _ => b.word((i - 1) * size).ok() == Some(node),
            };
        }
        let nodes = b.buf.len() as u64 / size;
        let links = [rb_node::PARENT, rb_node::LEFT, rb_node::RIGHT];
        (0..nodes).filter(|j| *j != i).any(|j| {
            links
                .iter()
                .any(|l| b.word(j * size + l).ok() == Some(node))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::gdb_name;

    #[test]
    fn names_read_like_gdb() {
        let s = "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >";
        assert_eq!(gdb_name(s), "std::string");
        assert_eq!(
            gdb_name(&format!("std::optional<{s}>")),
            "std::optional<std::string>"
        );
        assert_eq!(
            gdb_name("std::unique_ptr<Point, std::default_delete<Point> >"),
            "std::unique_ptr<Point>"
        );
        assert_eq!(
            gdb_name(&format!("std::variant<int, {s}, double>")),
            "std::variant<int, std::string, double>"
        );
    }
}
