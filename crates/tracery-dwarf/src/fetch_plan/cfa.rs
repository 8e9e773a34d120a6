//! The canonical frame address (CFA) rule at one instruction, from `.eh_frame` or
//! `.debug_frame` (Go writes only the latter).
//!
//! `DW_OP_call_frame_cfa` and frame bases defined through it become `reg + offset` at the
//! exact probe address: the kernel then reads `[reg + offset + fbreg]` with no unwinding.

use gimli::{
    BaseAddresses, CfaRule, DebugFrame, EhFrame, LittleEndian, UnwindContext, UnwindSection,
};

use super::location::{pt_reg, RegOff};
use crate::binary::FrameSections;

/// The CFA at `addr` as `register + offset`, or why it cannot be expressed that way.
pub(crate) fn cfa_at(frames: &FrameSections, addr: u64) -> Result<RegOff, String> {
    let mut bases = BaseAddresses::default();
    if let Some((text, _)) = frames.text {
        bases = bases.set_text(text.0);
    }
    if let Some((hdr, _)) = &frames.eh_frame_hdr {
        bases = bases.set_eh_frame_hdr(hdr.0);
    }
    let mut ctx = UnwindContext::new();
    if let Some((base, data)) = &frames.eh_frame {
        let eh = EhFrame::new(data, LittleEndian);
        let b = bases.clone().set_eh_frame(base.0);
        if let Ok(row) = eh.unwind_info_for_address(&b, &mut ctx, addr, EhFrame::cie_from_offset) {
            return rule(row.cfa());
        }
    }
    if let Some(data) = &frames.debug_frame {
        let mut df = DebugFrame::new(data, LittleEndian);
        df.set_address_size(8);
        if let Ok(row) =
            df.unwind_info_for_address(&bases, &mut ctx, addr, DebugFrame::cie_from_offset)
        {
            return rule(row.cfa());
        }
    }
    Err(format!("no call frame information covers {addr:#x}"))
}

fn rule(cfa: &CfaRule<usize>) -> Result<RegOff, String> {
    match cfa {
        CfaRule::RegisterAndOffset { register, offset } => Ok(RegOff {
            reg: pt_reg(*register)?,
            offset: *offset,
        }),
        CfaRule::Expression(_) => Err("the CFA here is a DWARF expression".into()),
    }
}
