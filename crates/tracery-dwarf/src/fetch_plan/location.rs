//! Compiling DWARF location expressions into fetchable pieces.
//!
//! This is not an evaluator: nothing is read. A small symbolic stack turns the expressions
//! compilers emit for variables (`DW_OP_reg`, `DW_OP_breg`, `DW_OP_fbreg`,
//! `DW_OP_call_frame_cfa`, `DW_OP_addr`, `DW_OP_piece`, constants, `DW_OP_stack_value`,
//! `DW_OP_implicit_value`) into "register", "memory at reg+off", "value reg+off" or
//! "constant" pieces. Any other op makes its piece [`PieceLoc::Unavailable`] with the op's
//! name: never a guess, never a panic.

use gimli::{Operation, Reader, ReaderOffset};
use tracery_common::regs::dwarf_to_pt_regs;

/// A register (`pt_regs` index) plus an offset: how frame bases and the CFA are expressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RegOff {
    pub reg: u8,
    pub offset: i64,
}

/// An address the kernel can compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addr {
    /// `regs[reg] + offset`.
    Reg(RegOff),
    /// A link-time address (`DW_OP_addr`): the load bias is added when the plan is relocated.
    Absolute(u64),
}

/// Where one piece of a variable is at the probe address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PieceLoc {
    /// The bytes are a register's value (`pt_regs` index).
    Reg(u8),
    /// The bytes are in memory at this address.
    Mem(Addr),
    /// The bytes are in memory at the pointer stored at `ptr`, plus `offset`
    /// (`DW_OP_fbreg 16; DW_OP_deref`: an argument passed by reference).
    MemAt { ptr: Addr, offset: i64 },
    /// The bytes are the 8-byte word stored at this address (`...; DW_OP_deref;
    /// DW_OP_stack_value`).
    Word(Addr),
    /// The bytes are this computed address itself (`DW_OP_breg7 8; DW_OP_stack_value`).
    Value(Addr),
    /// The bytes are a constant (little-endian).
    Const(Vec<u8>),
    /// DWARF gives this piece no location.
    OptimizedOut,
    /// A location the kernel cannot fetch; the reason names the DWARF op.
    Unavailable(String),
}

/// One piece; `size` is `None` for an expression without `DW_OP_piece` (the whole value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub loc: PieceLoc,
    pub size: Option<u64>,
}

/// What an expression may refer to besides its own operands.
pub(crate) struct ExprContext<'a> {
    pub encoding: gimli::Encoding,
    /// The function's frame base (`DW_OP_fbreg`), or why it is unknown.
    pub frame_base: Result<RegOff, String>,
    /// The canonical frame address at the probe address, or why it is unknown.
    pub cfa: Result<RegOff, String>,
    /// Resolves `DW_OP_addrx` indices through `.debug_addr`.
    pub address_index: &'a dyn Fn(u64) -> Option<u64>,
}

/// A value on the symbolic stack.
#[derive(Clone, Copy, Debug)]
enum Sym {
    Const(u64),
    Reg(RegOff),
    /// A link-time address, relocated with the load bias.
    Link(u64),
    /// The word stored at `ptr`, plus `offset` (after `DW_OP_deref`).
    Deref {
        ptr: Addr,
        offset: i64,
    },
}

impl Sym {
    /// The address this value names when used as a location.
    fn addr(self) -> Option<Addr> {
        match self {
            Sym::Reg(r) => Some(Addr::Reg(r)),
            Sym::Link(a) => Some(Addr::Absolute(a)),
            Sym::Const(_) | Sym::Deref { .. } => None,
        }
    }
}

/// Name of the DWARF op with this opcode, for messages.
fn op_name(opcode: u8) -> String {
    gimli::DwOp(opcode)
        .static_string()
        .map_or_else(|| format!("DW_OP_{opcode:#04x}"), str::to_string)
}

/// Maps a DWARF register to its `pt_regs` index, or says why a uprobe cannot see it.
pub(crate) fn pt_reg(reg: gimli::Register) -> Result<u8, String> {
    dwarf_to_pt_regs(reg.0).ok_or_else(|| {
        let name =
            gimli::X86_64::register_name(reg).map_or_else(|| format!("#{}", reg.0), str::to_string);
        format!("value in register {name}, which a uprobe does not capture")
    })
}

/// The frame base as a register plus offset (`DW_AT_frame_base` of the function).
pub(crate) fn frame_base<R: Reader>(
    expr: gimli::Expression<R>,
    encoding: gimli::Encoding,
    cfa: &Result<RegOff, String>,
) -> Result<RegOff, String> {
    let mut ops = expr.operations(encoding);
    let first = ops
        .next()
        .map_err(|e| format!("malformed frame base: {e}"))?;
    if ops.next().ok().flatten().is_some() {
        return Err("frame base is a complex DWARF expression".into());
    }
    match first {
        Some(Operation::Register { register }) => Ok(RegOff {
            reg: pt_reg(register)?,
            offset: 0,
        }),
        Some(Operation::RegisterOffset {
            register, offset, ..
        }) => Ok(RegOff {
            reg: pt_reg(register)?,
            offset,
        }),
        Some(Operation::CallFrameCFA) => cfa.clone(),
        _ => Err("frame base is not a register, register+offset or the CFA".into()),
    }
}

/// Compiles one location expression into pieces. An empty expression means "optimized out"
/// and compiles to no pieces.
pub(crate) fn compile_expr<R: Reader>(
    expr: gimli::Expression<R>,
    ctx: &ExprContext<'_>,
) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut stack: Vec<Sym> = Vec::new();
    let mut done: Option<PieceLoc> = None;
    let mut poison: Option<String> = None;
    let mut any_op = false;
    let mut bytes = expr.0;
    while !bytes.is_empty() {
        let opcode = bytes.clone().read_u8().unwrap_or(0);
        let op = match Operation::parse(&mut bytes, ctx.encoding) {
            Ok(op) => op,
            Err(e) => {
                // The rest cannot be parsed: the current piece and everything after it.
                poison.get_or_insert(format!("malformed location expression ({e})"));
                break;
            }
        };
        if let Operation::Piece {
            size_in_bits,
            bit_offset,
        } = op
        {
            let loc = if let Some(reason) = poison.take() {
                PieceLoc::Unavailable(reason)
            } else if bit_offset.is_some() || size_in_bits % 8 != 0 {
                PieceLoc::Unavailable("DW_OP_bit_piece is not supported".into())
            } else {
                finish(done.take(), &mut stack)
            };
            pieces.push(Piece {
                loc,
                size: Some(size_in_bits / 8),
            });
            stack.clear();
            done = None;
            any_op = false;
            continue;
        }
        any_op = true;
        if poison.is_some() {
            continue;
        }
        if done.is_some() && !matches!(op, Operation::Nop) {
            poison = Some(format!("{} after a complete location", op_name(opcode)));
            continue;
        }
        if let Err(reason) = step(op, opcode, ctx, &mut stack, &mut done) {
            poison = Some(reason);
        }
    }
    if any_op || poison.is_some() {
        let loc = match poison {
            Some(reason) => PieceLoc::Unavailable(reason),
            None => finish(done, &mut stack),
        };
        // Trailing ops after the last piece are malformed; a lone location is the whole value.
        if pieces.is_empty() {
            pieces.push(Piece { loc, size: None });
        }
    }
    pieces
}

fn step<R: Reader>(
    op: Operation<R>,
    opcode: u8,
    ctx: &ExprContext<'_>,
    stack: &mut Vec<Sym>,
    done: &mut Option<PieceLoc>,
) -> Result<(), String> {
    match op {
        Operation::Register { register } => {
            if !stack.is_empty() {
                return Err("DW_OP_reg with operands on the stack".into());
            }
            *done = Some(PieceLoc::Reg(pt_reg(register)?));
        }
        Operation::RegisterOffset {
            register,
            offset,
            base_type,
        } => {
            if base_type.0.into_u64() != 0 {
                return Err("typed DW_OP_bregx is not supported".into());
            }
            stack.push(Sym::Reg(RegOff {
                reg: pt_reg(register)?,
                offset,
            }));
        }
        Operation::FrameOffset { offset } => {
            let base = ctx.frame_base.clone()?;
            stack.push(Sym::Reg(RegOff {
                reg: base.reg,
                offset: base.offset.wrapping_add(offset),
            }));
        }
        Operation::CallFrameCFA => stack.push(Sym::Reg(ctx.cfa.clone()?)),
        Operation::Address { address } => stack.push(Sym::Link(address)),
        Operation::AddressIndex { index } => {
            let a = (ctx.address_index)(index.0.into_u64())
                .ok_or("DW_OP_addrx index outside .debug_addr")?;
            stack.push(Sym::Link(a));
        }
        Operation::UnsignedConstant { value } => stack.push(Sym::Const(value)),
        Operation::SignedConstant { value } => stack.push(Sym::Const(value as u64)),
        Operation::PlusConstant { value } => {
            let top = stack.pop().ok_or("DW_OP_plus_uconst on an empty stack")?;
            stack.push(add(top, Sym::Const(value))?);
        }
        Operation::Plus => {
            let b = stack.pop().ok_or("DW_OP_plus on a short stack")?;
            let a = stack.pop().ok_or("DW_OP_plus on a short stack")?;
            stack.push(add(a, b)?);
        }
        Operation::Minus => {
            let b = stack.pop().ok_or("DW_OP_minus on a short stack")?;
            let a = stack.pop().ok_or("DW_OP_minus on a short stack")?;
            let Sym::Const(c) = b else {
                return Err("DW_OP_minus of a register value".into());
            };
            stack.push(add(a, Sym::Const(c.wrapping_neg()))?);
        }
        Operation::Nop => {}
        Operation::Deref {
            size,
            space: false,
            base_type,
        } if base_type.0.into_u64() == 0 => {
            if size != 8 {
                return Err(format!(
                    "{} of {size} bytes is not supported",
                    op_name(opcode)
                ));
            }
            let top = stack.pop().ok_or("DW_OP_deref on an empty stack")?;
            let ptr = top
                .addr()
                .ok_or("DW_OP_deref of a constant or of a loaded value is not supported")?;
            stack.push(Sym::Deref { ptr, offset: 0 });
        }
        Operation::StackValue => {
            *done = Some(
                match stack.pop().ok_or("DW_OP_stack_value on an empty stack")? {
                    Sym::Const(c) => PieceLoc::Const(c.to_le_bytes().to_vec()),
                    Sym::Reg(r) => PieceLoc::Value(Addr::Reg(r)),
                    Sym::Link(a) => PieceLoc::Value(Addr::Absolute(a)),
                    Sym::Deref { ptr, offset: 0 } => PieceLoc::Word(ptr),
                    Sym::Deref { .. } => {
                        return Err(
                            "a loaded value plus a constant as a value is not supported".into()
                        )
                    }
                },
            );
        }
        Operation::ImplicitValue { data } => {
            let bytes = data
                .to_slice()
                .map_err(|e| format!("unreadable DW_OP_implicit_value: {e}"))?;
            *done = Some(PieceLoc::Const(bytes.to_vec()));
        }
        Operation::EntryValue { .. } => return Err("entry value".into()),
        _ => return Err(format!("unsupported DWARF op {}", op_name(opcode))),
    }
    Ok(())
}

fn add(a: Sym, b: Sym) -> Result<Sym, String> {
    Ok(match (a, b) {
        (Sym::Const(x), Sym::Const(y)) => Sym::Const(x.wrapping_add(y)),
        (Sym::Reg(r), Sym::Const(c)) | (Sym::Const(c), Sym::Reg(r)) => Sym::Reg(RegOff {
            reg: r.reg,
            offset: r.offset.wrapping_add(c as i64),
        }),
        (Sym::Link(l), Sym::Const(c)) | (Sym::Const(c), Sym::Link(l)) => {
            Sym::Link(l.wrapping_add(c))
        }
        (Sym::Deref { ptr, offset }, Sym::Const(c))
        | (Sym::Const(c), Sym::Deref { ptr, offset }) => Sym::Deref {
            ptr,
            offset: offset.wrapping_add(c as i64),
        },
        _ => return Err("sum of two runtime values".into()),
    })
}

/// The location of a piece whose ops did not complete it: memory at the top of the stack.
fn finish(done: Option<PieceLoc>, stack: &mut Vec<Sym>) -> PieceLoc {
    if let Some(loc) = done {
        return loc;
    }
    match stack.pop() {
        None => PieceLoc::OptimizedOut,
        Some(Sym::Reg(r)) => PieceLoc::Mem(Addr::Reg(r)),
        Some(Sym::Link(a)) => PieceLoc::Mem(Addr::Absolute(a)),
        Some(Sym::Deref { ptr, offset }) => PieceLoc::MemAt { ptr, offset },
        // Not relocatable: a PIE would read the wrong place, so refuse rather than guess.
        Some(Sym::Const(_)) => {
            PieceLoc::Unavailable("memory at a constant address (DW_OP_const)".into())
        }
    }
}

#[cfg(test)]
mod tests;
