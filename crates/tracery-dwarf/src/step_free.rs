//! Breakpoints the kernel emulates instead of single-stepping.
//!
//! A uprobe on an instruction the kernel cannot emulate runs a copy of it out of line under
//! the trap flag: one more exception per hit, and hypervisors intercept it. On this
//! project's VMs a hit costs 13 to 18 µs that way, against about 1 µs emulated (see
//! [`crate::insn::emulated`]). A line often starts with such an instruction (Go zeroes a
//! stack slot with `movups`) and reaches an emulated one (a NOP, a `push`, a `call`) a few
//! instructions on. The probe moves there when the capture cannot tell the difference:
//!
//! - the instructions it passes run straight on (no branch), are of a kind that cannot
//!   trap (moves, arithmetic without division, `lea`, compares), read memory only at the
//!   stack pointer, the frame pointer of a frame it anchors, or `rip`, and write only
//!   registers and the current frame's slots below its return address and saved frame
//!   pointer;
//! - they write no register the capture or the unwinder needs (`rsp`, `rbp`, Go's `r14` and
//!   `r15`, the System V callee-saved registers elsewhere), no register a plan op reads,
//!   and no stack byte a plan op reads;
//! - the new address is on the same line, in the same chain of inlined calls, and its plan
//!   has the same ops and variables.
//!
//! So every value the plan reads holds at the new address what it held at the line's first
//! instruction. A stack slot the line overwrites first is one whose old contents the
//! compiler treats as dead: a variable in scope that lives there fails the overlap check,
//! and no live pointer can point into it.

use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess,
    Register,
};
use tracery_common::{regs::pt, BaseKind, FetchOp, OpKind, ProbeConfig};

use crate::insn;

/// Most instructions a probe moves past.
const MAX_SKIPPED: usize = 16;
/// Bytes below the stack pointer a leaf may use (the System V red zone).
const RED_ZONE: i64 = 128;
/// Largest frame-pointer displacement trusted to stay inside the frame.
const MAX_FRAME: i64 = 1 << 20;

/// The frame the skipped instructions run in: the CFA rule at the site.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    /// `pt_regs` index of the register the CFA is relative to, and the offset.
    pub cfa_reg: u8,
    pub cfa_offset: i64,
    /// Go code: no callee-saved registers, but `r14` holds the goroutine.
    pub go: bool,
}

/// What the skipped instructions write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Instructions passed.
    pub skipped: usize,
    /// `pt_regs` indices of the general-purpose registers written.
    pub regs: Vec<u8>,
    /// Stack bytes written: `(pt_regs index of the base, first offset, end offset)`.
    pub stores: Vec<(u8, i64, i64)>,
}

/// The first instruction the kernel emulates in `code` (the machine code at `ip`, the
/// site's own instruction first) while `in_line` holds, and what the instructions before it
/// write. `None` when the first instruction is emulated already, when one before an emulated
/// one may trap or change what a capture needs, or when none is found.
pub(crate) fn emulated_successor(
    code: &[u8],
    ip: u64,
    frame: &Frame,
    in_line: impl Fn(u64) -> bool,
) -> Option<(u64, Effects)> {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut info = InstructionInfoFactory::new();
    let mut effects = Effects::default();
    let mut insn = Instruction::default();
    for _ in 0..=MAX_SKIPPED {
        if !decoder.can_decode() {
            return None;
        }
        decoder.decode_out(&mut insn);
        if insn.is_invalid() || !in_line(insn.ip()) {
            return None;
        }
        let at = (insn.ip() - ip) as usize;
        if insn::emulated(code.get(at..at + insn.len())?) {
            return (effects.skipped > 0).then_some((insn.ip(), effects));
        }
        transparent(&insn, &mut info, frame, &mut effects)?;
        effects.skipped += 1;
    }
    None
}

/// True when no op of `cfg` reads what `effects` wrote (ops based on a pointer or an
/// absolute address read the heap or globals, which the skipped instructions never write).
pub(crate) fn plan_unaffected(cfg: &ProbeConfig, effects: &Effects) -> bool {
    let n = usize::from(cfg.n_ops).min(cfg.ops.len());
    cfg.ops[..n].iter().all(|op| op_unaffected(op, effects))
}

fn op_unaffected(op: &FetchOp, effects: &Effects) -> bool {
    if op.base != BaseKind::Reg as u8 {
        return true;
    }
    if effects.regs.contains(&op.reg) {
        return false;
    }
    if op.kind == OpKind::Value as u8 {
        return true;
    }
    if effects.stores.is_empty() {
        return true;
    }
    if op.kind != OpKind::Copy as u8 && op.kind != OpKind::CStr as u8 {
        // A walk from a stack address: its extent is not one range.
        return false;
    }
    let len = i64::from(op.len.max(op.len_scale));
    let (lo, hi) = if op.flags & FetchOp::FLAG_BACKWARD != 0 {
        (op.offset - len, op.offset)
    } else {
        (op.offset, op.offset + len)
    };
    effects
        .stores
        .iter()
        .all(|&(base, s_lo, s_hi)| base == op.reg && (hi <= s_lo || s_hi <= lo))
}

/// Records what `insn` writes, or `None` when it may trap, branch, or write what a capture
/// or an unwinder needs.
fn transparent(
    insn: &Instruction,
    info: &mut InstructionInfoFactory,
    frame: &Frame,
    effects: &mut Effects,
) -> Option<()> {
    if insn.flow_control() != FlowControl::Next
        || insn.has_lock_prefix()
        || insn.has_rep_prefix()
        || insn.has_repne_prefix()
        || !harmless(insn.mnemonic())
    {
        return None;
    }
    let info = info.info(insn);
    for used in info.used_registers() {
        if !writes(used.access()) {
            continue;
        }
        let reg = used.register();
        if reg.is_xmm() || reg.is_ymm() || reg.is_zmm() {
            // Not in `pt_regs`: no plan reads them.
            continue;
        }
        let full = reg.full_register();
        let index = pt_index(full)?;
        if needed(index, frame.go) {
            return None;
        }
        if !effects.regs.contains(&index) {
            effects.regs.push(index);
        }
    }
    for mem in info.used_memory() {
        let access = mem.access();
        if access == OpAccess::NoMemAccess {
            continue;
        }
        if !matches!(mem.segment(), Register::SS | Register::DS | Register::None)
            || mem.index() != Register::None
        {
            return None;
        }
        let size = mem.memory_size().size() as i64;
        let disp = mem.displacement() as i64;
        if size == 0 {
            return None;
        }
        let base = mem.base();
        if base == Register::RIP || (base == Register::None && insn.is_ip_rel_memory_operand()) {
            // A global of the binary: mapped, so a read cannot fault; never written.
            if writes(access) {
                return None;
            }
            continue;
        }
        let base = match base {
            Register::RSP => pt::RSP,
            Register::RBP if frame.cfa_reg == pt::RBP => pt::RBP,
            _ => return None,
        };
        let (lo, hi) = (disp, disp.checked_add(size)?);
        if !in_frame(base, lo, hi, frame, writes(access)) {
            return None;
        }
        if writes(access) {
            effects.stores.push((base, lo, hi));
        }
    }
    Some(())
}

/// True when `[lo, hi)` from `base` lies in the current frame (for a write: below the
/// return address and the saved frame pointer).
fn in_frame(base: u8, lo: i64, hi: i64, frame: &Frame, write: bool) -> bool {
    // The saved frame pointer sits just below the return address.
    let top = if base == frame.cfa_reg {
        frame.cfa_offset - 16
    } else {
        // rsp-relative in an rbp-anchored frame: its size is not known here.
        return !write && (-RED_ZONE..MAX_FRAME).contains(&lo) && hi <= MAX_FRAME;
    };
    let bottom = if base == pt::RSP {
        -RED_ZONE
    } else {
        -MAX_FRAME
    };
    if write {
        bottom <= lo && hi <= top
    } else {
        // Reading the caller's outgoing arguments above the frame is fine.
        bottom <= lo && hi <= top + MAX_FRAME
    }
}

fn writes(access: OpAccess) -> bool {
    matches!(
        access,
        OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
    )
}

/// Registers a capture or an unwinder reads besides the plan's: the stack and frame
/// pointers, the goroutine (`r14`) and Go's reserved `r15`, or the System V callee-saved
/// registers whose caller values unwinding recovers.
fn needed(index: u8, go: bool) -> bool {
    match index {
        pt::RSP | pt::RBP | pt::RIP => true,
        pt::R14 | pt::R15 => true,
        pt::RBX | pt::R12 | pt::R13 => !go,
        _ => false,
    }
}

/// The `pt_regs` index of a 64-bit general-purpose register; `None` for anything else
/// (segment, control, mask registers: the instruction is refused).
fn pt_index(reg: Register) -> Option<u8> {
    Some(match reg {
        Register::RAX => pt::RAX,
        Register::RBX => pt::RBX,
        Register::RCX => pt::RCX,
        Register::RDX => pt::RDX,
        Register::RSI => pt::RSI,
        Register::RDI => pt::RDI,
        Register::RBP => pt::RBP,
        Register::RSP => pt::RSP,
        Register::R8 => pt::R8,
        Register::R9 => pt::R9,
        Register::R10 => pt::R10,
        Register::R11 => pt::R11,
        Register::R12 => pt::R12,
        Register::R13 => pt::R13,
        Register::R14 => pt::R14,
        Register::R15 => pt::R15,
        _ => return None,
    })
}

/// Instructions compilers put at the start of a line that cannot trap on their own
/// (memory operands are checked apart): no division, no string or system instruction.
fn harmless(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Mov | Movzx
            | Movsx
            | Movsxd
            | Lea
            | Add
            | Sub
            | And
            | Or
            | Xor
            | Cmp
            | Test
            | Inc
            | Dec
            | Neg
            | Not
            | Shl
            | Shr
            | Sar
            | Rol
            | Ror
            | Imul
            | Cdq
            | Cqo
            | Cdqe
            | Cwde
            | Nop
            | Sete
            | Setne
            | Setb
            | Setae
            | Setbe
            | Seta
            | Setl
            | Setge
            | Setle
            | Setg
            | Cmove
            | Cmovne
            | Cmovb
            | Cmovae
            | Cmovbe
            | Cmova
            | Cmovl
            | Cmovge
            | Cmovle
            | Cmovg
            | Movups
            | Movaps
            | Movdqu
            | Movdqa
            | Movss
            | Movsd
            | Movq
            | Movd
            | Xorps
            | Pxor
            | Vmovups
            | Vmovdqu
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO: Frame = Frame {
        cfa_reg: pt::RSP,
        cfa_offset: 0x118,
        go: true,
    };

    fn successor(code: &[u8], frame: &Frame) -> Option<(u64, Effects)> {
        emulated_successor(code, 0x1000, frame, |a| a < 0x1000 + code.len() as u64)
    }

    #[test]
    fn go_stack_zeroing_before_a_nop_is_passed() {
        // The demo gateway's breakpoint line: movups [rsp+0xf8], xmm15; nop [rax];
        // call runtime.convTstring.
        let code = [
            0x44, 0x0f, 0x11, 0xbc, 0x24, 0xf8, 0, 0, 0, 0x0f, 0x1f, 0x00, 0xe8, 0, 0, 0, 0,
        ];
        let (to, eff) = successor(&code, &GO).unwrap();
        assert_eq!(to, 0x1009);
        assert_eq!(eff.skipped, 1);
        assert!(eff.regs.is_empty());
        assert_eq!(eff.stores, vec![(pt::RSP, 0xf8, 0x108)]);
    }

    #[test]
    fn an_emulated_first_instruction_needs_no_move() {
        // nop [rax]; call
        assert_eq!(successor(&[0x0f, 0x1f, 0x00, 0xe8, 0, 0, 0, 0], &GO), None);
    }

    #[test]
    fn argument_set_up_before_a_call_is_passed_and_recorded() {
        // mov rax, [rsp+0x20]; lea rbx, [rip+0x10]; mov ecx, 5; call
        let code = [
            0x48, 0x8b, 0x44, 0x24, 0x20, 0x48, 0x8d, 0x1d, 0x10, 0, 0, 0, 0xb9, 5, 0, 0, 0, 0xe8,
            0, 0, 0, 0,
        ];
        let (to, eff) = successor(&code, &GO).unwrap();
        assert_eq!(to, 0x1011);
        assert_eq!(eff.skipped, 3);
        assert_eq!(eff.regs, vec![pt::RAX, pt::RBX, pt::RCX]);
        assert!(eff.stores.is_empty());
        // Outside Go, rbx is callee-saved: its caller's value must stay where the unwinder
        // finds it.
        let c = Frame { go: false, ..GO };
        assert_eq!(successor(&code, &c), None);
    }

    #[test]
    fn what_may_trap_or_matters_stops_the_move() {
        let refused: [&[u8]; 7] = [
            // mov rax, [rbx]: a pointer that may be bad.
            &[0x48, 0x8b, 0x03],
            // sub rsp, 8: the frame moves.
            &[0x48, 0x83, 0xec, 0x08],
            // mov r14, rax: Go's goroutine register.
            &[0x49, 0x89, 0xc6],
            // div rcx: may divide by zero.
            &[0x48, 0xf7, 0xf1],
            // mov [rip+0x10], rax: a global written.
            &[0x48, 0x89, 0x05, 0x10, 0, 0, 0],
            // mov [rsp+0x110], rax: the saved frame pointer's slot.
            &[0x48, 0x89, 0x84, 0x24, 0x10, 0x01, 0, 0],
            // mov rax, fs:[-8]: thread-local storage.
            &[0x64, 0x48, 0x8b, 0x04, 0x25, 0xf8, 0xff, 0xff, 0xff],
        ];
        for first in refused {
            let mut code = first.to_vec();
            code.extend([0x0f, 0x1f, 0x00]);
            assert_eq!(successor(&code, &GO), None, "{first:02x?}");
        }
        // A return ends the search before the NOP after it.
        assert_eq!(successor(&[0x48, 0x89, 0xc1, 0xc3, 0x90], &GO), None);
        // The next line starts before any emulated instruction.
        let code = [0x48, 0x89, 0xc1, 0x90];
        assert_eq!(emulated_successor(&code, 0x1000, &GO, |a| a < 0x1003), None);
    }

    fn op(kind: OpKind, reg: u8, offset: i64, len: u16) -> FetchOp {
        FetchOp {
            offset,
            base: BaseKind::Reg as u8,
            kind: kind as u8,
            reg,
            len,
            ..FetchOp::EMPTY
        }
    }

    fn config(ops: &[FetchOp]) -> ProbeConfig {
        let mut cfg = ProbeConfig::EMPTY;
        cfg.ops[..ops.len()].copy_from_slice(ops);
        cfg.n_ops = ops.len() as u8;
        cfg
    }

    #[test]
    fn a_plan_reading_what_was_written_keeps_the_site() {
        let eff = Effects {
            skipped: 2,
            regs: vec![pt::RAX],
            stores: vec![(pt::RSP, 0xf8, 0x108)],
        };
        // A string header at rsp+0x40 and a value in rdi: untouched.
        let ok = config(&[
            op(OpKind::Copy, pt::RSP, 0x40, 16),
            op(OpKind::Value, pt::RDI, 0, 8),
        ]);
        assert!(plan_unaffected(&ok, &eff));
        // A variable in rax; one at rsp+0x100 (overlaps the store); one ending in it.
        for bad in [
            op(OpKind::Value, pt::RAX, 0, 8),
            op(OpKind::Copy, pt::RSP, 0x100, 8),
            op(OpKind::Copy, pt::RSP, 0xf0, 9),
        ] {
            assert!(!plan_unaffected(&config(&[bad]), &eff), "{bad:?}");
        }
        // Read through the frame pointer while the stores are rsp-relative: no telling.
        assert!(!plan_unaffected(
            &config(&[op(OpKind::Copy, pt::RBP, -8, 8)]),
            &eff
        ));
        // A pointer-based op reads the heap.
        let mut heap = op(OpKind::Copy, 0, 0, 64);
        heap.base = BaseKind::PtrAt as u8;
        assert!(plan_unaffected(&config(&[heap]), &eff));
    }
}
