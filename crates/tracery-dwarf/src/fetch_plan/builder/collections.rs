//! Following the tables behind hash maps: hashbrown's control bytes and the buckets below
//! them, each a single capped op whose length comes from the table's own bucket mask.

use tracery_common::{FetchOp, OpKind, DATA_CAP, MAX_COPY};

use super::{Builder, Follow, Payload, RegionId, Word};
use crate::types::{go_map_layout, TypeId};

/// Go map buckets read per map: enough for [`super::CaptureLimits::max_elements`] entries
/// at eight per bucket, within one op's [`MAX_COPY`].
fn go_bucket_cap(max_elements: u16) -> u64 {
    u64::from(max_elements).div_ceil(8).max(1)
}

/// Key offset, past a table's `ctrl` pointer word, under which its bucket region is
/// recorded in `follows` (the control bytes are recorded at the pointer itself).
pub(crate) const BUCKETS_KEY: u64 = 1;

/// Where one hashbrown table lies in a region: offsets of `bucket_mask` and `ctrl`.
pub(crate) struct HashTableAt {
    pub mask: u64,
    pub ctrl: u64,
    pub elem: TypeId,
}

impl Builder<'_, '_> {
    /// Plans the two reads of a hashbrown table: its first `max_elements` control bytes
    /// and, below `ctrl`, the buckets they describe (bucket `i` ends `i * size` bytes below
    /// `ctrl`). Both lengths are `min(cap, bucket_mask + 1)` at the hit.
    pub(super) fn follow_hash_table(&mut self, r: RegionId, t: HashTableAt, depth: u8) {
        let Some((base_op, base_slot)) = self.pointer_source(r, t.ctrl, depth, true) else {
            return;
        };
        let Word::Op {
            op: len_op,
            slot: len_slot,
        } = self.word(r, t.mask)
        else {
            let why = "bucket mask not captured".to_string();
            self.follows.insert((r, t.ctrl), Follow::Skipped(why));
            return;
        };
        self.loader.load(t.elem);
        let size = match self.table().size_of(t.elem) {
            Some(s) if s > 0 && s <= MAX_COPY as u64 => s,
            _ => {
                let why = "entries of zero or unknown size".to_string();
                self.follows.insert((r, t.ctrl), Follow::Skipped(why));
                return;
            }
        };
        let n = u64::from(self.limits.max_elements).max(1);
        let flags = FetchOp::FLAG_DYNAMIC_LEN | FetchOp::FLAG_COUNT_PLUS_ONE;
        let ctrl_op = FetchOp {
            kind: OpKind::Copy as u8,
            flags,
            len_op: len_op as u8,
            len_slot,
            len_scale: 1,
            ..FetchOp::EMPTY
        };
        let Some(op) = self.push_follow(r, t.ctrl, (base_op, base_slot), n, ctrl_op) else {
            return;
        };
        let id = self.new_region(None, n, n, op, Payload::Text, depth);
        self.follows.insert((r, t.ctrl), Follow::Region(id));

        let mut cap = (n * size).min(MAX_COPY as u64);
        let room = DATA_CAP.saturating_sub((self.data + 7) & !7) as u64;
        cap = cap.min(room);
        cap -= cap % size;
        let key = t.ctrl + BUCKETS_KEY;
        if cap == 0 {
            self.follows.insert((r, key), Follow::Budget);
            return;
        }
        let data_op = FetchOp {
            flags: flags | FetchOp::FLAG_BACKWARD,
            len_scale: size as u16,
            ..ctrl_op
        };
        let Some(op) = self.push_follow(r, key, (base_op, base_slot), cap, data_op) else {
            return;
        };
        let payload = Payload::Elems { elem: t.elem, size };
        let id = self.new_region(Some(t.elem), cap, cap, op, payload, depth);
        self.follows.insert((r, key), Follow::Region(id));
        if self.contains_pointers(t.elem, 0) {
            self.queue.push_back(id);
        }
    }
}

impl Builder<'_, '_> {
    /// Plans the read of a Go 1.19-1.23 map's bucket array: `min(2^B, cap)` buckets from
    /// `hmap.buckets`, one op. Overflow buckets and the old array of a growing map are not
    /// read; the decoder says how many entries that leaves out.
    pub(super) fn follow_go_buckets(&mut self, r: RegionId, header: TypeId, depth: u8) {
        let Some(layout) = go_map_layout(self.table(), header) else {
            return;
        };
        self.loader.load(layout.bucket);
        let size = match self.table().size_of(layout.bucket) {
            Some(s) if s > 0 && s <= MAX_COPY as u64 => s,
            _ => {
                let why = "map buckets of unknown size".to_string();
                self.follows
                    .insert((r, layout.buckets), Follow::Skipped(why));
                return;
            }
        };
        let Some((base_op, base_slot)) = self.pointer_source(r, layout.buckets, depth, true) else {
            return;
        };
        let Word::Op {
            op: len_op,
            slot: len_slot,
        } = self.word(r, layout.b)
        else {
            let why = "bucket count not captured".to_string();
            self.follows
                .insert((r, layout.buckets), Follow::Skipped(why));
            return;
        };
        let mut cap = (go_bucket_cap(self.limits.max_elements) * size).min(MAX_COPY as u64);
        let room = DATA_CAP.saturating_sub((self.data + 7) & !7) as u64;
        cap = cap.min(room);
        cap -= cap % size;
        if cap == 0 {
            self.follows.insert((r, layout.buckets), Follow::Budget);
            return;
        }
        let template = FetchOp {
            kind: OpKind::Copy as u8,
            flags: FetchOp::FLAG_DYNAMIC_LEN | FetchOp::FLAG_POW2_COUNT,
            len_op: len_op as u8,
            len_slot,
            len_scale: size as u16,
            ..FetchOp::EMPTY
        };
        let from = (base_op, base_slot);
        let Some(op) = self.push_follow(r, layout.buckets, from, cap, template) else {
            return;
        };
        let payload = Payload::Elems {
            elem: layout.bucket,
            size,
        };
        let id = self.new_region(Some(layout.bucket), cap, cap, op, payload, depth);
        self.follows.insert((r, layout.buckets), Follow::Region(id));
        if self.contains_pointers(layout.bucket, 0) {
            self.queue.push_back(id);
        }
    }
}
