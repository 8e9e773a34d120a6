//! Hash maps and sets: entries read from the captured control bytes and buckets.

use super::{Bytes, Decoder};
use crate::{
    fetch_plan::{Follow, Payload, RegionId, BUCKETS_KEY},
    types::{go_map_layout, TypeId, TypeKind},
    value::Value,
};

/// Go's smallest tophash of a full cell (`minTopHash`): smaller values mark empty cells
/// (`emptyRest` 0, `emptyOne` 1) or evacuated ones (2 to 4).
const GO_MIN_TOP_HASH: u8 = 5;
/// Tophash of an old bucket's cell moved to the new array's first half (`evacuatedX`).
const GO_EVACUATED_X: u8 = 2;
/// Tophash of an old bucket's empty cell after evacuation (`evacuatedEmpty`).
const GO_EVACUATED_EMPTY: u8 = 4;
/// `hmap.flags` bit of a growth to the same size (`sameSizeGrow`).
const GO_SAME_SIZE_GROW: u8 = 8;
/// Cells per Go map bucket (`bucketCnt`).
const GO_BUCKET_CELLS: u64 = 8;

/// Where one hashbrown table lies in a value, as [`crate::types::Shape::HashTable`] says.
pub(super) struct TableAt {
    pub mask: u64,
    pub ctrl: u64,
    pub items: u64,
    pub elem: TypeId,
    pub set: bool,
}

impl Decoder<'_> {
    /// A hashbrown table (`HashMap`, `HashSet`) of type `name` at `off`: the full buckets
    /// among the first captured ones (control byte with the top bit clear), in bucket order.
    pub(super) fn hash_table(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        name: &str,
        t: TableAt,
        nest: usize,
    ) -> Value {
        let (items, mask) = match (b.word(off + t.items), b.word(off + t.mask)) {
            (Ok(i), Ok(m)) => (i, m),
            (Err(hole), _) | (_, Err(hole)) => return hole,
        };
        let wrap = |entries: Vec<Value>, total: Option<u64>| {
            if t.set {
                let keys = entries.into_iter().map(|e| first_field(e).0).collect();
                Value::set(name, keys, total)
            } else {
                let pairs = entries.into_iter().map(first_field).collect();
                Value::map(name, pairs, total)
            }
        };
        if items == 0 {
            return wrap(Vec::new(), None);
        }
        let ctrl = match self.payload(r, off + t.ctrl) {
            Ok((_, c)) => c,
            Err(why) => return why,
        };
        let (dr, data) = match self.payload(r, off + t.ctrl + BUCKETS_KEY) {
            Ok(x) => x,
            Err(why) => return why,
        };
        let size = match self.plan.regions[dr].payload {
            Payload::Elems { size, .. } => size.max(1),
            _ => return Value::unavailable("buckets of unknown size"),
        };
        // The buckets copy ends at `ctrl`: bucket i is the (i + 1)-th entry from its end.
        let in_data = data.buf.len() as u64 / size;
        let seen = in_data
            .min(ctrl.buf.len() as u64)
            .min(mask.saturating_add(1));
        let entries: Vec<Value> = (0..seen)
            .filter(|i| ctrl.buf[*i as usize] & 0x80 == 0)
            .map(|i| self.value(dr, &data, (in_data - 1 - i) * size, t.elem, nest + 1))
            .collect();
        let total = (entries.len() as u64) < items;
        wrap(entries, total.then_some(items))
    }
}

impl Decoder<'_> {
    /// A Go map (`map[K]V`, a pointer to `hash<K,V>`) at `off`: the full cells of the
    /// buckets captured, as Go 1.19-1.23 lay them out (`tophash`, `keys`, `values`).
    pub(super) fn go_map(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        name: &str,
        nest: usize,
    ) -> Value {
        let address = match b.word(off) {
            Ok(a) => a,
            Err(hole) => return hole,
        };
        if address == 0 {
            // A nil map reads like an empty one in Go.
            return Value::map(name, Vec::new(), None);
        }
        let hr = match self.plan.follows.get(&(r, off)) {
            Some(Follow::Region(h)) => *h,
            Some(Follow::Budget) => return Value::unavailable("capture budget exhausted"),
            Some(Follow::Skipped(why)) => return Value::unavailable(why.clone()),
            None => return Value::unavailable("map header not captured"),
        };
        let Some(header) = self.plan.regions[hr].ty else {
            return Value::unavailable("map header of unknown type");
        };
        let types = &self.plan.types;
        let Some(layout) = go_map_layout(types, header) else {
            return Value::unavailable("not a Go 1.19-1.23 map header (hash<K,V>); newer layouts (swiss tables, Go 1.24+) are not read yet");
        };
        let hb = self.region(hr);
        let count = match hb.word(layout.count) {
            Ok(c) => c,
            Err(hole) => return hole,
        };
        if count == 0 {
            return Value::map(name, Vec::new(), None);
        }
        let Some(cells) = bucket_cells(types, layout.bucket) else {
            return Value::unavailable("map bucket without tophash, keys and values");
        };
        let (br, bb) = match self.payload(hr, layout.buckets) {
            Ok(x) => x,
            Err(why) => return why,
        };
        let size = layout.bucket_size.max(1);
        let mut entries = Vec::new();
        let main = bb.buf.len() as u64 / size;
        self.go_buckets(br, &bb, main, &cells, nest, &mut entries);
        if let Some((or, ob, n)) = self.go_old_buckets(hr, &hb, header, layout.b, size) {
            self.go_buckets(or, &ob, n, &cells, nest, &mut entries);
        }
        // Fewer than `count`: a cap cut an array or a chain, or the old array of a
        // same-size growth was read in half; the map says how many it shows.
        let total = (entries.len() as u64) < count;
        Value::map(name, entries, total.then_some(count))
    }

    /// A growing map's old array as captured and how many of its buckets exist: 2^(B-1)
    /// after a doubling, 2^B after a same-size growth; `None` when not growing (or unread).
    fn go_old_buckets(
        &self,
        hr: RegionId,
        hb: &Bytes,
        header: TypeId,
        b_at: u64,
        size: u64,
    ) -> Option<(RegionId, Bytes, u64)> {
        let types = &self.plan.types;
        let at = types.member_offset(header, "oldbuckets")?;
        if hb.word(at).ok()? == 0 {
            return None;
        }
        let byte = |off| hb.read(off, 1).ok().map(|b| b[0]);
        let b = byte(b_at)?.min(31);
        let flags = byte(types.member_offset(header, "flags")?)?;
        let (or, ob) = self.payload(hr, at).ok()?;
        let doubled = flags & GO_SAME_SIZE_GROW == 0 && b > 0;
        let n = (1u64 << (b - u8::from(doubled))).min(ob.buf.len() as u64 / size);
        Some((or, ob, n))
    }

    /// The full cells of the first `n` buckets of `bb` (region `br`) and of the overflow
    /// chains walked from them. A bucket evacuated by a growth (its first tophash
    /// `evacuatedX`, `evacuatedY` or `evacuatedEmpty`) has its entries in the new array.
    fn go_buckets(
        &self,
        br: RegionId,
        bb: &Bytes,
        n: u64,
        cells: &Cells,
        nest: usize,
        entries: &mut Vec<(Value, Value)>,
    ) {
        let size = cells.size;
        for k in 0..n {
            let at = k * size;
            let first = bb.buf.get((at + cells.tophash) as usize).copied();
            if first.is_some_and(|t| (GO_EVACUATED_X..=GO_EVACUATED_EMPTY).contains(&t)) {
                continue;
            }
            self.go_cells(br, bb, at, cells, nest, entries);
            let Some(link) = cells.overflow else {
                continue;
            };
            // Chains are `Chain` ops recorded at the bucket's `overflow` word; a null
            // link (no overflow) is a failed op and reads as no buckets.
            let Ok((cr, cb)) = self.payload(br, at + link) else {
                continue;
            };
            for j in 0..cb.buf.len() as u64 / size {
                self.go_cells(cr, &cb, j * size, cells, nest, entries);
            }
        }
    }

    /// The full cells of the bucket at `at`: tophash at least `minTopHash` (smaller ones
    /// are `emptyRest`, `emptyOne` or evacuated marks).
    fn go_cells(
        &self,
        br: RegionId,
        bb: &Bytes,
        at: u64,
        cells: &Cells,
        nest: usize,
        entries: &mut Vec<(Value, Value)>,
    ) {
        for i in 0..GO_BUCKET_CELLS {
            let top = bb
                .buf
                .get((at + cells.tophash + i) as usize)
                .copied()
                .unwrap_or(0);
            if top < GO_MIN_TOP_HASH {
                continue;
            }
            let key = self.value(
                br,
                bb,
                at + cells.keys + i * cells.key_size,
                cells.key,
                nest + 1,
            );
            let val = self.value(
                br,
                bb,
                at + cells.values + i * cells.value_size,
                cells.value,
                nest + 1,
            );
            entries.push((key, val));
        }
    }
}

/// Offsets and element types of a Go map bucket's cells, its size and `overflow` link.
struct Cells {
    size: u64,
    overflow: Option<u64>,
    tophash: u64,
    keys: u64,
    key: TypeId,
    key_size: u64,
    values: u64,
    value: TypeId,
    value_size: u64,
}

fn bucket_cells(types: &crate::types::TypeTable, bucket: TypeId) -> Option<Cells> {
    let TypeKind::Aggregate(agg) = &types.strip(bucket)?.1.kind else {
        return None;
    };
    let field = |n: &str| agg.members.iter().find(|m| m.name == n);
    let elem = |ty: TypeId| match &types.strip(ty)?.1.kind {
        TypeKind::Array { elem, .. } => Some((*elem, types.size_of(*elem)?)),
        _ => None,
    };
    let (keys, values) = (field("keys")?, field("values").or_else(|| field("elems"))?);
    let (key, key_size) = elem(keys.ty)?;
    let (value, value_size) = elem(values.ty)?;
    Some(Cells {
        size: types.size_of(bucket)?.max(1),
        overflow: field("overflow").map(|m| m.offset),
        tophash: field("tophash")?.offset,
        keys: keys.offset,
        key,
        key_size,
        values: values.offset,
        value,
        value_size,
    })
}

/// A `(K, V)` tuple value as its two fields (`()` when one is missing).
fn first_field(entry: Value) -> (Value, Value) {
    match entry {
        Value::Struct { fields, .. } => {
            let mut it = fields.into_iter().map(|(_, v)| v);
            let k = it.next().unwrap_or(Value::Unit);
            let v = it.next().unwrap_or(Value::Unit);
            (k, v)
        }
        other => (other, Value::Unit),
    }
}
