//! Compiling the variables in scope at a probe address into a kernel fetch plan.
//!
//! [`compile_plan`] finds the variables ([`crate::scope`]), compiles each DWARF location at
//! that exact address ([`location`], with the CFA from [`cfa`]), and lays out bounded ops
//! that capture each variable's bytes and then follow pointers, strings and slices up to
//! the [`CaptureLimits`] ([`builder`]). The resulting [`CapturePlan`] carries the
//! [`ProbeConfig`] for the kernel and what [`crate::decode::decode`] needs to read a hit.

mod builder;
pub(crate) mod cfa;
mod go_types;
pub(crate) mod location;

use std::{collections::HashMap, path::PathBuf};

use gimli::AttributeValue;
use tracery_common::{BaseKind, ProbeConfig, STACK_CAP};

use builder::Builder;
pub(crate) use builder::{
    Follow, Part, Payload, Region, RegionId, BUCKETS_KEY, CONTROL_BLOCK, HASH_NODE_VALUE,
};
pub(crate) use go_types::{Candidate, GoTypes};
use location::{compile_expr, Addr, ExprContext, Piece, PieceLoc};

use crate::{
    address::{LoadBias, ObjAddr},
    binary::{Binary, Reader},
    render::SourceLanguage,
    scope::{scope_at, Scope, ScopeVar, Units},
    types::{Encoding, TypeId, TypeKind, TypeLoader, TypeTable},
    value::{Value, VarKind},
};

/// Caps on what one hit captures. Defaults suit a production service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureLimits {
    /// Most bytes of one string.
    pub max_string: u16,
    /// Most elements of one slice or vector.
    pub max_elements: u16,
    /// Most pointer hops from a variable.
    pub max_depth: u8,
    /// Bytes of user stack copied for unwinding (at most [`STACK_CAP`]).
    pub stack_bytes: u16,
}

impl Default for CaptureLimits {
    fn default() -> Self {
        Self {
            max_string: 256,
            max_elements: 64,
            max_depth: 3,
            stack_bytes: 8192,
        }
    }
}

/// Compiling a plan failed as a whole (a single variable never fails a plan).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "no function with debug information contains {address} in {path}; probe a line inside a function (`tracery-ctl symbols {path} --lines FILE` lists them)"
    )]
    /// The address is outside every function the DWARF describes.
    NoFunction { path: PathBuf, address: ObjAddr },
    /// The DWARF could not be parsed.
    #[error("bad DWARF in {path}")]
    Dwarf {
        path: PathBuf,
        #[source]
        source: gimli::Error,
    },
}

/// A variable as the plan captures it.
#[derive(Clone, Debug)]
pub(crate) struct PlannedVar {
    pub name: String,
    pub kind: VarKind,
    pub frame: Option<String>,
    pub type_name: String,
    pub root: Root,
}

/// Where a variable's value comes from.
#[derive(Clone, Debug)]
pub(crate) enum Root {
    /// Captured bytes of this region, of this type.
    Region(RegionId, TypeId),
    /// Known without capturing anything (optimized out, no type, ...).
    Value(Value),
}

/// A compiled fetch plan for one probe address, and how to decode what it captures.
#[derive(Clone, Debug)]
pub struct CapturePlan {
    /// The kernel's view: ops, `n_ops`, `data_size` and `stack_bytes` are filled;
    /// `breakpoint_id`, `hit_limit` and `rate_per_sec` are left for the agent.
    pub config: ProbeConfig,
    pub(crate) address: ObjAddr,
    pub(crate) function: String,
    pub(crate) lang: SourceLanguage,
    pub(crate) limits: CaptureLimits,
    pub(crate) types: TypeTable,
    pub(crate) vars: Vec<PlannedVar>,
    pub(crate) regions: Vec<Region>,
    pub(crate) follows: HashMap<(RegionId, u64), Follow>,
    pub(crate) go_types: Option<GoTypes>,
    /// Rust vtables the plan's trait objects may point at (link-time address: concrete
    /// type name and type).
    pub(crate) rust_vtables: HashMap<u64, (String, Option<TypeId>)>,
}

impl CapturePlan {
    /// Name and kind of each variable the plan captures, in decode order.
    pub fn variables(&self) -> impl Iterator<Item = (&str, VarKind)> {
        self.vars.iter().map(|v| (v.name.as_str(), v.kind))
    }

    /// The config for a process whose load bias is `bias`: link-time addresses (globals in a
    /// PIE) get the bias added. Everything else is register- or pointer-relative.
    pub fn relocate(&self, bias: LoadBias) -> ProbeConfig {
        let mut cfg = self.config;
        let n = cfg.n_ops as usize;
        for op in &mut cfg.ops[..n] {
            if op.base == BaseKind::Absolute as u8 {
                op.offset = op.offset.wrapping_add(bias.0 as i64);
            }
        }
        cfg
    }

    /// The probe address the plan was compiled for.
    pub fn address(&self) -> ObjAddr {
        self.address
    }

    /// The function containing the probe address (`orders::process_order`, `main.processOrder`).
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The source language of the function, for [`crate::render::render_text`].
    pub fn language(&self) -> SourceLanguage {
        self.lang
    }

    /// The limits the plan was compiled with.
    pub fn limits(&self) -> &CaptureLimits {
        &self.limits
    }
}

/// Where the plan captures one integer, bool or char: what an in-kernel condition reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalarSlot {
    /// The op that writes the scalar; the scalar is unknown when that op failed.
    pub op_index: u8,
    /// Offset of the scalar in the data area.
    pub offset: u16,
    /// Width in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// Two's complement signed (C `int`, `char`, Rust `i64`...).
    pub signed: bool,
}

impl CapturePlan {
    /// Where the integer, bool or char at `path` (a variable, then field names; pointers
    /// are followed) lies in the data area, when a single op captures all of it at a fixed
    /// offset. `None` for anything else: other types, bit-fields, enums, values held in
    /// dynamic payloads or not captured.
    pub fn scalar_slot(&self, path: &[&str]) -> Option<ScalarSlot> {
        let (first, fields) = path.split_first()?;
        // The probed function's own variable shadows an inlined callee's (as in decode).
        let var = self
            .vars
            .iter()
            .find(|v| v.name == *first && v.frame.is_none())
            .or_else(|| self.vars.iter().find(|v| v.name == *first))?;
        let Root::Region(mut region, mut ty) = var.root else {
            return None;
        };
        let mut off = 0u64;
        let mut fields = fields.iter();
        let mut field = fields.next();
        // Each step consumes a field or a pointer; the bound only guards odd type graphs.
        for _ in 0..2 * path.len() + 2 {
            let (_, t) = self.types.strip(ty)?;
            match (&t.kind, field) {
                (
                    TypeKind::Pointer {
                        target: Some(target),
                        ..
                    },
                    Some(_),
                ) => {
                    let Some(Follow::Region(next)) = self.follows.get(&(region, off)) else {
                        return None;
                    };
                    (region, off, ty) = (*next, 0, *target);
                    if self.regions[region].payload != Payload::Fixed {
                        return None;
                    }
                }
                (TypeKind::Aggregate(agg), Some(name)) if agg.variants.is_none() => {
                    let m = agg.members.iter().find(|m| m.name == *name)?;
                    if m.bits.is_some() {
                        return None;
                    }
                    (off, ty) = (off + m.offset, m.ty);
                    field = fields.next();
                }
                (TypeKind::Base(enc), None) => {
                    let signed = match enc {
                        Encoding::Signed | Encoding::SignedChar => true,
                        Encoding::Unsigned
                        | Encoding::UnsignedChar
                        | Encoding::Bool
                        | Encoding::Utf => false,
                        Encoding::Float | Encoding::Other(_) => return None,
                    };
                    let size = t.size.filter(|s| matches!(s, 1 | 2 | 4 | 8))?;
                    return self.regions[region].parts.iter().find_map(|p| match p {
                        Part::Op { at, len, op } if *at <= off && off + size <= at + len => {
                            Some(ScalarSlot {
                                op_index: u8::try_from(*op).ok()?,
                                offset: u16::try_from(
                                    u64::from(self.config.ops[*op].out) + (off - at),
                                )
                                .ok()?,
                                size: size as u8,
                                signed,
                            })
                        }
                        _ => None,
                    });
                }
                _ => return None,
            }
        }
        None
    }
}

/// Compiles the variables in scope at `address` into a bounded fetch plan.
///
/// Costs one walk of the DWARF of the unit containing `address` (and of every Go unit when a
/// Go interface is in scope); compile once per probe site, not per hit.
pub fn compile_plan(
    binary: &Binary,
    address: ObjAddr,
    limits: &CaptureLimits,
) -> Result<CapturePlan, PlanError> {
    compile_plan_in(binary, address, None, limits)
}

/// [`compile_plan`], told which unit probably holds `address` (by an index): that unit is
/// parsed first, instead of every unit before it.
pub(crate) fn compile_plan_in(
    binary: &Binary,
    address: ObjAddr,
    hint: Option<u64>,
    limits: &CaptureLimits,
) -> Result<CapturePlan, PlanError> {
    let dwarf_err = |source| PlanError::Dwarf {
        path: binary.debug_path().to_path_buf(),
        source,
    };
    let units = Units::new(binary.dwarf()).map_err(dwarf_err)?;
    let hint = hint
        .and_then(|offset| units.at_offset(offset))
        .map(|d| d.unit);
    let scope = scope_at(&units, address.0, hint)
        .map_err(dwarf_err)?
        .ok_or_else(|| PlanError::NoFunction {
            path: binary.path().to_path_buf(),
            address,
        })?;
    let unit = &units.get(scope.unit).map_err(dwarf_err)?.unit;
    let encoding = unit.encoding();
    let cfa = cfa::cfa_at(binary.frame_sections(), address.0);
    let frame_base = match scope.frame_base.clone() {
        None => Err("the function has no frame base".to_string()),
        Some(AttributeValue::Exprloc(e)) => location::frame_base(e, encoding, &cfa),
        Some(attr) => match select_location(&units, scope.unit, attr, address.0) {
            Ok(Some(e)) => location::frame_base(e, encoding, &cfa),
            Ok(None) => Err("no frame base at this address".to_string()),
            Err(e) => Err(format!("unreadable frame base location list: {e}")),
        },
    };
    let address_index = |i: u64| {
        units
            .dwarf
            .address(unit, gimli::DebugAddrIndex(i as usize))
            .ok()
    };
    let ctx = ExprContext {
        encoding,
        frame_base,
        cfa,
        address_index: &address_index,
    };

    let mut b = Builder::new(TypeLoader::new(&units), scope.lang, limits);
    b.set_go_source(binary, &units, &scope.function);
    let mut vars = Vec::new();
    for var in &scope.vars {
        vars.push(plan_var(&mut b, &units, &scope, var, &ctx, address.0));
    }
    b.run();

    let go_types = b.take_go_types();
    let mut config = ProbeConfig::EMPTY;
    config.n_ops = b.ops.len() as u8;
    config.ops[..b.ops.len()].copy_from_slice(&b.ops);
    config.data_size = b.data as u16;
    config.stack_bytes = limits.stack_bytes.min(STACK_CAP as u16);
    Ok(CapturePlan {
        config,
        address,
        function: scope.function,
        lang: scope.lang,
        limits: *limits,
        types: b.loader.into_table(),
        vars,
        regions: b.regions,
        follows: b.follows,
        go_types,
        rust_vtables: b.rust_dyn.seen,
    })
}

fn plan_var(
    b: &mut Builder<'_, '_>,
    units: &Units<'_>,
    scope: &Scope,
    var: &ScopeVar,
    ctx: &ExprContext<'_>,
    address: u64,
) -> PlannedVar {
    let ty = var.type_die.map(|d| b.loader.id_of(d));
    let type_name = ty.map_or_else(|| "?".to_string(), |t| b.loader.name_of(t));
    let mut planned = PlannedVar {
        name: var.name.clone(),
        kind: var.kind,
        frame: var.frame.clone(),
        type_name,
        root: Root::Value(Value::unavailable("variable has no type")),
    };
    let Some(ty) = ty else {
        return planned;
    };
    if let Some(line) = var.not_yet_declared {
        planned.root = Root::Value(Value::unavailable(format!(
            "not assigned yet: declared at line {line}"
        )));
        return planned;
    }
    b.loader.load(ty);
    let Some(size) = b.loader.table().size_of(ty) else {
        planned.root = Root::Value(Value::unavailable("type of unknown size"));
        return planned;
    };
    let pieces = match (&var.location, &var.const_value) {
        (Some(AttributeValue::Exprloc(e)), _) => compile_expr(e.clone(), ctx),
        (Some(attr), _) => match select_location(units, var.die.unit, attr.clone(), address) {
            Ok(Some(e)) => compile_expr(e, ctx),
            Ok(None) => Vec::new(),
            Err(e) => vec![Piece {
                loc: PieceLoc::Unavailable(format!("unreadable location list: {e}")),
                size: None,
            }],
        },
        (None, Some(cv)) => match const_bytes(units, var.die.unit, cv.clone()) {
            Some(bytes) => vec![Piece {
                loc: PieceLoc::Const(bytes),
                size: None,
            }],
            None => vec![Piece {
                loc: PieceLoc::Unavailable("constant value of an unsupported form".into()),
                size: None,
            }],
        },
        (None, None) => Vec::new(),
    };
    let pieces = rust_indirect_argument(scope, var, size, pieces, &ctx.cfa);
    planned.root = Root::Region(b.root(ty, size, &pieces), ty);
    planned
}

/// Rust passes aggregates larger than two words by reference. When that reference is itself
/// passed on the stack, LLVM describes the argument at the stack slot holding the reference,
/// without the `DW_OP_deref` (seen with rustc 1.95 at -O). The Rust ABI never puts such an
/// aggregate in the incoming-argument area by value, so a location there is the reference:
/// follow it instead of showing the reference's bytes as the value.
fn rust_indirect_argument(
    scope: &Scope,
    var: &ScopeVar,
    size: u64,
    pieces: Vec<Piece>,
    cfa: &Result<location::RegOff, String>,
) -> Vec<Piece> {
    let (true, VarKind::Arg, Ok(cfa)) = (scope.rust_abi && size > 16, var.kind, cfa) else {
        return pieces;
    };
    match pieces.as_slice() {
        [Piece {
            loc: PieceLoc::Mem(Addr::Reg(r)),
            size: None,
        }] if r.reg == cfa.reg && r.offset >= cfa.offset => vec![Piece {
            loc: PieceLoc::MemAt {
                ptr: Addr::Reg(*r),
                offset: 0,
            },
            size: None,
        }],
        _ => pieces,
    }
}

/// The expression of the location-list entry covering `address`; `None` when none does
/// (the variable does not exist there: optimized out).
fn select_location(
    units: &Units<'_>,
    unit: usize,
    attr: AttributeValue<Reader>,
    address: u64,
) -> Result<Option<gimli::Expression<Reader>>, gimli::Error> {
    let info = units.get(unit)?;
    let Some(mut iter) = units.dwarf.attr_locations(&info.unit, attr)? else {
        return Ok(None);
    };
    while let Some(entry) = iter.next()? {
        if entry.range.begin <= address && address < entry.range.end {
            return Ok(Some(entry.data));
        }
    }
    Ok(None)
}

/// `DW_AT_const_value` as little-endian bytes.
fn const_bytes(units: &Units<'_>, unit: usize, v: AttributeValue<Reader>) -> Option<Vec<u8>> {
    use gimli::Reader as _;
    Some(match v {
        AttributeValue::Data1(x) => vec![x],
        AttributeValue::Data2(x) => x.to_le_bytes().to_vec(),
        AttributeValue::Data4(x) => x.to_le_bytes().to_vec(),
        AttributeValue::Data8(x) => x.to_le_bytes().to_vec(),
        AttributeValue::Sdata(x) => x.to_le_bytes().to_vec(),
        AttributeValue::Udata(x) => x.to_le_bytes().to_vec(),
        AttributeValue::Block(r) => r.to_slice().ok()?.to_vec(),
        AttributeValue::String(r) => r.to_slice().ok()?.to_vec(),
        other => {
            let s = units.attr_string(unit, other)?;
            s.into_bytes()
        }
    })
}

#[cfg(test)]
mod tests {
    use tracery_common::{FetchOp, OpKind};

    use super::*;

    fn plan_with(ops: &[FetchOp]) -> CapturePlan {
        let mut config = ProbeConfig::EMPTY;
        config.ops[..ops.len()].copy_from_slice(ops);
        config.n_ops = ops.len() as u8;
        CapturePlan {
            config,
            address: ObjAddr(0x1000),
            function: "f".into(),
            lang: SourceLanguage::C,
            limits: CaptureLimits::default(),
            types: TypeTable::default(),
            vars: Vec::new(),
            regions: Vec::new(),
            follows: HashMap::new(),
            go_types: None,
            rust_vtables: HashMap::new(),
        }
    }

    #[test]
    fn plans_can_be_shared_across_threads() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<CapturePlan>();
    }

    #[test]
    fn relocation_moves_only_link_time_addresses() {
        let global = FetchOp {
            offset: 0x4010,
            base: BaseKind::Absolute as u8,
            kind: OpKind::Copy as u8,
            len: 4,
            ..FetchOp::EMPTY
        };
        let stack = FetchOp {
            offset: -20,
            base: BaseKind::Reg as u8,
            kind: OpKind::Copy as u8,
            reg: 4,
            out: 8,
            len: 4,
            ..FetchOp::EMPTY
        };
        let plan = plan_with(&[global, stack]);
        let cfg = plan.relocate(LoadBias(0x5555_5555_4000));
        assert_eq!(cfg.ops[0].offset, 0x5555_5555_8010);
        assert_eq!(cfg.ops[1], stack);
        // Unused op slots stay untouched (the EMPTY op has an Absolute base).
        assert_eq!(cfg.ops[2], FetchOp::EMPTY);
        assert_eq!(
            plan.config.ops[0].offset, 0x4010,
            "the plan itself is not changed"
        );
    }
}
