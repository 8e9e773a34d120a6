//! x86-64 register numbering: DWARF numbers versus the kernel's `struct pt_regs` layout.
//!
//! The kernel hands a uprobe its `pt_regs`; DWARF location expressions name registers by
//! DWARF number. User space translates once, when it compiles a fetch plan.

/// Number of `u64` words in x86-64 `struct pt_regs` (r15 .. ss).
pub const NUM_REGS: usize = 21;

/// Index of each register in `struct pt_regs` (arch/x86/include/asm/ptrace.h).
pub mod pt {
    pub const R15: u8 = 0;
    pub const R14: u8 = 1;
    pub const R13: u8 = 2;
    pub const R12: u8 = 3;
    pub const RBP: u8 = 4;
    pub const RBX: u8 = 5;
    pub const R11: u8 = 6;
    pub const R10: u8 = 7;
    pub const R9: u8 = 8;
    pub const R8: u8 = 9;
    pub const RAX: u8 = 10;
    pub const RCX: u8 = 11;
    pub const RDX: u8 = 12;
    pub const RSI: u8 = 13;
    pub const RDI: u8 = 14;
    pub const ORIG_RAX: u8 = 15;
    pub const RIP: u8 = 16;
    pub const CS: u8 = 17;
    pub const EFLAGS: u8 = 18;
    pub const RSP: u8 = 19;
    pub const SS: u8 = 20;
}

/// Maps a DWARF x86-64 register number (System V psABI table) to its `pt_regs` index.
///
/// Returns `None` for registers a uprobe cannot see in `pt_regs` (vector and x87 registers).
pub const fn dwarf_to_pt_regs(dwarf: u16) -> Option<u8> {
    Some(match dwarf {
        0 => pt::RAX,
        1 => pt::RDX,
        2 => pt::RCX,
        3 => pt::RBX,
        4 => pt::RSI,
        5 => pt::RDI,
        6 => pt::RBP,
        7 => pt::RSP,
        8 => pt::R8,
        9 => pt::R9,
        10 => pt::R10,
        11 => pt::R11,
        12 => pt::R12,
        13 => pt::R13,
        14 => pt::R14,
        15 => pt::R15,
        16 => pt::RIP,
        _ => return None,
    })
}

/// Maps a `pt_regs` index back to its DWARF register number, for unwinders.
pub const fn pt_regs_to_dwarf(index: u8) -> Option<u16> {
    let mut dwarf = 0;
    while dwarf <= 16 {
        if let Some(i) = dwarf_to_pt_regs(dwarf) {
            if i == index {
                return Some(dwarf);
            }
        }
        dwarf += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for d in 0..=16u16 {
            let i = dwarf_to_pt_regs(d).unwrap();
            assert_eq!(pt_regs_to_dwarf(i), Some(d));
        }
        assert_eq!(dwarf_to_pt_regs(17), None);
    }
}
