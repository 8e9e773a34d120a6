//! Go runtime type descriptors and the DWARF types they describe: the dynamic type of an
//! interface value, and the types a plan prepares to decode its data word as.
//!
//! Every Go type the program uses dynamically has a descriptor at `runtime.types` plus an
//! offset, and its DWARF type carries that offset (`DW_AT_go_runtime_type`). An interface's
//! type word (or its itab's `_type`) minus the load bias and `runtime.types` is that offset.

use std::collections::HashMap;

use gimli::AttributeValue;

use super::RegionId;
use crate::{
    binary::Binary,
    render::SourceLanguage,
    scope::{DieRef, Units},
    types::{TypeId, DW_AT_GO_RUNTIME_TYPE},
};

/// Go runtime type names and types, for the dynamic type and value of interfaces.
#[derive(Clone, Debug, Default)]
pub(crate) struct GoTypes {
    /// Link-time address of `runtime.types`, the base of `DW_AT_go_runtime_type` offsets.
    pub base: Option<u64>,
    /// Offset from `base` to the name of the type described there.
    pub names: HashMap<u64, String>,
    /// Offset from `base` to the DWARF type described there.
    pub types: HashMap<u64, TypeId>,
    /// Runtime offset of each named type, to find the candidates of an interface.
    pub by_name: HashMap<String, u64>,
    /// `(concrete type, interface)` of every itab the linker laid out (`go.itab.T,I`).
    pub itabs: Vec<(String, String)>,
    /// The dynamic types each captured interface (region, offset of its type word) was
    /// prepared for, with where their value's bytes lie.
    pub values: HashMap<(RegionId, u64), Vec<Candidate>>,
}

/// One dynamic type an interface's data was prepared for.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    /// The dynamic type.
    pub ty: TypeId,
    /// Pointer-shaped: the data word is the value itself (Go's `kindDirectIface`), and
    /// `region` holds what it points to.
    pub direct: bool,
    /// The data bytes viewed as the value (or, when `direct`, as the pointer's target);
    /// `None` when they were not read (a pointer-shaped struct, a map, a channel).
    pub region: Option<RegionId>,
}

impl GoTypes {
    /// Reads every Go unit's `DW_AT_go_runtime_type`, and the binary's itab symbols. Costs
    /// one walk of all Go units, paid only by plans with an interface in scope.
    pub fn read(binary: &Binary, units: &Units<'_>) -> Self {
        let mut g = GoTypes {
            base: binary.symbol_address("runtime.types").map(|a| a.0),
            ..GoTypes::default()
        };
        for i in 0..units.len() {
            let Ok(info) = units.get(i) else { continue };
            if SourceLanguage::from_dwarf(info.lang) != SourceLanguage::Go {
                continue;
            }
            let mut cursor = info.unit.entries();
            while let Ok(Some(e)) = cursor.next_dfs() {
                let Some(off) = e.attr_value(DW_AT_GO_RUNTIME_TYPE).and_then(|v| match v {
                    AttributeValue::Addr(a) => Some(a),
                    other => other.udata_value(),
                }) else {
                    continue;
                };
                if off == 0 || g.names.contains_key(&off) {
                    continue;
                }
                if let Some(n) = units.name(i, e) {
                    let die = DieRef {
                        unit: i,
                        offset: e.offset(),
                    };
                    g.types.insert(off, TypeId(units.global(die)));
                    g.by_name.entry(n.clone()).or_insert(off);
                    g.names.insert(off, n);
                }
            }
        }
        // Go 1.19 names itabs `go.itab.T,I`; Go 1.20 and later `go:itab.T,I`.
        for name in binary.symbol_names_after(&["go.itab.", "go:itab."]) {
            if let Some((t, i)) = name.rsplit_once(',') {
                g.itabs.push((t.to_string(), i.to_string()));
            }
        }
        g
    }

    /// The runtime offset of the type descriptor at process address `ptr`.
    pub fn offset_of(&self, ptr: u64, bias: u64) -> Option<u64> {
        Some(ptr.wrapping_sub(bias).wrapping_sub(self.base?))
    }
}
