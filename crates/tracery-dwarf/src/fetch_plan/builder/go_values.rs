//! Go runtime values in the plan: an interface's data read for each dynamic type it may
//! hold, a channel's header, and a `time.Time`'s location and zone.
//!
//! An interface's dynamic type is known only at the hit, so the plan copies the bytes its
//! data word points to once, and lays that copy out as a region per candidate type (the
//! program's own types and common ones for `interface{}`, the linker's itabs for the others).
//! The decoder picks the candidate the hit's type word names. Only a few candidates get
//! the pointers inside their value followed, since each costs ops at every hit.

use tracery_common::{FetchOp, OpKind, MAX_COPY};

use super::{Builder, Follow, Part, Payload, Region, RegionId, ITAB_BYTES};
use crate::{
    binary::Binary,
    fetch_plan::{Candidate, GoTypes},
    render::SourceLanguage,
    scope::Units,
    types::{Aggregate, TypeId, TypeKind},
    value::Value,
};

/// Most bytes of an interface's data copied at the hit: the small structs errors and values
/// usually are. A larger value shows its first bytes; the rest says it was not captured.
const IFACE_DATA_CAP: u64 = 128;
/// Most dynamic types one interface is prepared for.
const IFACE_CANDIDATES: usize = 24;
/// Of those, how many get the strings, slices and pointers inside their value followed:
/// each costs ops at every hit, whichever type the interface holds then.
const IFACE_FOLLOWED: usize = 3;
/// Bytes of a channel's `runtime.hchan` copied: `qcount`, `dataqsiz`, `buf`, `elemsize`
/// and `closed` (offset 28) in Go 1.19 to 1.23.
const HCHAN_BYTES: u64 = 32;
/// Standard types an `interface{}` often holds, prepared besides the program's own.
const COMMON_TYPES: &[&str] = &[
    "string",
    "int",
    "int64",
    "uint64",
    "float64",
    "bool",
    "*errors.errorString",
    "*fmt.wrapError",
    "time.Time",
    "time.Duration",
];

/// Where the Go type index comes from, set once per plan.
pub(crate) struct GoSource<'u, 'a> {
    pub binary: &'a Binary,
    pub units: &'u Units<'a>,
    /// The probed function's package (`main`, `github.com/acme/orders`): its types come
    /// first among an `interface{}`'s candidates.
    pub package: String,
}

/// The package of a Go function name: `github.com/a/b` of `github.com/a/b.(*T).M`.
pub(crate) fn go_package(function: &str) -> String {
    let slash = function.rfind('/').map_or(0, |i| i + 1);
    let dot = function[slash..]
        .find('.')
        .map_or(function.len(), |i| slash + i);
    function[..dot].to_string()
}

impl<'u, 'a> Builder<'u, 'a> {
    /// Lets interfaces in this plan find their dynamic types in `binary`'s Go type index.
    pub fn set_go_source(&mut self, binary: &'a Binary, units: &'u Units<'a>, function: &str) {
        if self.lang == SourceLanguage::Go {
            self.go_source = Some(GoSource {
                binary,
                units,
                package: go_package(function),
            });
        }
    }

    /// The Go type index, when an interface needed it.
    pub fn take_go_types(&mut self) -> Option<GoTypes> {
        if !self.needs_go_types {
            return None;
        }
        self.go_index();
        self.go.take()
    }

    fn go_index(&mut self) -> Option<&mut GoTypes> {
        if self.go.is_none() {
            let source = self.go_source.as_ref()?;
            self.go = Some(GoTypes::read(source.binary, source.units));
        }
        self.go.as_mut()
    }

    /// Go values whose plan is not their DWARF struct's; true when handled here.
    pub(super) fn scan_go(&mut self, r: RegionId, off: u64, sid: TypeId, depth: u8) -> bool {
        let Some(t) = self.table().get(sid) else {
            return false;
        };
        match t.kind.clone() {
            TypeKind::Aggregate(agg) if t.name == "time.Time" => {
                self.follow_go_time(r, off, &agg, depth);
                true
            }
            TypeKind::Pointer {
                target: Some(target),
                ..
            } => {
                self.loader.load(target);
                if !self.table().name_of(target).starts_with("hchan<") {
                    return false;
                }
                // Length, capacity and closed only: the buffer and wait queues stay behind.
                self.follow_leaf(r, off, None, HCHAN_BYTES, depth);
                true
            }
            _ => false,
        }
    }

    /// Follows the pointer at (`r`, `off`) into a region that is not scanned for pointers.
    fn follow_leaf(
        &mut self,
        r: RegionId,
        off: u64,
        ty: Option<TypeId>,
        size: u64,
        depth: u8,
    ) -> Option<RegionId> {
        let from = self.pointer_source(r, off, depth, true)?;
        let cap = size.min(MAX_COPY as u64);
        let template = FetchOp {
            kind: OpKind::Copy as u8,
            ..FetchOp::EMPTY
        };
        let op = self.push_follow(r, off, from, cap, template)?;
        let id = self.new_region(ty, size, cap, op, Payload::Fixed, depth);
        self.follows.insert((r, off), Follow::Region(id));
        Some(id)
    }

    /// A string member `name` of the struct `agg` at `off` in region `r`: its bytes.
    fn follow_go_string(&mut self, r: RegionId, off: u64, agg: &Aggregate, name: &str, depth: u8) {
        let Some(m) = agg.members.iter().find(|m| m.name == name) else {
            return;
        };
        let cap = u64::from(self.limits.max_string);
        let at = off + m.offset;
        self.follow_dynamic(r, at, at + 8, Payload::Text, 1, cap, depth);
    }

    /// `time.Time { wall, ext, loc }`: `loc` and, of the `Location`, its name and cached
    /// zone (name and offset), which is the zone of any time in `[cacheStart, cacheEnd)`.
    /// The transition tables are not read.
    fn follow_go_time(&mut self, r: RegionId, off: u64, agg: &Aggregate, depth: u8) {
        let Some(loc) = agg.members.iter().find(|m| m.name == "loc") else {
            return;
        };
        let Some(TypeKind::Pointer {
            target: Some(loc_ty),
            ..
        }) = self.table().strip(loc.ty).map(|(_, t)| t.kind.clone())
        else {
            return;
        };
        self.loader.load(loc_ty);
        let Some((loc_ty, TypeKind::Aggregate(loc_agg), Some(size))) = self
            .table()
            .strip(loc_ty)
            .map(|(id, t)| (id, t.kind.clone(), t.size))
        else {
            return;
        };
        let Some(lr) = self.follow_leaf(r, off + loc.offset, Some(loc_ty), size, depth) else {
            return;
        };
        let depth = depth + 1;
        self.follow_go_string(lr, 0, &loc_agg, "name", depth);
        let Some(cz) = loc_agg.members.iter().find(|m| m.name == "cacheZone") else {
            return;
        };
        let Some(TypeKind::Pointer {
            target: Some(zone_ty),
            ..
        }) = self.table().strip(cz.ty).map(|(_, t)| t.kind.clone())
        else {
            return;
        };
        self.loader.load(zone_ty);
        let Some((zone_ty, TypeKind::Aggregate(zone_agg), Some(zsize))) = self
            .table()
            .strip(zone_ty)
            .map(|(id, t)| (id, t.kind.clone(), t.size))
        else {
            return;
        };
        if let Some(zr) = self.follow_leaf(lr, cz.offset, Some(zone_ty), zsize, depth) {
            self.follow_go_string(zr, 0, &zone_agg, "name", depth + 1);
        }
    }

    /// An interface at (`r`, `off`) named `iface` (`error`, `interface {}`): its itab (for
    /// a non-empty interface) and its data, as each candidate dynamic type.
    pub(super) fn follow_go_interface(
        &mut self,
        r: RegionId,
        off: u64,
        eface: bool,
        iface: &str,
        depth: u8,
    ) {
        self.needs_go_types = true;
        if !eface {
            self.follow_fixed(r, off, None, ITAB_BYTES as u64, depth);
        }
        if depth >= self.limits.max_depth {
            return;
        }
        let mut planned = Vec::new();
        for ty in self.iface_candidates(eface, iface) {
            self.loader.load(ty);
            // A pointer's target is loaded only when followed: here it is the view's type.
            if let Some(TypeKind::Pointer {
                target: Some(t), ..
            }) = self.table().strip(ty).map(|(_, t)| t.kind.clone())
            {
                self.loader.load(t);
            }
            let (direct, view) = self.direct_view(ty);
            planned.push((ty, direct, view));
        }
        let size = |b: &Self, v: Option<TypeId>| v.and_then(|v| b.table().size_of(v)).unwrap_or(0);
        let want = planned
            .iter()
            .map(|(_, _, v)| size(self, *v))
            .max()
            .unwrap_or(0);
        let cap = want.min(IFACE_DATA_CAP);
        let chunk = if cap == 0 {
            None
        } else {
            self.follow_leaf(r, off + 8, None, cap, depth)
        };
        let op = chunk.and_then(|c| match self.regions[c].parts.first() {
            Some(Part::Op { op, .. }) => Some(*op),
            _ => None,
        });
        let mut followed = 0;
        let mut candidates = Vec::new();
        for (ty, direct, view) in planned {
            let region = match (view, op) {
                (Some(v), Some(op)) if size(self, Some(v)) > 0 => {
                    let id = self.view_region(v, op, cap, depth);
                    if followed < IFACE_FOLLOWED && self.contains_pointers(v, 0) {
                        followed += 1;
                        self.queue.push_back(id);
                    }
                    Some(id)
                }
                _ => None,
            };
            candidates.push(Candidate { ty, direct, region });
        }
        if let Some(g) = self.go_index() {
            g.values.insert((r, off), candidates);
        }
    }

    /// A region over the first `cap` bytes op `op` copied, read as a `ty`.
    fn view_region(&mut self, ty: TypeId, op: usize, cap: u64, depth: u8) -> RegionId {
        let len = self.table().size_of(ty).unwrap_or(0);
        let mut parts = vec![Part::Op {
            at: 0,
            len: len.min(cap),
            op,
        }];
        if len > cap {
            parts.push(Part::Missing {
                at: cap,
                len: len - cap,
                why: Value::unavailable(format!(
                    "not captured: only the first {cap} bytes of an interface's value are read"
                )),
            });
        }
        self.regions.push(Region {
            ty: Some(ty),
            len,
            parts,
            payload: Payload::Fixed,
            depth: depth + 1,
        });
        self.regions.len() - 1
    }

    /// Whether a value of `ty` is stored in an interface's data word itself (pointer-shaped,
    /// Go's `kindDirectIface`: pointers, maps, channels, funcs, and structs or arrays of one
    /// such), and the type of the bytes the data word points to, when worth reading.
    fn direct_view(&self, ty: TypeId) -> (bool, Option<TypeId>) {
        let Some((sid, t)) = self.table().strip(ty) else {
            return (false, None);
        };
        match &t.kind {
            TypeKind::Pointer { target, .. } => {
                let plain = target.filter(|t| {
                    let name = self.table().name_of(*t);
                    !name.starts_with("hash<") && !name.starts_with("hchan<")
                });
                (true, plain)
            }
            _ if self.pointer_shaped(sid, 0) => (true, None),
            _ => (false, Some(ty)),
        }
    }

    fn pointer_shaped(&self, ty: TypeId, nest: usize) -> bool {
        let Some((_, t)) = self.table().strip(ty) else {
            return false;
        };
        match &t.kind {
            TypeKind::Pointer { .. } => true,
            _ if nest > 4 => false,
            TypeKind::Aggregate(a) if a.variants.is_none() && a.members.len() == 1 => {
                self.pointer_shaped(a.members[0].ty, nest + 1)
            }
            TypeKind::Array { elem, dims } if dims.as_slice() == [Some(1)] => {
                self.pointer_shaped(*elem, nest + 1)
            }
            _ => false,
        }
    }

    /// The dynamic types an interface is prepared for, most likely first: for a non-empty
    /// interface, the concrete types of the binary's itabs for it; for `interface{}`, the
    /// probed package's types and [`COMMON_TYPES`]. At most [`IFACE_CANDIDATES`].
    fn iface_candidates(&mut self, eface: bool, iface: &str) -> Vec<TypeId> {
        let package = self
            .go_source
            .as_ref()
            .map(|s| format!("{}.", s.package))
            .unwrap_or_default();
        let Some(g) = self.go_index() else {
            return Vec::new();
        };
        let own = |n: &str| !package.is_empty() && n.trim_start_matches('*').starts_with(&package);
        let mut names: Vec<&str> = if eface {
            g.by_name
                .keys()
                .map(String::as_str)
                .filter(|n| own(n))
                .chain(COMMON_TYPES.iter().copied())
                .collect()
        } else {
            g.itabs
                .iter()
                .filter(|(_, i)| i == iface)
                .map(|(t, _)| t.as_str())
                .collect()
        };
        names.sort_by_key(|n| (!own(n), !COMMON_TYPES.contains(n), n.to_string()));
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| g.types.get(g.by_name.get(n)?).copied())
            .take(IFACE_CANDIDATES)
            .collect()
    }
}
