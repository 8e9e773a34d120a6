//! Which x86-64 instructions a uprobe can sit on.
//!
//! The kernel single-steps a copy of the probed instruction out of line, so it refuses
//! some: any with a LOCK or an ES/CS/SS/DS segment prefix, and the opcodes its
//! `good_insns_64` / `good_2byte_insns` tables leave out (arch/x86/kernel/uprobes.c):
//! privileged and trapping instructions, `int3`, and encodings invalid in 64-bit mode.
//! Attaching there fails with EINVAL/ENOTSUPP, so resolution moves to the next instruction.
//!
//! Instruction lengths come from iced-x86's decoder: x86 lengths depend on prefixes, ModRM,
//! SIB, displacement and immediate forms, which a table of our own would get wrong. With
//! only its `decoder` and `instr_info` features (the latter tells `step_free.rs` which
//! registers and memory an instruction writes) it stays a modest build; yaxpeax-x86 would
//! do too, but iced is the more widely used and decodes every encoding, VEX/EVEX included.

use iced_x86::{Decoder, DecoderOptions};

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub len: usize,
    /// Why a uprobe cannot be placed on it, if it cannot.
    pub refusal: Option<&'static str>,
}

/// Decodes the instruction at the start of `bytes`; `None` if it is not a valid one.
pub(crate) fn decode(bytes: &[u8]) -> Option<Insn> {
    let mut decoder = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return None;
    }
    let len = insn.len();
    Some(Insn {
        len,
        refusal: refusal(&bytes[..len]),
    })
}

/// Offsets of the `ret` instructions in the machine code `bytes` of one function: where a
/// uprobe sees the function's result in RAX without a return probe (which rewrites the
/// return address on the stack, and Go moves stacks). `None` if the bytes do not decode.
pub(crate) fn return_offsets(bytes: &[u8]) -> Option<Vec<u64>> {
    let mut decoder = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            // Padding after the last instruction (int3 decodes; zeros may not).
            break;
        }
        if insn.mnemonic() == iced_x86::Mnemonic::Ret {
            out.push(insn.ip());
        }
    }
    Some(out)
}

/// Offsets of the direct `call`s to `target` in the machine code `bytes` of one function
/// loaded at `ip`. A uprobe on a direct call costs one trap: the kernel emulates the call
/// instead of single-stepping a copy of it. `None` if the bytes do not decode.
pub(crate) fn call_offsets(bytes: &[u8], ip: u64, target: u64) -> Option<Vec<u64>> {
    let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            break;
        }
        if insn.mnemonic() == iced_x86::Mnemonic::Call
            && insn.op0_kind() == iced_x86::OpKind::NearBranch64
            && insn.near_branch64() == target
        {
            out.push(insn.ip() - ip);
        }
    }
    Some(out)
}

/// The NOPs the kernel emulates, by length (its `x86_nops` table, x86-64): a uprobe on any
/// other encoding of a NOP is single-stepped.
const EMULATED_NOPS: [&[u8]; 8] = [
    &[0x90],
    &[0x66, 0x90],
    &[0x0f, 0x1f, 0x00],
    &[0x0f, 0x1f, 0x40, 0x00],
    &[0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
    &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

/// True when the kernel emulates a uprobe on the instruction `b` (exactly its bytes)
/// instead of single-stepping a copy of it out of line (arch/x86/kernel/uprobes.c:
/// `branch_setup_xol_ops`, `push_setup_xol_ops`): a canonical NOP, `push` of a
/// general-purpose register, a relative `call`, `jmp` or `jcc`. The single step raises a
/// debug exception, which hypervisors intercept: measured on this project's VMs, a probe
/// costs about 1 µs emulated and 13 to 18 µs single-stepped.
pub(crate) fn emulated(b: &[u8]) -> bool {
    EMULATED_NOPS.contains(&b)
        || matches!(
            *b,
            // push r64
            [0x50..=0x57] | [0x41, 0x50..=0x57]
            // call rel32, jmp rel32, jmp rel8, jcc rel8, jcc rel32
                | [0xe8, _, _, _, _]
                | [0xe9, _, _, _, _]
                | [0xeb, _]
                | [0x70..=0x7f, _]
                | [0x0f, 0x80..=0x8f, _, _, _, _]
        )
}

/// Mirrors the kernel's `uprobe_init_insn` on the raw bytes of one instruction.
fn refusal(b: &[u8]) -> Option<&'static str> {
    let mut i = 0;
    while let Some(&p) = b.get(i) {
        match p {
            0xf0 => return Some("lock-prefixed"),
            0x26 | 0x2e | 0x36 | 0x3e => return Some("has an ES/CS/SS/DS segment prefix"),
            0x64 | 0x65 | 0x66 | 0x67 | 0xf2 | 0xf3 => i += 1,
            _ => break,
        }
    }
    if b.get(i).is_some_and(|r| (0x40..=0x4f).contains(r)) {
        i += 1;
    }
    let op = *b.get(i)?;
    // The kernel's decoder treats VEX/EVEX as prefixes and checks the opcode byte after
    // them against the one-byte table.
    let op = match op {
        0xc5 => *b.get(i + 2)?,
        0xc4 => *b.get(i + 3)?,
        0x62 => *b.get(i + 4)?,
        0x0f => {
            let op2 = *b.get(i + 1)?;
            return (!bit(&GOOD_2BYTE, op2))
                .then_some("a system or trapping instruction (0f-escaped)");
        }
        op => op,
    };
    (!bit(&GOOD_1BYTE, op)).then_some("a privileged, trapping or invalid instruction")
}

fn bit(table: &[u16; 16], op: u8) -> bool {
    table[usize::from(op >> 4)] & (1 << (op & 0xf)) != 0
}

/// Rows of 16 opcodes, bit n set = opcode `row << 4 | n` is probeable (good_insns_64).
const GOOD_1BYTE: [u16; 16] = [
    row([1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 1]), // 00
    row([1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0]), // 10
    row([1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0]), // 20
    row([1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0]), // 30
    row([1; 16]),                                          // 40
    row([1; 16]),                                          // 50
    row([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]), // 60
    row([1; 16]),                                          // 70
    row([1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]), // 80
    row([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1]), // 90
    row([1; 16]),                                          // a0
    row([1; 16]),                                          // b0
    row([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]), // c0
    row([1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]), // d0
    row([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0]), // e0
    row([1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1]), // f0
];

/// Two-byte opcodes `0f xx` (good_2byte_insns). Recent kernels accept every `0f` opcode in
/// 64-bit mode; older ones consult this table, so we honour it: stepping off a `syscall`
/// or `ud2` costs nothing.
const GOOD_2BYTE: [u16; 16] = [
    row([0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 1]), // 00
    row([1; 16]),                                          // 10
    row([1; 16]),                                          // 20
    row([0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1]), // 30
    row([1; 16]),                                          // 40
    row([1; 16]),                                          // 50
    row([1; 16]),                                          // 60
    row([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1]), // 70
    row([1; 16]),                                          // 80
    row([1; 16]),                                          // 90
    row([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]), // a0
    row([1; 16]),                                          // b0
    row([1; 16]),                                          // c0
    row([1; 16]),                                          // d0
    row([1; 16]),                                          // e0
    row([1; 16]),                                          // f0
];

const fn row(bits: [u8; 16]) -> u16 {
    let mut out = 0;
    let mut i = 0;
    while i < 16 {
        out |= (bits[i] as u16) << i;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_are_found_past_other_instructions() {
        // push rbp; mov rbp, rsp; test eax, eax; je +2; pop rbp; ret; pop rbp; ret 8; int3
        let code = [
            0x55, 0x48, 0x89, 0xe5, 0x85, 0xc0, 0x74, 0x02, 0x5d, 0xc3, 0x5d, 0xc2, 0x08, 0x00,
            0xcc,
        ];
        assert_eq!(return_offsets(&code), Some(vec![9, 11]));
        // A byte 0xc3 inside another instruction is not a return: mov ebx, 0xc3.
        assert_eq!(return_offsets(&[0xbb, 0xc3, 0, 0, 0]), Some(vec![]));
    }

    #[test]
    fn calls_to_one_target_are_found() {
        // At 0x1000: call 0x2000; call 0x3000; nop; call 0x2000
        let rel = |at: u64, to: u64| ((to as i64 - (at as i64 + 5)) as i32).to_le_bytes();
        let mut code = vec![0xe8];
        code.extend(rel(0x1000, 0x2000));
        code.push(0xe8);
        code.extend(rel(0x1005, 0x3000));
        code.push(0x90);
        code.push(0xe8);
        code.extend(rel(0x100b, 0x2000));
        assert_eq!(call_offsets(&code, 0x1000, 0x2000), Some(vec![0, 11]));
        assert_eq!(call_offsets(&code, 0x1000, 0x4000), Some(vec![]));
    }

    #[test]
    fn emulated_instructions_are_the_kernel_s() {
        // Canonical NOPs of 1, 3 and 8 bytes; push rbx, push r12; call, jmp, je, jne rel32.
        for b in [
            &[0x90][..],
            &[0x0f, 0x1f, 0x00],
            &[0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0],
            &[0x53],
            &[0x41, 0x54],
            &[0xe8, 1, 2, 3, 4],
            &[0xeb, 0x10],
            &[0x74, 0x02],
            &[0x0f, 0x85, 1, 0, 0, 0],
        ] {
            assert!(emulated(b), "{b:02x?}");
        }
        // Single-stepped: movups [rsp+0xf8], xmm15 (Go's stack zeroing); a non-canonical NOP
        // (nop [rcx]); the 9-byte NOP; mov rbp, rsp; ret; an indirect call.
        for b in [
            &[0x44, 0x0f, 0x11, 0xbc, 0x24, 0xf8, 0, 0, 0][..],
            &[0x0f, 0x1f, 0x01],
            &[0x66, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0],
            &[0x48, 0x89, 0xe5],
            &[0xc3],
            &[0xff, 0xd0],
        ] {
            assert!(!emulated(b), "{b:02x?}");
        }
    }

    #[test]
    fn lengths_and_refusals() {
        // lock add DWORD PTR [rip+0x10], 1
        let lock = [0xf0, 0x83, 0x05, 0x10, 0, 0, 0, 0x01];
        assert_eq!(
            decode(&lock),
            Some(Insn {
                len: 8,
                refusal: Some("lock-prefixed")
            })
        );
        // mov rbp, rsp
        assert_eq!(
            decode(&[0x48, 0x89, 0xe5]),
            Some(Insn {
                len: 3,
                refusal: None
            })
        );
        // int3
        assert!(decode(&[0xcc]).unwrap().refusal.is_some());
        // syscall
        assert!(decode(&[0x0f, 0x05]).unwrap().refusal.is_some());
        // nopw cs:[rax+rax*1+0x0]: CS prefix, as used for padding.
        let nopw = [0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0];
        assert_eq!(decode(&nopw).unwrap().len, 10);
        assert!(decode(&nopw).unwrap().refusal.is_some());
        // vmovdqu ymm0, [rdi] (VEX, opcode 6f after the prefix, as the kernel reads it)
        assert_eq!(decode(&[0xc5, 0xfe, 0x6f, 0x07]).unwrap().len, 4);
        // lock cmpxchg [rdi], esi: a REX-less 0f opcode behind LOCK.
        assert!(decode(&[0xf0, 0x0f, 0xb1, 0x37]).unwrap().refusal.is_some());
        // endbr64 and a plain call are fine.
        assert_eq!(decode(&[0xf3, 0x0f, 0x1e, 0xfa]).unwrap().refusal, None);
        assert_eq!(decode(&[0xe8, 0, 0, 0, 0]).unwrap().refusal, None);
    }
}
