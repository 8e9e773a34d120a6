//! Where a tokio binary keeps "the task this thread runs now", read from its DWARF, so the
//! kernel can read it at a system call instead of trapping at every task poll.
//!
//! tokio sets `CONTEXT.current_task_id` (a thread-local) around each poll, and every task
//! header reaches its id through its vtable's `id_offset`. Both layouts are Rust layouts
//! (not `repr(C)`), so they are taken from this binary's own DWARF, never assumed.

use gimli::{
    AttributeValue, DW_AT_data_member_location, DW_AT_linkage_name, DW_AT_name, DW_AT_type,
    DW_TAG_member, DW_TAG_namespace, DW_TAG_structure_type, DW_TAG_variable, UnitOffset,
};

use crate::{binary::Reader, index::attr_str, Binary};

/// Offsets the kernel side needs to follow tokio tasks without a uprobe on `poll`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokioRuntime {
    /// Address of the current task's id (`Option<task::Id>`, 0 for none) relative to the
    /// thread pointer (`fs` base): negative, as the executable's TLS block sits below it
    /// (x86-64 TLS variant II).
    pub task_id_tp_offset: i64,
    /// Offset of `task::core::Header.vtable`.
    pub header_vtable: u32,
    /// Offset of `task::raw::Vtable.id_offset`, the distance from a header to its task id.
    pub vtable_id_offset: u32,
}

/// Mangled-name pieces of tokio's `CONTEXT` thread-local value.
const CONTEXT_VAL: [&str; 2] = ["5tokio7runtime7context7CONTEXT", "__RUST_STD_INTERNAL_VAL"];

/// Reads the offsets of a binary linked with tokio; `None` when its DWARF lacks tokio's
/// types (a build without full debug info, `debug = 1`) or its TLS does not hold them.
pub fn tokio_runtime(binary: &Binary) -> Option<TokioRuntime> {
    let tls = binary.tls_block()?;
    let mut found = Found::default();
    let dwarf = binary.dwarf();
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let Ok(mut tree) = unit.entries_tree(None) else {
            continue;
        };
        let Ok(root) = tree.root() else {
            continue;
        };
        let mut path = Vec::new();
        walk(dwarf, &unit, root, &mut path, &mut found);
        if found.complete() {
            break;
        }
    }
    let (symbol, in_val) = found.task_id?;
    // The symbol table is the authority on where the value is in the TLS image; two DWARF
    // variables can carry the name (a dead copy at offset 0 was seen).
    let sym_offset = binary.tls_symbol_offset(&symbol)?;
    let block_offset = tls.offset_below_thread_pointer();
    Some(TokioRuntime {
        task_id_tp_offset: (sym_offset + in_val) as i64 - block_offset as i64,
        header_vtable: u32::try_from(found.header_vtable?).ok()?,
        vtable_id_offset: u32::try_from(found.vtable_id_offset?).ok()?,
    })
}

#[derive(Default)]
struct Found {
    /// `CONTEXT`'s linkage name, and the offset of `current_task_id` within its value.
    task_id: Option<(String, u64)>,
    header_vtable: Option<u64>,
    vtable_id_offset: Option<u64>,
}

impl Found {
    fn complete(&self) -> bool {
        self.task_id.is_some() && self.header_vtable.is_some() && self.vtable_id_offset.is_some()
    }
}

/// Namespaces worth entering: tokio's task and context modules and what they contain.
fn wanted(path: &[String]) -> bool {
    const PREFIXES: [&[&str]; 3] = [
        &["tokio", "runtime", "task", "core"],
        &["tokio", "runtime", "task", "raw"],
        &["tokio", "runtime", "context"],
    ];
    PREFIXES
        .iter()
        .any(|p| path.iter().zip(p.iter()).all(|(a, b)| a == b))
}

fn walk(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    node: gimli::EntriesTreeNode<'_, '_, Reader>,
    path: &mut Vec<String>,
    found: &mut Found,
) {
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        if found.complete() {
            return;
        }
        let e = child.entry();
        let tag = e.tag();
        if tag == DW_TAG_namespace {
            let Some(name) = name_of(dwarf, unit, e) else {
                continue;
            };
            path.push(name);
            if wanted(path) {
                walk(dwarf, unit, child, path, found);
            }
            path.pop();
        } else if tag == DW_TAG_structure_type && path.len() == 4 {
            let module = path[3].as_str();
            let name = name_of(dwarf, unit, e);
            match (module, name.as_deref()) {
                ("core", Some("Header")) if found.header_vtable.is_none() => {
                    found.header_vtable = member_offset(dwarf, unit, e.offset(), "vtable");
                }
                ("raw", Some("Vtable")) if found.vtable_id_offset.is_none() => {
                    found.vtable_id_offset = member_offset(dwarf, unit, e.offset(), "id_offset");
                }
                _ => {}
            }
        } else if tag == DW_TAG_variable && found.task_id.is_none() {
            let Some(linkage) = attr_str(dwarf, unit, e, DW_AT_linkage_name) else {
                continue;
            };
            if !CONTEXT_VAL.iter().all(|p| linkage.contains(p)) {
                continue;
            }
            let Some(AttributeValue::UnitRef(ty)) = e.attr_value(DW_AT_type) else {
                continue;
            };
            if let Some(off) = member_path(dwarf, unit, ty, &["val", "current_task_id"], 8) {
                found.task_id = Some((linkage, off));
            }
        }
    }
}

/// The offset of the member reached by `names` from struct `ty`, stepping through
/// single-member wrappers (`UnsafeCell`, `Cell`) where a name is not a direct member. The
/// last member must be `size` bytes.
fn member_path(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    mut ty: UnitOffset,
    names: &[&str],
    size: u64,
) -> Option<u64> {
    let mut total = 0u64;
    let mut names = names.iter().peekable();
    // Bounded: each step consumes a name or descends one wrapper; wrappers are few.
    for _ in 0..16 {
        let Some(want) = names.peek() else {
            return (byte_size(unit, ty)? == size).then_some(total);
        };
        let members = members(dwarf, unit, ty)?;
        let step = match members.iter().find(|m| m.0 == **want) {
            Some(m) => {
                names.next();
                m
            }
            None if members.len() == 1 => &members[0],
            None => return None,
        };
        total += step.1;
        ty = step.2;
    }
    None
}

/// `(name, offset, type)` of each member of struct `ty`.
fn members(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    ty: UnitOffset,
) -> Option<Vec<(String, u64, UnitOffset)>> {
    let mut tree = unit.entries_tree(Some(ty)).ok()?;
    let root = tree.root().ok()?;
    if root.entry().tag() != DW_TAG_structure_type {
        return None;
    }
    let mut out = Vec::new();
    let mut children = root.children();
    while let Ok(Some(m)) = children.next() {
        let m = m.entry();
        if m.tag() != DW_TAG_member {
            continue;
        }
        let (Some(name), Some(AttributeValue::Udata(off)), Some(AttributeValue::UnitRef(t))) = (
            name_of(dwarf, unit, m),
            m.attr_value(DW_AT_data_member_location),
            m.attr_value(DW_AT_type),
        ) else {
            continue;
        };
        out.push((name, off, t));
    }
    Some(out)
}

fn member_offset(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    ty: UnitOffset,
    name: &str,
) -> Option<u64> {
    members(dwarf, unit, ty)?
        .into_iter()
        .find(|m| m.0 == name)
        .map(|m| m.1)
}

fn byte_size(unit: &gimli::Unit<Reader>, ty: UnitOffset) -> Option<u64> {
    unit.entry(ty)
        .ok()?
        .attr_value(gimli::DW_AT_byte_size)?
        .udata_value()
}

fn name_of(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    e: &gimli::DebuggingInformationEntry<Reader>,
) -> Option<String> {
    attr_str(dwarf, unit, e, DW_AT_name)
}
