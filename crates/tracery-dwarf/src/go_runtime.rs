//! Facts about a Go binary's runtime that the kernel side needs, read from its DWARF.

use gimli::{AttributeValue, DW_AT_data_member_location, DW_AT_name, DW_TAG_member, Reader as _};

use crate::Binary;

/// Offsets into Go runtime structures of one binary (they change between Go releases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoRuntime {
    /// Offset of `runtime.g.atomicstatus`: tells a goroutine in a syscall (`_Gsyscall`,
    /// where stopping its thread cannot stall the garbage collector) from one running Go code.
    pub g_status: u64,
    /// Offsets of `runtime.g.m` and `runtime.m.curg`: on the system stack (`g0`), the
    /// user goroutine the thread runs, i.e. the parent of a goroutine being created.
    pub curg: Option<(u64, u64)>,
}

/// `runtime.g`'s `atomicstatus` value while the goroutine is in a system call.
pub const G_SYSCALL: u32 = 3;

/// Reads the runtime offsets of a Go binary; `None` when its DWARF lacks `runtime.g`.
pub fn go_runtime(binary: &Binary) -> Option<GoRuntime> {
    let dwarf = binary.dwarf();
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        // The runtime's types live in the `runtime` compilation unit; skip others cheaply.
        let is_runtime = unit
            .name
            .as_ref()
            .is_some_and(|n| n.to_slice().is_ok_and(|s| &*s == b"runtime"));
        if !is_runtime {
            continue;
        }
        let (mut g_status, mut g_m, mut m_curg) = (None, None, None);
        let mut tree = unit.entries_tree(None).ok()?;
        let root = tree.root().ok()?;
        let mut children = root.children();
        while let Ok(Some(node)) = children.next() {
            let e = node.entry();
            if e.tag() != gimli::DW_TAG_structure_type {
                continue;
            }
            let wanted: &mut [(&str, &mut Option<u64>)] = if named(dwarf, &unit, e, "runtime.g") {
                &mut [("atomicstatus", &mut g_status), ("m", &mut g_m)]
            } else if named(dwarf, &unit, e, "runtime.m") {
                &mut [("curg", &mut m_curg)]
            } else {
                continue;
            };
            let mut members = node.children();
            while let Ok(Some(m)) = members.next() {
                let m = m.entry();
                if m.tag() != DW_TAG_member {
                    continue;
                }
                for (name, slot) in wanted.iter_mut() {
                    if named(dwarf, &unit, m, name) {
                        if let Some(AttributeValue::Udata(off)) =
                            m.attr_value(DW_AT_data_member_location)
                        {
                            **slot = Some(off);
                        }
                    }
                }
            }
        }
        // Several units may carry the name (assembly ones have no types): go on.
        if let Some(g_status) = g_status {
            return Some(GoRuntime {
                g_status,
                curg: g_m.zip(m_curg),
            });
        }
    }
    None
}

fn named(
    dwarf: &gimli::Dwarf<crate::binary::Reader>,
    unit: &gimli::Unit<crate::binary::Reader>,
    e: &gimli::DebuggingInformationEntry<crate::binary::Reader>,
    want: &str,
) -> bool {
    e.attr_value(DW_AT_name)
        .and_then(|v| dwarf.attr_string(unit, v).ok())
        .is_some_and(|s| s.to_slice().is_ok_and(|s| &*s == want.as_bytes()))
}
