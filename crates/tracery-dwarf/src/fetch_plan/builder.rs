//! Laying out fetch ops and the data area, and following pointers breadth first.
//!
//! Every variable first gets the ops that capture its own bytes, so that a tight budget
//! never drops a whole variable for the sake of another's deep pointer. Then pointers are
//! followed level by level (depth 1 for all variables, then depth 2, ...). Each follow that
//! does not fit in [`MAX_OPS`] or [`DATA_CAP`] is recorded as [`Follow::Budget`], so the
//! decoder says "capture budget exhausted" instead of leaving the value out.

use std::collections::{HashMap, VecDeque};

use tracery_common::{BaseKind, FetchOp, OpKind, DATA_CAP, MAX_COPY, MAX_OPS};

mod btree;
mod collections;
mod cpp_walks;
mod follow;
mod go_values;
mod rust_dyn;

pub(crate) use collections::BUCKETS_KEY;
use collections::{GoMapExtras, HashTableAt};
pub(crate) use cpp_walks::{CONTROL_BLOCK, HASH_NODE_VALUE};

use super::{
    location::{Addr, Piece, PieceLoc},
    CaptureLimits,
};
use crate::{
    render::SourceLanguage,
    types::{shape_of, Encoding, Shape, TypeId, TypeKind, TypeLoader, TypeTable},
    value::Value,
};

/// Index of a [`Region`] in a plan.
pub(crate) type RegionId = usize;

/// At most this many elements of one captured array or slice get their own pointers
/// followed: each costs an op, and the real length is only known at the hit.
const NESTED_FOLLOWS: u64 = 8;

/// Bytes of a Go `itab` read to find the dynamic type (`inter`, then `_type`).
const ITAB_BYTES: u16 = 16;

/// How the bytes of one region map to ops, constants and holes.
#[derive(Clone, Debug)]
pub(crate) enum Part {
    /// Region bytes `[at, at + len)` are the first `len` bytes op `op` wrote.
    Op { at: u64, len: u64, op: usize },
    /// Region bytes starting at `at` are known at compile time.
    Const { at: u64, bytes: Vec<u8> },
    /// Region bytes `[at, at + len)` are not captured; `why` is what they decode to.
    Missing { at: u64, len: u64, why: Value },
}

/// What a region's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    /// A value of the region's type, fixed size.
    Fixed,
    /// String bytes; as many as the op wrote.
    Text,
    /// A NUL-terminated string; as many as the op wrote.
    CStr,
    /// Elements of `size` bytes; as many as the op wrote.
    Elems { elem: TypeId, size: u64 },
}

/// Captured bytes of one value: a variable, a pointer's target, or a payload.
#[derive(Clone, Debug)]
pub(crate) struct Region {
    pub ty: Option<TypeId>,
    pub len: u64,
    pub parts: Vec<Part>,
    pub payload: Payload,
    pub depth: u8,
}

/// What happened to the pointer word at one (region, offset).
#[derive(Clone, Debug)]
pub(crate) enum Follow {
    /// Followed; the target's bytes are this region.
    Region(RegionId),
    /// Not followed: no ops or data left.
    Budget,
    /// Not followed, for this reason.
    Skipped(String),
}

/// Where the 8 bytes of a word inside a region come from.
enum Word {
    Op { op: usize, slot: u16 },
    Const(u64),
    Missing,
}

pub(crate) struct Builder<'u, 'a> {
    pub loader: TypeLoader<'u, 'a>,
    lang: SourceLanguage,
    limits: CaptureLimits,
    pub ops: Vec<FetchOp>,
    pub data: usize,
    pub regions: Vec<Region>,
    pub follows: HashMap<(RegionId, u64), Follow>,
    queue: VecDeque<RegionId>,
    has_pointers: HashMap<TypeId, bool>,
    /// A Go interface was seen: the decoder needs runtime type names.
    pub needs_go_types: bool,
    /// The Go type index, read on the first interface ([`go_values`]).
    go: Option<crate::fetch_plan::GoTypes>,
    go_source: Option<go_values::GoSource<'u, 'a>>,
    /// Rust trait objects: the binary's vtables and those the plan may meet.
    pub rust_dyn: rust_dyn::RustDyn,
    /// Go maps whose overflow and old buckets are planned once everything else is.
    go_extras: VecDeque<GoMapExtras>,
}

impl<'u, 'a> Builder<'u, 'a> {
    pub fn new(loader: TypeLoader<'u, 'a>, lang: SourceLanguage, limits: &CaptureLimits) -> Self {
        Self {
            loader,
            lang,
            limits: *limits,
            ops: Vec::new(),
            data: 0,
            regions: Vec::new(),
            follows: HashMap::new(),
            queue: VecDeque::new(),
            has_pointers: HashMap::new(),
            needs_go_types: false,
            go: None,
            go_source: None,
            rust_dyn: Default::default(),
            go_extras: VecDeque::new(),
        }
    }

    fn table(&self) -> &TypeTable {
        self.loader.table()
    }

    /// Reserves an op writing `len` bytes (8 for a value op); `None` when over budget.
    fn alloc(&mut self, len: usize) -> Option<u16> {
        let out = (self.data + 7) & !7;
        let len = len.max(8);
        if self.ops.len() >= MAX_OPS || out + len > DATA_CAP {
            return None;
        }
        self.data = out + len;
        Some(out as u16)
    }

    fn push(&mut self, op: FetchOp) -> usize {
        self.ops.push(op);
        self.ops.len() - 1
    }

    fn base_op(addr: Addr, kind: OpKind, out: u16, len: u16) -> FetchOp {
        let (base, reg, offset) = match addr {
            Addr::Reg(r) => (BaseKind::Reg, r.reg, r.offset),
            Addr::Absolute(a) => (BaseKind::Absolute, 0, a as i64),
        };
        FetchOp {
            offset,
            base: base as u8,
            kind: kind as u8,
            reg,
            out,
            len,
            ..FetchOp::EMPTY
        }
    }

    /// The region holding a variable of type `ty` (`size` bytes) located by `pieces`.
    pub fn root(&mut self, ty: TypeId, size: u64, pieces: &[Piece]) -> RegionId {
        let budget = || Value::unavailable("capture budget exhausted");
        let mut parts = Vec::new();
        let mut at = 0u64;
        if pieces.is_empty() {
            parts.push(Part::Missing {
                at: 0,
                len: size,
                why: Value::OptimizedOut,
            });
            at = size;
        }
        for piece in pieces {
            if at >= size {
                break;
            }
            let len = piece.size.unwrap_or(size).min(size - at);
            if len == 0 {
                continue;
            }
            match &piece.loc {
                PieceLoc::Reg(reg) => {
                    let addr = Addr::Reg(super::location::RegOff {
                        reg: *reg,
                        offset: 0,
                    });
                    self.word_piece(addr, OpKind::Value, at, len, &mut parts);
                }
                PieceLoc::Value(addr) => self.word_piece(*addr, OpKind::Value, at, len, &mut parts),
                PieceLoc::Word(addr) => self.word_piece(*addr, OpKind::Copy, at, len, &mut parts),
                PieceLoc::Mem(addr) => {
                    let take = len.min(MAX_COPY as u64);
                    match self.alloc(take as usize) {
                        Some(out) => {
                            let op =
                                self.push(Self::base_op(*addr, OpKind::Copy, out, take as u16));
                            parts.push(Part::Op { at, len: take, op });
                        }
                        None => parts.push(Part::Missing {
                            at,
                            len: take,
                            why: budget(),
                        }),
                    }
                    if len > take {
                        parts.push(Part::Missing {
                            at: at + take,
                            len: len - take,
                            why: budget(),
                        });
                    }
                }
                PieceLoc::MemAt { ptr, offset } => {
                    let take = len.min(MAX_COPY as u64);
                    match self.indirect(*ptr, *offset, take) {
                        Some(op) => parts.push(Part::Op { at, len: take, op }),
                        None => parts.push(Part::Missing {
                            at,
                            len: take,
                            why: budget(),
                        }),
                    }
                    if len > take {
                        parts.push(Part::Missing {
                            at: at + take,
                            len: len - take,
                            why: budget(),
                        });
                    }
                }
                PieceLoc::Const(bytes) => {
                    let mut b = bytes.clone();
                    let known = b.len() as u64;
                    b.truncate(len as usize);
                    parts.push(Part::Const { at, bytes: b });
                    if len > known {
                        parts.push(Part::Missing {
                            at: at + known,
                            len: len - known,
                            why: Value::unavailable("constant narrower than the value"),
                        });
                    }
                }
                PieceLoc::OptimizedOut => parts.push(Part::Missing {
                    at,
                    len,
                    why: Value::OptimizedOut,
                }),
                PieceLoc::Unavailable(reason) => parts.push(Part::Missing {
                    at,
                    len,
                    why: Value::unavailable(reason.clone()),
                }),
            }
            at += len;
        }
        if at < size {
            parts.push(Part::Missing {
                at,
                len: size - at,
                why: Value::OptimizedOut,
            });
        }
        self.regions.push(Region {
            ty: Some(ty),
            len: size,
            parts,
            payload: Payload::Fixed,
            depth: 0,
        });
        let id = self.regions.len() - 1;
        self.queue.push_back(id);
        id
    }

    /// One 8-byte op for a piece that is a word: a register, a computed address (`Value`),
    /// or a word loaded from memory (`Copy`). Bytes past the word cannot come from it.
    fn word_piece(&mut self, addr: Addr, kind: OpKind, at: u64, len: u64, parts: &mut Vec<Part>) {
        let word = len.min(8);
        match self.alloc(8) {
            Some(out) => {
                let op = self.push(Self::base_op(addr, kind, out, 8));
                parts.push(Part::Op { at, len: word, op });
            }
            None => parts.push(Part::Missing {
                at,
                len: word,
                why: Value::unavailable("capture budget exhausted"),
            }),
        }
        if len > word {
            parts.push(Part::Missing {
                at: at + word,
                len: len - word,
                why: Value::unavailable("value wider than a register or word"),
            });
        }
    }

    /// Two ops for bytes behind a pointer stored at `ptr`: load the pointer, then copy `len`
    /// bytes at pointer + `offset`. Returns the second op.
    fn indirect(&mut self, ptr: Addr, offset: i64, len: u64) -> Option<usize> {
        if self.ops.len() + 2 > MAX_OPS {
            return None;
        }
        let slot = self.alloc(8)?;
        let load = self.push(Self::base_op(ptr, OpKind::Copy, slot, 8));
        let Some(out) = self.alloc(len as usize) else {
            // The pointer load stays (ops cannot be taken back cheaply) but feeds nothing.
            return None;
        };
        Some(self.push(FetchOp {
            offset,
            base: BaseKind::PtrAt as u8,
            kind: OpKind::Copy as u8,
            base_op: load as u8,
            base_slot: slot,
            out,
            len: len as u16,
            ..FetchOp::EMPTY
        }))
    }

    /// Follows pointers breadth first until the queue is empty or the budget is gone.
    pub fn run(&mut self) {
        loop {
            self.drain_queue();
            // A Go map's overflow and old buckets hold entries only when its main array
            // does not: they take what budget every main array's entries left.
            let Some(m) = self.go_extras.pop_front() else {
                break;
            };
            self.follow_go_extras(m);
        }
    }

    fn drain_queue(&mut self) {
        while let Some(r) = self.queue.pop_front() {
            let region = self.regions[r].clone();
            match region.payload {
                Payload::Fixed => match region.ty {
                    Some(ty) if self.is_go_map_header(ty) => {
                        self.follow_go_buckets(r, ty, region.depth);
                    }
                    Some(ty) => self.scan(r, 0, ty, region.depth, 0),
                    None => {}
                },
                Payload::Elems { elem, size } => {
                    let n = (region.len / size.max(1)).min(NESTED_FOLLOWS);
                    for i in 0..n {
                        self.scan(r, i * size, elem, region.depth, 0);
                    }
                }
                Payload::Text | Payload::CStr => {}
            }
        }
    }

    /// A Go map's `hash<K,V>` header: its buckets are planned by
    /// [`Builder::follow_go_buckets`], not scanned as a plain struct.
    fn is_go_map_header(&self, ty: TypeId) -> bool {
        self.lang == SourceLanguage::Go
            && self
                .table()
                .strip(ty)
                .is_some_and(|(_, t)| t.name.starts_with("hash<"))
    }

    /// Plans follows for the pointers inside a value of type `ty` at `off` in region `r`.
    fn scan(&mut self, r: RegionId, off: u64, ty: TypeId, depth: u8, nest: usize) {
        if nest > 16 {
            return;
        }
        let Some((sid, t)) = self.table().strip(ty) else {
            return;
        };
        let kind = t.kind.clone();
        let go_bucket = self.lang == SourceLanguage::Go && t.name.starts_with("bucket<");
        if self.lang == SourceLanguage::Go && self.scan_go(r, off, sid, depth) {
            return;
        }
        match shape_of(self.table(), sid, self.lang) {
            Shape::Text { ptr, len } => {
                let cap = self.limits.max_string as u64;
                self.follow_dynamic(r, off + ptr, off + len, Payload::Text, 1, cap, depth);
                return;
            }
            // A ring's buffer is copied like a slice whose length is the capacity.
            Shape::Slice { ptr, len, elem }
            | Shape::Ring {
                ptr,
                cap: len,
                elem,
                ..
            } => {
                self.loader.load(elem);
                match self.table().size_of(elem) {
                    Some(size) if size > 0 && size <= MAX_COPY as u64 => {
                        let cap = self.limits.max_elements as u64 * size;
                        let payload = Payload::Elems { elem, size };
                        self.follow_dynamic(r, off + ptr, off + len, payload, size, cap, depth);
                    }
                    Some(0) => {
                        // Zero-sized elements: the length says everything.
                        let why = "elements have no bytes".to_string();
                        self.follows.insert((r, off + ptr), Follow::Skipped(why));
                    }
                    _ => {
                        let why = "element type of unknown or too large size".to_string();
                        self.follows.insert((r, off + ptr), Follow::Skipped(why));
                    }
                }
                return;
            }
            Shape::GoInterface { eface } => {
                // The static interface's name (`error`) is the alias's, not `runtime.iface`.
                let iface = self.table().name_of(ty).to_string();
                self.follow_go_interface(r, off, eface, &iface, depth);
                return;
            }
            Shape::HashTable {
                mask, ctrl, elem, ..
            } => {
                let t = HashTableAt {
                    mask: off + mask,
                    ctrl: off + ctrl,
                    elem,
                };
                self.follow_hash_table(r, t, depth);
                return;
            }
            Shape::Cpp(cpp) => {
                if self.follow_cpp(r, off, cpp, depth, nest) {
                    return;
                }
            }
            Shape::DynTrait { data, vtable } => {
                let name = self.table().name_of(sid).to_string();
                self.follow_dyn(r, off, &name, (data, vtable), depth);
                return;
            }
            Shape::BTree(at) => {
                self.follow_btree(r, off, at, depth);
                return;
            }
            Shape::Other => {}
        }
        match kind {
            TypeKind::Pointer {
                target: Some(target),
                ..
            } => {
                self.loader.load(target);
                let Some((_, tt)) = self.table().strip(target) else {
                    return;
                };
                let c_like = matches!(self.lang, SourceLanguage::C | SourceLanguage::Cpp);
                let is_char = matches!(
                    tt.kind,
                    TypeKind::Base(Encoding::SignedChar | Encoding::UnsignedChar)
                ) && tt.size == Some(1);
                if c_like && is_char {
                    self.follow_cstr(r, off, depth);
                    return;
                }
                let followable = matches!(
                    tt.kind,
                    TypeKind::Base(_)
                        | TypeKind::Pointer { .. }
                        | TypeKind::Aggregate(_)
                        | TypeKind::Enumeration(_)
                        | TypeKind::Array { .. }
                );
                match self.table().size_of(target) {
                    Some(size) if size > 0 && followable => {
                        self.follow_fixed(r, off, Some(target), size, depth);
                    }
                    _ => {}
                }
            }
            TypeKind::Aggregate(agg) => {
                // A Go map bucket's overflow link is walked by follow_go_extras, after
                // every main array's cells.
                for m in &agg.members {
                    if go_bucket && m.name == "overflow" {
                        continue;
                    }
                    if m.bits.is_none() {
                        self.scan(r, off + m.offset, m.ty, depth, nest + 1);
                    }
                }
                if let Some(vp) = &agg.variants {
                    for v in &vp.variants {
                        self.scan(r, off + v.member.offset, v.member.ty, depth, nest + 1);
                    }
                }
            }
            TypeKind::Array { elem, dims } => {
                if !self.contains_pointers(elem, 0) {
                    return;
                }
                let Some(size) = self.table().size_of(elem).filter(|s| *s > 0) else {
                    return;
                };
                let n: u64 = dims.iter().map(|d| d.unwrap_or(0)).product();
                for i in 0..n.min(NESTED_FOLLOWS) {
                    self.scan(r, off + i * size, elem, depth, nest + 1);
                }
            }
            _ => {}
        }
    }

    /// True when a value of type `ty` holds a pointer, string or slice by value.
    fn contains_pointers(&mut self, ty: TypeId, nest: usize) -> bool {
        if let Some(&b) = self.has_pointers.get(&ty) {
            return b;
        }
        if nest > 16 {
            return false;
        }
        self.has_pointers.insert(ty, false);
        let Some((sid, t)) = self.table().strip(ty) else {
            return false;
        };
        let kind = t.kind.clone();
        let b = shape_of(self.table(), sid, self.lang) != Shape::Other
            || match kind {
                TypeKind::Pointer { .. } => true,
                TypeKind::Aggregate(a) => {
                    a.members
                        .iter()
                        .any(|m| self.contains_pointers(m.ty, nest + 1))
                        || a.variants.iter().flat_map(|v| v.variants.iter()).any(|v| {
                            let t = v.member.ty;
                            self.contains_pointers(t, nest + 1)
                        })
                }
                TypeKind::Array { elem, .. } => self.contains_pointers(elem, nest + 1),
                _ => false,
            };
        self.has_pointers.insert(ty, b);
        b
    }
}
