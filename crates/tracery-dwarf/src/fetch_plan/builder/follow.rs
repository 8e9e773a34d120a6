//! Following one pointer: where its word is, the op that reads its target, the new region.

use tracery_common::{BaseKind, FetchOp, OpKind, DATA_CAP, MAX_COPY};

use super::{Builder, Follow, Part, Payload, Region, RegionId, Word};
use crate::{types::TypeId, value::Value};

impl Builder<'_, '_> {
    pub(super) fn word(&self, r: RegionId, off: u64) -> Word {
        for p in &self.regions[r].parts {
            match p {
                Part::Op { at, len, op } if *at <= off && off + 8 <= at + len => {
                    let slot = self.ops[*op].out as u64 + (off - at);
                    return Word::Op {
                        op: *op,
                        slot: slot as u16,
                    };
                }
                Part::Const { at, bytes } if *at <= off && off + 8 <= at + bytes.len() as u64 => {
                    let i = (off - at) as usize;
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&bytes[i..i + 8]);
                    return Word::Const(u64::from_le_bytes(w));
                }
                _ => {}
            }
        }
        Word::Missing
    }

    /// Where the pointer at (r, off) can be read from, or `None` (recorded) when it cannot.
    pub(super) fn pointer_source(
        &mut self,
        r: RegionId,
        off: u64,
        depth: u8,
        record_depth: bool,
    ) -> Option<(usize, u16)> {
        if depth >= self.limits.max_depth {
            if record_depth {
                let why = "not captured: pointer depth limit".to_string();
                self.follows.insert((r, off), Follow::Skipped(why));
            }
            return None;
        }
        match self.word(r, off) {
            Word::Op { op, slot } => Some((op, slot)),
            Word::Const(_) => {
                let why = "pointer known only as a constant".to_string();
                self.follows.insert((r, off), Follow::Skipped(why));
                None
            }
            // The pointer's own bytes are a hole; the decoder reports the hole.
            Word::Missing => None,
        }
    }

    pub(super) fn new_region(
        &mut self,
        ty: Option<TypeId>,
        len: u64,
        cap: u64,
        op: usize,
        payload: Payload,
        depth: u8,
    ) -> RegionId {
        let mut parts = vec![Part::Op {
            at: 0,
            len: cap,
            op,
        }];
        if len > cap {
            parts.push(Part::Missing {
                at: cap,
                len: len - cap,
                why: Value::unavailable("capture budget exhausted"),
            });
        }
        self.regions.push(Region {
            ty,
            len,
            parts,
            payload,
            depth: depth + 1,
        });
        self.regions.len() - 1
    }

    pub(super) fn follow_fixed(
        &mut self,
        r: RegionId,
        off: u64,
        ty: Option<TypeId>,
        size: u64,
        depth: u8,
    ) {
        let Some((base_op, base_slot)) = self.pointer_source(r, off, depth, false) else {
            return;
        };
        let cap = size.min(MAX_COPY as u64);
        let template = FetchOp {
            kind: OpKind::Copy as u8,
            ..FetchOp::EMPTY
        };
        let Some(op) = self.push_follow(r, off, (base_op, base_slot), cap, template) else {
            return;
        };
        let id = self.new_region(ty, size, cap, op, Payload::Fixed, depth);
        self.follows.insert((r, off), Follow::Region(id));
        if ty.is_some() {
            self.queue.push_back(id);
        }
    }

    /// Reserves `cap` bytes and pushes `template` as a read through the pointer at
    /// `base` (op, data slot); returns the op's index. When the data budget is spent, it
    /// records that for the pointer at (`r`, `off`), so it decodes as "budget exhausted".
    pub(super) fn push_follow(
        &mut self,
        r: RegionId,
        off: u64,
        (base_op, base_slot): (usize, u16),
        cap: u64,
        template: FetchOp,
    ) -> Option<usize> {
        let Some(out) = self.alloc(cap as usize) else {
            self.follows.insert((r, off), Follow::Budget);
            return None;
        };
        Some(self.push(FetchOp {
            base: BaseKind::PtrAt as u8,
            base_op: base_op as u8,
            base_slot,
            out,
            len: cap as u16,
            ..template
        }))
    }

    pub(super) fn follow_cstr(&mut self, r: RegionId, off: u64, depth: u8) {
        let Some((base_op, base_slot)) = self.pointer_source(r, off, depth, false) else {
            return;
        };
        // One more than the cap: the helper always writes a NUL within `len`.
        let cap = (self.limits.max_string as u64 + 1).min(MAX_COPY as u64);
        let template = FetchOp {
            kind: OpKind::CStr as u8,
            ..FetchOp::EMPTY
        };
        let Some(op) = self.push_follow(r, off, (base_op, base_slot), cap, template) else {
            return;
        };
        let id = self.new_region(None, cap, cap, op, Payload::CStr, depth);
        self.follows.insert((r, off), Follow::Region(id));
    }

    /// Follows a pointer whose byte count is `len word * scale`, capped at `cap` bytes.
    #[allow(clippy::too_many_arguments)] // reason: one call per payload kind; a struct would only rename them
    pub(super) fn follow_dynamic(
        &mut self,
        r: RegionId,
        ptr: u64,
        len: u64,
        payload: Payload,
        scale: u64,
        cap: u64,
        depth: u8,
    ) {
        let Some((base_op, base_slot)) = self.pointer_source(r, ptr, depth, true) else {
            return;
        };
        let mut cap = cap.min(MAX_COPY as u64);
        let (flags, len_op, len_slot) = match self.word(r, len) {
            Word::Op { op, slot } => (FetchOp::FLAG_DYNAMIC_LEN, op as u8, slot),
            // Optimized code may know the length as a constant (`&str` of a literal).
            Word::Const(n) => {
                cap = cap.min(n.saturating_mul(scale));
                (0, 0, 0)
            }
            Word::Missing => {
                let why = "length not available at this address".to_string();
                self.follows.insert((r, ptr), Follow::Skipped(why));
                return;
            }
        };
        // A shorter payload beats none: shrink to what the data area still holds.
        let room = DATA_CAP.saturating_sub((self.data + 7) & !7) as u64;
        if room < cap && room >= 64 {
            cap = room - room % scale.max(1);
        }
        let template = FetchOp {
            kind: OpKind::Copy as u8,
            flags,
            len_op,
            len_slot,
            len_scale: scale as u16,
            ..FetchOp::EMPTY
        };
        let Some(op) = self.push_follow(r, ptr, (base_op, base_slot), cap, template) else {
            return;
        };
        let ty = match payload {
            Payload::Elems { elem, .. } => Some(elem),
            _ => None,
        };
        let id = self.new_region(ty, cap, cap, op, payload, depth);
        self.follows.insert((r, ptr), Follow::Region(id));
        if let Payload::Elems { elem, .. } = payload {
            if self.contains_pointers(elem, 0) {
                self.queue.push_back(id);
            }
        }
    }
}
