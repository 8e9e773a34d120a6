//! Address spaces, kept apart by type.
//!
//! An [`ObjAddr`] is a virtual address as the ELF file states it (what DWARF speaks), a
//! [`FileOffset`] is a byte offset in the file (what a uprobe binds to), and a [`ProcAddr`] is
//! an address in one running process. They convert only through the named functions here
//! and on [`crate::Binary`].

use serde::Serialize;

/// A virtual address as stated by the ELF file and its DWARF (link-time address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjAddr(pub u64);

/// A byte offset in the ELF file: uprobes attach at inode + file offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FileOffset(pub u64);

/// An address in one running process's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ProcAddr(pub u64);

/// Difference between where a process mapped a binary and where the ELF says it lives.
/// Zero for non-PIE executables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadBias(pub u64);

impl LoadBias {
    /// The process address of an object address under this bias.
    pub fn to_proc(self, a: ObjAddr) -> ProcAddr {
        ProcAddr(a.0.wrapping_add(self.0))
    }

    /// The object address of a process address under this bias.
    pub fn to_obj(self, a: ProcAddr) -> ObjAddr {
        ObjAddr(a.0.wrapping_sub(self.0))
    }
}

impl std::fmt::Display for ObjAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl std::fmt::Display for FileOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl std::fmt::Display for ProcAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
