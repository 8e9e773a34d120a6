//! Following the tables behind hash maps: hashbrown's control bytes and the buckets below
//! them, each a single capped op whose length comes from the table's own bucket mask; Go
//! maps' bucket arrays, their overflow chains and a growing map's old array.

use tracery_common::{FetchOp, OpKind, DATA_CAP, MAX_COPY};

use super::{Builder, Follow, Payload, RegionId, Word, NESTED_FOLLOWS};
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
    /// `hmap.buckets`, one op. Its overflow chains and a growing map's old array are
    /// planned later ([`Builder::follow_go_extras`]), after every main array's cells.
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
        let Some(from) = self.pointer_source(r, layout.buckets, depth, true) else {
            return;
        };
        let array = GoArray {
            ptr: layout.buckets,
            b: layout.b,
            bucket: layout.bucket,
            size,
            scale: size,
        };
        let Some(id) = self.go_bucket_array(r, array, from, depth) else {
            return;
        };
        self.go_extras.push_back(GoMapExtras {
            header_region: r,
            header,
            main: id,
            depth,
        });
    }

    /// One op copying `min(2^B * scale, cap)` bytes of buckets from the pointer at
    /// (r, a.ptr), `B` being the byte at (r, a.b); recorded under (r, a.ptr).
    fn go_bucket_array(
        &mut self,
        r: RegionId,
        a: GoArray,
        from: (usize, u16),
        depth: u8,
    ) -> Option<RegionId> {
        let GoArray {
            ptr,
            b,
            bucket,
            size,
            scale,
        } = a;
        let Word::Op {
            op: len_op,
            slot: len_slot,
        } = self.word(r, b)
        else {
            let why = "bucket count not captured".to_string();
            self.follows.insert((r, ptr), Follow::Skipped(why));
            return None;
        };
        let mut cap = (go_bucket_cap(self.limits.max_elements) * size).min(MAX_COPY as u64);
        let room = DATA_CAP.saturating_sub((self.data + 7) & !7) as u64;
        cap = cap.min(room);
        cap -= cap % size;
        if cap == 0 {
            self.follows.insert((r, ptr), Follow::Budget);
            return None;
        }
        let template = FetchOp {
            kind: OpKind::Copy as u8,
            flags: FetchOp::FLAG_DYNAMIC_LEN | FetchOp::FLAG_POW2_COUNT,
            len_op: len_op as u8,
            len_slot,
            len_scale: scale as u16,
            ..FetchOp::EMPTY
        };
        let op = self.push_follow(r, ptr, from, cap, template)?;
        let payload = Payload::Elems { elem: bucket, size };
        let id = self.new_region(Some(bucket), cap, cap, op, payload, depth);
        self.follows.insert((r, ptr), Follow::Region(id));
        if self.contains_pointers(bucket, 0) {
            self.queue.push_back(id);
        }
        Some(id)
    }

    /// Plans, once every main array's cells are planned, a Go map's overflow chains and
    /// the old bucket array of a growing map (with its chains). The decoder keeps the old
    /// cells not yet evacuated, so each entry shows once.
    pub(super) fn follow_go_extras(&mut self, m: GoMapExtras) {
        let Some(layout) = go_map_layout(self.table(), m.header) else {
            return;
        };
        let size = layout.bucket_size;
        let Some(link) = self.table().member_offset(layout.bucket, "overflow") else {
            return;
        };
        // A Chain op reads whole buckets and the link inside one.
        if link + 8 > size || size > MAX_COPY as u64 {
            return;
        }
        self.follow_go_overflow(m.main, m.depth, layout.bucket, size, link);
        let Some(old) = self.table().member_offset(m.header, "oldbuckets") else {
            return;
        };
        let r = m.header_region;
        let Some(from) = self.pointer_source(r, old, m.depth, true) else {
            return;
        };
        // Doubling growth (the usual one) leaves 2^(B-1) old buckets: half a bucket per
        // count of 2^B. A same-size growth's 2^B old buckets are then read only in half,
        // and the decoder says the map is partial.
        let array = GoArray {
            ptr: old,
            b: layout.b,
            bucket: layout.bucket,
            size,
            scale: size / 2,
        };
        let Some(id) = self.go_bucket_array(r, array, from, m.depth) else {
            return;
        };
        self.follow_go_overflow(id, m.depth, layout.bucket, size, link);
    }

    /// One `Chain` op per bucket of array region `arr` (at most [`GO_MAX_OVERFLOW`]),
    /// walking its overflow buckets from the `overflow` word at `link`; recorded under
    /// (arr, bucket offset + link). The chains belong to the array: same depth.
    fn follow_go_overflow(
        &mut self,
        arr: RegionId,
        depth: u8,
        bucket: TypeId,
        size: u64,
        link: u64,
    ) {
        let total = GO_MAX_OVERFLOW.min(go_bucket_cap(self.limits.max_elements));
        let heads = (self.regions[arr].len / size)
            .min(total)
            .min(NESTED_FOLLOWS);
        let per_chain = (total / heads.max(1)).max(1);
        for k in 0..heads {
            let at = k * size + link;
            let Some(from) = self.pointer_source(arr, at, depth, true) else {
                continue;
            };
            let mut cap = (per_chain * size).min(MAX_COPY as u64);
            let room = DATA_CAP.saturating_sub((self.data + 7) & !7) as u64;
            cap = cap.min(room);
            cap -= cap % size;
            if cap == 0 {
                self.follows.insert((arr, at), Follow::Budget);
                continue;
            }
            let template = FetchOp {
                kind: OpKind::Chain as u8,
                len_slot: link as u16,
                len_scale: size as u16,
                ..FetchOp::EMPTY
            };
            let Some(op) = self.push_follow(arr, at, from, cap, template) else {
                continue;
            };
            let payload = Payload::Elems { elem: bucket, size };
            let id = self.new_region(Some(bucket), cap, cap, op, payload, depth);
            self.follows.insert((arr, at), Follow::Region(id));
            if self.contains_pointers(bucket, 0) {
                self.queue.push_back(id);
            }
        }
    }
}

/// Most overflow buckets the chains of one Go bucket array copy (the main one, and the old
/// one of a growing map): at Go's load factor (6.5 of 8 cells) chains are rare and short,
/// and every bucket copied costs its cells' payload ops too.
const GO_MAX_OVERFLOW: u64 = 8;

/// A Go bucket array to copy: the pointer and `B` offsets in the header, the bucket type
/// and size, and the bytes per count of `2^B`.
struct GoArray {
    ptr: u64,
    b: u64,
    bucket: TypeId,
    size: u64,
    scale: u64,
}

/// A Go map whose overflow and old buckets are still to plan.
pub(super) struct GoMapExtras {
    /// The `hash<K,V>` header's region and type.
    pub header_region: RegionId,
    pub header: TypeId,
    /// The main bucket array's region.
    pub main: RegionId,
    /// The header region's depth.
    pub depth: u8,
}
