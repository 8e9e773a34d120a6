//! The location-expression compiler on hand-built expressions.
use super::*;
use gimli::{EndianSlice, LittleEndian};
use tracery_common::regs::pt;

fn enc() -> gimli::Encoding {
    gimli::Encoding {
        format: gimli::Format::Dwarf32,
        version: 4,
        address_size: 8,
    }
}

fn compile(bytes: &[u8]) -> Vec<Piece> {
    let no_index = |_: u64| None;
    let ctx = ExprContext {
        encoding: enc(),
        frame_base: Ok(RegOff {
            reg: pt::RBP,
            offset: 16,
        }),
        cfa: Ok(RegOff {
            reg: pt::RSP,
            offset: 8,
        }),
        address_index: &no_index,
    };
    compile_expr(
        gimli::Expression(EndianSlice::new(bytes, LittleEndian)),
        &ctx,
    )
}

fn whole(loc: PieceLoc) -> Vec<Piece> {
    vec![Piece { loc, size: None }]
}

fn reg(reg: u8, offset: i64) -> Addr {
    Addr::Reg(RegOff { reg, offset })
}

#[test]
fn registers_and_memory() {
    // DW_OP_reg5 (rdi)
    assert_eq!(compile(&[0x55]), whole(PieceLoc::Reg(pt::RDI)));
    // DW_OP_breg7 (rsp) +8
    assert_eq!(
        compile(&[0x77, 0x08]),
        whole(PieceLoc::Mem(reg(pt::RSP, 8)))
    );
    // DW_OP_fbreg -20 with frame base rbp+16
    assert_eq!(
        compile(&[0x91, 0x6c]),
        whole(PieceLoc::Mem(reg(pt::RBP, -4)))
    );
    // DW_OP_call_frame_cfa (Go's by-stack arguments)
    assert_eq!(compile(&[0x9c]), whole(PieceLoc::Mem(reg(pt::RSP, 8))));
    // DW_OP_call_frame_cfa; DW_OP_consts 16; DW_OP_plus
    assert_eq!(
        compile(&[0x9c, 0x11, 0x10, 0x22]),
        whole(PieceLoc::Mem(reg(pt::RSP, 24)))
    );
    // DW_OP_addr 0x4010
    let mut addr = vec![0x03];
    addr.extend_from_slice(&0x4010u64.to_le_bytes());
    assert_eq!(compile(&addr), whole(PieceLoc::Mem(Addr::Absolute(0x4010))));
    // DW_OP_addr 0x4010; DW_OP_plus_uconst 8
    addr.extend_from_slice(&[0x23, 0x08]);
    assert_eq!(compile(&addr), whole(PieceLoc::Mem(Addr::Absolute(0x4018))));
}

#[test]
fn stack_values_and_constants() {
    // DW_OP_lit3; DW_OP_stack_value
    assert_eq!(
        compile(&[0x33, 0x9f]),
        whole(PieceLoc::Const(3u64.to_le_bytes().to_vec()))
    );
    // DW_OP_breg5 (rdi) +24; DW_OP_stack_value
    assert_eq!(
        compile(&[0x75, 0x18, 0x9f]),
        whole(PieceLoc::Value(reg(pt::RDI, 24)))
    );
    // DW_OP_implicit_value 2 [0x34 0x12]
    assert_eq!(
        compile(&[0x9e, 0x02, 0x34, 0x12]),
        whole(PieceLoc::Const(vec![0x34, 0x12]))
    );
    // Empty expression: optimized out, no pieces at all.
    assert_eq!(compile(&[]), vec![]);
}

#[test]
fn one_dereference_is_a_pointer_hop() {
    // Rust debug: an argument passed by reference. DW_OP_fbreg 384; DW_OP_deref
    assert_eq!(
        compile(&[0x91, 0x80, 0x03, 0x06]),
        whole(PieceLoc::MemAt {
            ptr: reg(pt::RBP, 16 + 384),
            offset: 0
        })
    );
    // DW_OP_fbreg 200; DW_OP_deref; DW_OP_plus_uconst 0x30 (a field of it)
    assert_eq!(
        compile(&[0x91, 0xc8, 0x01, 0x06, 0x23, 0x30]),
        whole(PieceLoc::MemAt {
            ptr: reg(pt::RBP, 16 + 200),
            offset: 0x30
        })
    );
    // DW_OP_breg7 8; DW_OP_deref; DW_OP_stack_value: the word at rsp+8 is the value.
    assert_eq!(
        compile(&[0x77, 0x08, 0x06, 0x9f]),
        whole(PieceLoc::Word(reg(pt::RSP, 8)))
    );
}

#[test]
fn pieces_split_a_value_across_places() {
    // Go string in registers: DW_OP_reg3 (rbx); DW_OP_piece 8; DW_OP_reg2 (rcx); DW_OP_piece 8
    assert_eq!(
        compile(&[0x53, 0x93, 0x08, 0x52, 0x93, 0x08]),
        vec![
            Piece {
                loc: PieceLoc::Reg(pt::RBX),
                size: Some(8)
            },
            Piece {
                loc: PieceLoc::Reg(pt::RCX),
                size: Some(8)
            },
        ]
    );
    // Rust -O2 &str: DW_OP_piece 8 (pointer gone); DW_OP_lit3; DW_OP_stack_value; DW_OP_piece 8
    assert_eq!(
        compile(&[0x93, 0x08, 0x33, 0x9f, 0x93, 0x08]),
        vec![
            Piece {
                loc: PieceLoc::OptimizedOut,
                size: Some(8)
            },
            Piece {
                loc: PieceLoc::Const(3u64.to_le_bytes().to_vec()),
                size: Some(8)
            },
        ]
    );
}

#[test]
fn unsupported_ops_are_named_and_confined_to_their_piece() {
    // DW_OP_entry_value(DW_OP_reg5); DW_OP_stack_value
    assert_eq!(
        compile(&[0xa3, 0x01, 0x55, 0x9f]),
        whole(PieceLoc::Unavailable("entry value".into()))
    );
    // DW_OP_GNU_entry_value is the same thing.
    assert_eq!(
        compile(&[0xf3, 0x01, 0x55, 0x9f]),
        whole(PieceLoc::Unavailable("entry value".into()))
    );
    // DW_OP_breg5 0; DW_OP_deref; DW_OP_deref
    assert_eq!(
        compile(&[0x75, 0x00, 0x06, 0x06]),
        whole(PieceLoc::Unavailable(
            "DW_OP_deref of a constant or of a loaded value is not supported".into()
        ))
    );
    // DW_OP_breg5 0; DW_OP_deref_size 4
    assert_eq!(
        compile(&[0x75, 0x00, 0x94, 0x04]),
        whole(PieceLoc::Unavailable(
            "DW_OP_deref_size of 4 bytes is not supported".into()
        ))
    );
    // DW_OP_breg5 0; DW_OP_xderef
    assert_eq!(
        compile(&[0x75, 0x00, 0x18]),
        whole(PieceLoc::Unavailable(
            "unsupported DWARF op DW_OP_xderef".into()
        ))
    );
    // DW_OP_reg17 (xmm0): floats at -O2.
    assert_eq!(
        compile(&[0x61]),
        whole(PieceLoc::Unavailable(
            "value in register xmm0, which a uprobe does not capture".into()
        ))
    );
    // DW_OP_GNU_push_tls_address and DW_OP_form_tls_address.
    assert_eq!(
        compile(&[0x30, 0xe0]),
        whole(PieceLoc::Unavailable(
            "unsupported DWARF op DW_OP_GNU_push_tls_address".into()
        ))
    );
    // DW_OP_lit1; DW_OP_lit2; DW_OP_mul
    assert_eq!(
        compile(&[0x31, 0x32, 0x1e]),
        whole(PieceLoc::Unavailable(
            "unsupported DWARF op DW_OP_mul".into()
        ))
    );
    // DW_OP_reg0; DW_OP_piece 8; DW_OP_lit1; DW_OP_lit2; DW_OP_mul; DW_OP_piece 8: the
    // bad op spoils only its own piece.
    assert_eq!(
        compile(&[0x50, 0x93, 0x08, 0x31, 0x32, 0x1e, 0x93, 0x08]),
        vec![
            Piece {
                loc: PieceLoc::Reg(pt::RAX),
                size: Some(8)
            },
            Piece {
                loc: PieceLoc::Unavailable("unsupported DWARF op DW_OP_mul".into()),
                size: Some(8)
            },
        ]
    );
    // DW_OP_bit_piece 4 bits at 0 after DW_OP_reg0.
    assert_eq!(
        compile(&[0x50, 0x9d, 0x04, 0x00]),
        vec![Piece {
            loc: PieceLoc::Unavailable("DW_OP_bit_piece is not supported".into()),
            size: Some(0)
        }]
    );
    // DW_OP_implicit_pointer
    let mut ip = vec![0xa0];
    ip.extend_from_slice(&0x1234u32.to_le_bytes());
    ip.push(0);
    assert_eq!(
        compile(&ip),
        whole(PieceLoc::Unavailable(
            "unsupported DWARF op DW_OP_implicit_pointer".into()
        ))
    );
    // A truncated DW_OP_addr never panics.
    assert!(matches!(
        compile(&[0x03, 0x10]).as_slice(),
        [Piece { loc: PieceLoc::Unavailable(r), size: None }] if r.starts_with("malformed")
    ));
}

#[test]
fn unknown_frame_base_or_cfa_is_a_reason() {
    let no_index = |_: u64| None;
    let ctx = ExprContext {
        encoding: enc(),
        frame_base: Err("no CFI".into()),
        cfa: Err("no CFI".into()),
        address_index: &no_index,
    };
    let e = gimli::Expression(EndianSlice::new(&[0x91u8, 0x6c][..], LittleEndian));
    assert_eq!(
        compile_expr(e, &ctx),
        whole(PieceLoc::Unavailable("no CFI".into()))
    );
}

#[test]
fn frame_bases() {
    let cfa = Ok(RegOff {
        reg: pt::RBP,
        offset: 16,
    });
    let fb = |b: &[u8]| {
        frame_base(
            gimli::Expression(EndianSlice::new(b, LittleEndian)),
            enc(),
            &cfa,
        )
    };
    assert_eq!(
        fb(&[0x9c]),
        Ok(RegOff {
            reg: pt::RBP,
            offset: 16
        })
    );
    assert_eq!(
        fb(&[0x57]),
        Ok(RegOff {
            reg: pt::RSP,
            offset: 0
        })
    );
    assert_eq!(
        fb(&[0x76, 0x10]),
        Ok(RegOff {
            reg: pt::RBP,
            offset: 16
        })
    );
    assert!(fb(&[0x31, 0x32, 0x22]).is_err());
}
