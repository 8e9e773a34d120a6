//! The variables in scope at one instruction address.
//!
//! The function whose ranges contain the address gives its parameters and locals; lexical
//! blocks count only when their ranges contain the address; every inlined subroutine that
//! contains it adds its own parameters and locals as a separate frame, named after the
//! inlined function. Names and types of inlined or out-of-line instances come through
//! `DW_AT_abstract_origin`.

mod units;

use gimli::AttributeValue;

pub(crate) use units::{DieRef, Units};

use crate::{binary::Reader, render::SourceLanguage, value::VarKind};

/// One variable of the scope, before its location is compiled.
pub(crate) struct ScopeVar {
    pub name: String,
    pub kind: VarKind,
    /// The inlined function it belongs to; `None` for the probed function.
    pub frame: Option<String>,
    pub die: DieRef,
    /// The DIE holding `DW_AT_type` (the variable itself or its abstract origin).
    pub type_die: Option<DieRef>,
    pub location: Option<AttributeValue<Reader>>,
    pub const_value: Option<AttributeValue<Reader>>,
    /// A local declared at or after the line being executed in its frame: whatever its
    /// storage holds is not its value yet. Holds the declaration line.
    pub not_yet_declared: Option<u64>,
}

/// The function containing an address and its variables there.
pub(crate) struct Scope {
    pub function: String,
    pub unit: usize,
    pub lang: SourceLanguage,
    pub frame_base: Option<AttributeValue<Reader>>,
    /// A Rust function with the Rust ABI (mangled name): aggregates over two words are
    /// passed by reference, never by value on the stack.
    pub rust_abi: bool,
    pub vars: Vec<ScopeVar>,
}

/// Finds the function containing `addr` and collects what is in scope there. `hint` is the
/// unit that probably holds it (from an index): it is tried first, so a plan parses one unit
/// instead of every unit before it.
pub(crate) fn scope_at(
    units: &Units<'_>,
    addr: u64,
    hint: Option<usize>,
) -> Result<Option<Scope>, gimli::Error> {
    let order = hint
        .into_iter()
        .chain((0..units.len()).filter(|&i| Some(i) != hint));
    for i in order {
        if !units.unit_covers(i, addr)? {
            continue;
        }
        let info = units.get(i)?;
        let mut tree = info.unit.entries_tree(None)?;
        let root = tree.root()?;
        if let Some(func) = find_function(units, i, root, addr)? {
            let lang = SourceLanguage::from_dwarf(info.lang);
            let e = units.entry(func)?;
            let rust_abi = lang == SourceLanguage::Rust
                && units
                    .inherited(func, gimli::DW_AT_linkage_name)
                    .and_then(|(o, v)| units.attr_string(o.unit, v))
                    .is_some_and(|n| n.starts_with("_ZN") || n.starts_with("_R"));
            let mut scope = Scope {
                function: function_name(units, func, lang),
                unit: i,
                lang,
                frame_base: e.attr_value(gimli::DW_AT_frame_base),
                rust_abi,
                vars: Vec::new(),
            };
            // The line each frame is executing: the innermost from the line table, each
            // outer one from the call site of the frame inside it.
            let mut calls = Vec::new();
            let mut tree = info.unit.entries_tree(Some(func.offset))?;
            inlined_chain(units, i, tree.root()?, addr, &mut calls)?;
            let mut lines: Vec<Option<(u64, u64)>> = calls;
            lines.push(line_at(units, i, addr));
            let walk = Walk {
                units,
                unit: i,
                addr,
                lang,
                lines: &lines,
            };
            let mut tree = info.unit.entries_tree(Some(func.offset))?;
            walk.collect(tree.root()?, 0, None, &mut scope.vars)?;
            return Ok(Some(scope));
        }
    }
    Ok(None)
}

fn find_function(
    units: &Units<'_>,
    unit: usize,
    node: gimli::EntriesTreeNode<'_, '_, Reader>,
    addr: u64,
) -> Result<Option<DieRef>, gimli::Error> {
    let mut children = node.children();
    while let Some(child) = children.next()? {
        let e = child.entry();
        match e.tag() {
            gimli::DW_TAG_subprogram if units.die_covers(unit, e, addr)? => {
                return Ok(Some(DieRef {
                    unit,
                    offset: e.offset(),
                }));
            }
            // Functions nest in namespaces (Rust, C++), types (methods) and modules.
            gimli::DW_TAG_namespace
            | gimli::DW_TAG_module
            | gimli::DW_TAG_structure_type
            | gimli::DW_TAG_class_type
            | gimli::DW_TAG_union_type
            | gimli::DW_TAG_enumeration_type => {
                if let Some(f) = find_function(units, unit, child, addr)? {
                    return Ok(Some(f));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// What every level of the variable walk shares.
struct Walk<'w, 'a> {
    units: &'w Units<'a>,
    unit: usize,
    addr: u64,
    lang: SourceLanguage,
    /// (file index, line) being executed by each frame, outermost first.
    lines: &'w [Option<(u64, u64)>],
}

impl Walk<'_, '_> {
    fn collect(
        &self,
        node: gimli::EntriesTreeNode<'_, '_, Reader>,
        depth: usize,
        frame: Option<&str>,
        out: &mut Vec<ScopeVar>,
    ) -> Result<(), gimli::Error> {
        let (units, unit, addr) = (self.units, self.unit, self.addr);
        let mut children = node.children();
        while let Some(child) = children.next()? {
            let e = child.entry().clone();
            let die = DieRef {
                unit,
                offset: e.offset(),
            };
            match e.tag() {
                gimli::DW_TAG_formal_parameter | gimli::DW_TAG_variable => {
                    if e.attr_value(gimli::DW_AT_declaration).is_some() {
                        continue;
                    }
                    let Some((owner, name)) = units.inherited(die, gimli::DW_AT_name) else {
                        continue;
                    };
                    let Some(name) = units.attr_string(owner.unit, name) else {
                        continue;
                    };
                    // Go's unnamed results (`~r0`) and compiler temporaries (`.autotmp_1`)
                    // hold nothing a user wrote.
                    if self.lang == SourceLanguage::Go
                        && (name.starts_with("~r") || name.starts_with('.'))
                    {
                        continue;
                    }
                    let kind = if e.tag() == gimli::DW_TAG_formal_parameter {
                        VarKind::Arg
                    } else {
                        VarKind::Local
                    };
                    let type_die = units
                        .inherited(die, gimli::DW_AT_type)
                        .and_then(|(owner, v)| units.follow(owner.unit, v));
                    let not_yet_declared = match kind {
                        VarKind::Local => self.declared_later(die, depth),
                        VarKind::Arg => None,
                    };
                    out.push(ScopeVar {
                        name,
                        kind,
                        frame: frame.map(str::to_string),
                        die,
                        type_die,
                        location: e.attr_value(gimli::DW_AT_location),
                        const_value: e.attr_value(gimli::DW_AT_const_value).or_else(|| {
                            units
                                .inherited(die, gimli::DW_AT_const_value)
                                .map(|(_, v)| v)
                        }),
                        not_yet_declared,
                    });
                }
                gimli::DW_TAG_lexical_block if units.die_covers(unit, &e, addr)? => {
                    self.collect(child, depth, frame, out)?;
                }
                gimli::DW_TAG_inlined_subroutine if units.die_covers(unit, &e, addr)? => {
                    let name = function_name(units, die, self.lang);
                    self.collect(child, depth + 1, Some(&name), out)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The declaration line of a local declared at or after the line its frame executes.
    fn declared_later(&self, die: DieRef, depth: usize) -> Option<u64> {
        let (file, line) = (*self.lines.get(depth)?)?;
        let (owner, decl_line) = self.units.inherited(die, gimli::DW_AT_decl_line)?;
        // File indices only compare within the unit that holds the line table.
        if owner.unit != self.unit {
            return None;
        }
        let decl_line = decl_line.udata_value()?;
        // Go writes no DW_AT_decl_file on variables: they are in their function's file.
        let same_file = match self.units.inherited(die, gimli::DW_AT_decl_file) {
            None => true,
            Some((file_owner, _)) if file_owner.unit != self.unit => return None,
            Some((_, AttributeValue::FileIndex(f))) => f == file || self.same_path(f, file),
            Some((_, other)) => other
                .udata_value()
                .is_some_and(|f| f == file || self.same_path(f, file)),
        };
        (same_file && decl_line >= line).then_some(decl_line)
    }

    /// DWARF 5 line tables may list one file under two indices.
    fn same_path(&self, a: u64, b: u64) -> bool {
        let Ok(info) = self.units.get(self.unit) else {
            return false;
        };
        let Some(program) = &info.unit.line_program else {
            return false;
        };
        let header = program.header();
        let name = |i: u64| {
            let f = header.file(i)?;
            self.units.attr_string(self.unit, f.path_name())
        };
        matches!((name(a), name(b)), (Some(x), Some(y)) if x == y)
    }
}

/// The call sites (file index, line) of the inlined subroutines containing `addr`,
/// outermost first: the line each enclosing frame is executing.
fn inlined_chain(
    units: &Units<'_>,
    unit: usize,
    node: gimli::EntriesTreeNode<'_, '_, Reader>,
    addr: u64,
    out: &mut Vec<Option<(u64, u64)>>,
) -> Result<(), gimli::Error> {
    let mut children = node.children();
    while let Some(child) = children.next()? {
        let e = child.entry().clone();
        match e.tag() {
            gimli::DW_TAG_lexical_block if units.die_covers(unit, &e, addr)? => {
                return inlined_chain(units, unit, child, addr, out);
            }
            gimli::DW_TAG_inlined_subroutine if units.die_covers(unit, &e, addr)? => {
                let file = e.attr_value(gimli::DW_AT_call_file).and_then(|v| match v {
                    AttributeValue::FileIndex(f) => Some(f),
                    other => other.udata_value(),
                });
                let line = e
                    .attr_value(gimli::DW_AT_call_line)
                    .and_then(|v| v.udata_value());
                out.push(file.zip(line));
                return inlined_chain(units, unit, child, addr, out);
            }
            _ => {}
        }
    }
    Ok(())
}

/// The (file index, line) of the line-table row covering `addr`.
fn line_at(units: &Units<'_>, unit: usize, addr: u64) -> Option<(u64, u64)> {
    let info = units.get(unit).ok()?;
    let program = info.unit.line_program.clone()?;
    let mut rows = program.rows();
    let mut prev: Option<(u64, u64, u64)> = None;
    let mut best: Option<(u64, u64, u64)> = None;
    while let Ok(Some((_, row))) = rows.next_row() {
        if let Some((a, f, l)) = prev {
            if a <= addr && addr < row.address() && best.is_none_or(|(b, _, _)| a >= b) {
                best = Some((a, f, l));
            }
        }
        prev = if row.end_sequence() {
            None
        } else {
            Some((
                row.address(),
                row.file_index(),
                row.line().map_or(0, |l| l.get()),
            ))
        };
    }
    best.filter(|(_, _, l)| *l != 0).map(|(_, f, l)| (f, l))
}

/// A function's name as users write it: `orders::process_order` for Rust (demangled,
/// without the hash), `main.processOrder` for Go, `process_order` for C.
pub(crate) fn function_name(units: &Units<'_>, die: DieRef, lang: SourceLanguage) -> String {
    if lang == SourceLanguage::Rust || lang == SourceLanguage::Cpp {
        let linkage = units
            .inherited(die, gimli::DW_AT_linkage_name)
            .or_else(|| units.inherited(die, gimli::DW_AT_MIPS_linkage_name));
        if let Some((owner, v)) = linkage {
            if let Some(raw) = units.attr_string(owner.unit, v) {
                if lang == SourceLanguage::Rust {
                    if let Ok(d) = rustc_demangle::try_demangle(&raw) {
                        return format!("{d:#}");
                    }
                }
            }
        }
    }
    match units.inherited(die, gimli::DW_AT_name) {
        Some((owner, v)) => {
            let name = units
                .attr_string(owner.unit, v)
                .unwrap_or_else(|| "?".into());
            if lang == SourceLanguage::Rust || lang == SourceLanguage::Cpp {
                units.qualified_name(owner, &name)
            } else {
                name
            }
        }
        None => "?".into(),
    }
}
