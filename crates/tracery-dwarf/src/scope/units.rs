//! Lazy access to the compilation units of one binary, by index or `.debug_info` offset.
//!
//! Parsing a unit (abbreviations, line program header) costs a little, so units are parsed on
//! first use and kept for the life of one [`Units`]. A plan compilation builds one `Units`
//! and drops it when the plan is done.

use std::{cell::OnceCell, collections::HashMap};

use gimli::{AttributeValue, DebugInfoOffset, Reader as _, UnitHeader, UnitOffset};

use crate::binary::Reader;

/// A DIE anywhere in `.debug_info`: unit index and offset inside that unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DieRef {
    pub unit: usize,
    pub offset: UnitOffset,
}

/// One parsed unit and what is derived from it on demand.
pub(crate) struct UnitInfo {
    pub unit: gimli::Unit<Reader>,
    pub lang: Option<gimli::DwLang>,
    parents: OnceCell<HashMap<UnitOffset, UnitOffset>>,
}

/// All units of a binary, parsed lazily.
pub(crate) struct Units<'a> {
    pub dwarf: &'a gimli::Dwarf<Reader>,
    headers: Vec<UnitHeader<Reader>>,
    parsed: Vec<OnceCell<Result<UnitInfo, gimli::Error>>>,
}

impl<'a> Units<'a> {
    /// Reads the unit headers (cheap: no DIE is parsed).
    pub fn new(dwarf: &'a gimli::Dwarf<Reader>) -> Result<Self, gimli::Error> {
        let mut headers = Vec::new();
        let mut iter = dwarf.units();
        while let Some(h) = iter.next()? {
            headers.push(h);
        }
        let parsed = headers.iter().map(|_| OnceCell::new()).collect();
        Ok(Self {
            dwarf,
            headers,
            parsed,
        })
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// The parsed unit at `index`.
    pub fn get(&self, index: usize) -> Result<&UnitInfo, gimli::Error> {
        let cell = &self.parsed[index];
        let r = cell.get_or_init(|| {
            let unit = self.dwarf.unit(self.headers[index].clone())?;
            let lang = {
                let mut entries = unit.entries();
                entries.next_entry()?;
                entries
                    .current()
                    .and_then(|e| e.attr_value(gimli::DW_AT_language))
                    .and_then(|v| match v {
                        AttributeValue::Language(l) => Some(l),
                        _ => None,
                    })
            };
            Ok(UnitInfo {
                unit,
                lang,
                parents: OnceCell::new(),
            })
        });
        r.as_ref().map_err(|e| *e)
    }

    fn start(&self, index: usize) -> u64 {
        self.headers[index]
            .debug_info_offset()
            .map_or(u64::MAX, |o| o.0 as u64)
    }

    /// The unit holding a `.debug_info` offset.
    pub fn at_offset(&self, offset: u64) -> Option<DieRef> {
        let i = self
            .headers
            .partition_point(|h| h.debug_info_offset().is_some_and(|o| o.0 as u64 <= offset));
        let i = i.checked_sub(1)?;
        let h = &self.headers[i];
        let start = self.start(i);
        let unit_off = DebugInfoOffset(offset as usize).to_unit_offset(h)?;
        (offset >= start).then_some(DieRef {
            unit: i,
            offset: unit_off,
        })
    }

    /// The `.debug_info` offset of a DIE: a stable id for types.
    pub fn global(&self, die: DieRef) -> u64 {
        self.start(die.unit) + die.offset.0 as u64
    }

    /// Follows a reference attribute (`DW_AT_type`, `DW_AT_abstract_origin`, ...).
    pub fn follow(&self, from: usize, value: AttributeValue<Reader>) -> Option<DieRef> {
        match value {
            AttributeValue::UnitRef(offset) => Some(DieRef { unit: from, offset }),
            AttributeValue::DebugInfoRef(o) => self.at_offset(o.0 as u64),
            _ => None,
        }
    }

    /// Reads one DIE.
    pub fn entry(
        &self,
        die: DieRef,
    ) -> Result<gimli::DebuggingInformationEntry<Reader>, gimli::Error> {
        self.get(die.unit)?.unit.entry(die.offset)
    }

    /// The parent of a DIE, from a one-time walk of its unit.
    pub fn parent(&self, die: DieRef) -> Option<DieRef> {
        let info = self.get(die.unit).ok()?;
        let parents = info.parents.get_or_init(|| parent_map(&info.unit));
        parents.get(&die.offset).map(|&offset| DieRef {
            unit: die.unit,
            offset,
        })
    }

    /// `a::b::name` for a DIE nested in namespaces, structs or enums (Rust, C++); the name
    /// itself for languages whose DWARF names are already qualified (Go) or flat (C).
    pub fn qualified_name(&self, die: DieRef, name: &str) -> String {
        let mut parts = vec![name.to_string()];
        let mut cur = die;
        while let Some(p) = self.parent(cur) {
            let Ok(e) = self.entry(p) else { break };
            match e.tag() {
                gimli::DW_TAG_namespace
                | gimli::DW_TAG_structure_type
                | gimli::DW_TAG_class_type
                | gimli::DW_TAG_union_type
                | gimli::DW_TAG_enumeration_type => {
                    if let Some(n) = self.name(p.unit, &e) {
                        parts.push(n);
                    }
                }
                _ => break,
            }
            cur = p;
        }
        parts.reverse();
        parts.join("::")
    }

    /// `DW_AT_name` of an entry as a string.
    pub fn name(
        &self,
        unit: usize,
        e: &gimli::DebuggingInformationEntry<Reader>,
    ) -> Option<String> {
        self.attr_string(unit, e.attr_value(gimli::DW_AT_name)?)
    }

    /// A string-valued attribute.
    pub fn attr_string(&self, unit: usize, v: AttributeValue<Reader>) -> Option<String> {
        let info = self.get(unit).ok()?;
        let s = self.dwarf.attr_string(&info.unit, v).ok()?;
        Some(s.to_string_lossy().ok()?.into_owned())
    }

    /// Attribute `at` of a DIE, looked up through `DW_AT_abstract_origin` and
    /// `DW_AT_specification` when the DIE itself lacks it.
    pub fn inherited(
        &self,
        die: DieRef,
        at: gimli::DwAt,
    ) -> Option<(DieRef, AttributeValue<Reader>)> {
        let mut cur = die;
        for _ in 0..8 {
            let e = self.entry(cur).ok()?;
            if let Some(v) = e.attr_value(at) {
                return Some((cur, v));
            }
            let next = e
                .attr_value(gimli::DW_AT_abstract_origin)
                .or_else(|| e.attr_value(gimli::DW_AT_specification))?;
            cur = self.follow(cur.unit, next)?;
        }
        None
    }

    /// True when the unit's address ranges include `addr`.
    pub fn unit_covers(&self, index: usize, addr: u64) -> Result<bool, gimli::Error> {
        let info = self.get(index)?;
        let mut ranges = self.dwarf.unit_ranges(&info.unit)?;
        while let Some(r) = ranges.next()? {
            if r.begin <= addr && addr < r.end {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// True when a DIE's own ranges (`DW_AT_low_pc`/`high_pc`/`ranges`) include `addr`.
    pub fn die_covers(
        &self,
        unit: usize,
        e: &gimli::DebuggingInformationEntry<Reader>,
        addr: u64,
    ) -> Result<bool, gimli::Error> {
        let info = self.get(unit)?;
        if crate::index::high_pc_wraps(self.dwarf, &info.unit, e) {
            return Ok(false);
        }
        let mut ranges = self.dwarf.die_ranges(&info.unit, e)?;
        while let Some(r) = ranges.next()? {
            if r.begin <= addr && addr < r.end {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn parent_map(unit: &gimli::Unit<Reader>) -> HashMap<UnitOffset, UnitOffset> {
    let mut map = HashMap::new();
    // Ancestors of the current entry, indexed by depth (the cursor reports absolute depth).
    let mut stack: Vec<UnitOffset> = Vec::new();
    let mut cursor = unit.entries();
    while let Ok(Some(e)) = cursor.next_dfs() {
        stack.truncate(e.depth().max(0) as usize);
        if let Some(&p) = stack.last() {
            map.insert(e.offset(), p);
        }
        stack.push(e.offset());
    }
    map
}
