//! Splitting a condition between the kernel and user space at one probe site.
//!
//! Only comparisons joined by the top-level `&&` can go to the kernel: it ANDs its
//! conditions and drops the hit at the first false one. A comparison goes there when its
//! variable is an integer, bool or char that one op of the plan captures at a fixed data
//! offset and its literal is an integer the kernel compares exactly (in range for the
//! scalar's signedness). The kernel treats a failed op as false, as [`super::eval`] does
//! an unavailable value, so both halves agree.

use tracery_common::{Condition, ProbeConfig, MAX_CONDS};

use super::{Comparison, ConditionError, Expr, Literal};
use crate::{
    fetch_plan::{CapturePlan, Root, ScalarSlot},
    types::{shape_of, Shape, TypeKind},
};

/// The kernel's share of a condition at one probe site, and what is left to user space.
#[derive(Clone, Debug, Default)]
pub struct KernelSplit {
    /// Conditions for [`ProbeConfig::conds`], at most [`MAX_CONDS`].
    pub conds: Vec<Condition>,
    /// Leading ops the kernel runs before checking `conds`: the highest op they read, plus one.
    pub cond_ops: u8,
    /// The comparisons the kernel checks, in the order of `conds`.
    pub kernel: Vec<Comparison>,
    /// What the kernel does not check; `None` when it checks everything.
    pub rest: Option<Expr>,
}

impl KernelSplit {
    /// Installs the kernel conditions into a plan's config (before it is armed).
    pub fn apply(&self, config: &mut ProbeConfig) {
        let n = self.conds.len().min(MAX_CONDS);
        config.conds = [Condition::EMPTY; MAX_CONDS];
        config.conds[..n].copy_from_slice(&self.conds[..n]);
        config.n_conds = n as u8;
        config.cond_ops = self.cond_ops.min(config.n_ops);
    }
}

/// Splits `expr` for the probe site of `plan`: in-kernel conditions for the simple scalar
/// comparisons of its top-level conjunction, the rest for user space.
///
/// Fails when a comparison names a variable that is not in scope at the site, or a field
/// its type does not have. Costs a few
/// type-table lookups per comparison; compile once per site, not per hit.
pub fn compile(expr: &Expr, plan: &CapturePlan) -> Result<KernelSplit, ConditionError> {
    check_names(expr, plan)?;
    let mut split = KernelSplit::default();
    let mut rest = Vec::new();
    for part in expr.conjuncts() {
        let kernel = match part {
            Expr::Cmp(c) if split.conds.len() < MAX_CONDS => kernel_condition(c, plan),
            _ => None,
        };
        match (kernel, part) {
            (Some(cond), Expr::Cmp(c)) => {
                split.cond_ops = split.cond_ops.max(cond.op_index + 1);
                split.conds.push(cond);
                split.kernel.push(c.clone());
            }
            _ => rest.push(part.clone()),
        }
    }
    split.rest = Expr::all(rest);
    Ok(split)
}

fn kernel_condition(c: &Comparison, plan: &CapturePlan) -> Option<Condition> {
    let Literal::Int(v) = c.literal else {
        return None;
    };
    let path: Vec<&str> = c.path.iter().map(String::as_str).collect();
    let ScalarSlot {
        op_index,
        offset,
        size,
        signed,
    } = plan.scalar_slot(&path)?;
    // The kernel compares as i64 (signed) or u64 (unsigned); a literal outside that range
    // would wrap, so user space takes it.
    let value = if signed {
        i64::try_from(v).ok()?
    } else {
        u64::try_from(v).ok()? as i64
    };
    Some(Condition {
        value,
        slot: offset,
        size,
        signed: u8::from(signed),
        op: c.op as u8,
        op_index,
        _pad: [0; 2],
    })
}

fn check_names(expr: &Expr, plan: &CapturePlan) -> Result<(), ConditionError> {
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check_names(a, plan)?;
            check_names(b, plan)
        }
        Expr::Not(e) => check_names(e, plan),
        Expr::Cmp(c) => {
            let name = &c.path[0];
            if plan.variables().any(|(v, _)| v == name) {
                return check_fields(c, plan);
            }
            let mut in_scope: Vec<String> = Vec::new();
            for (v, _) in plan.variables() {
                if !in_scope.iter().any(|s| s == v) {
                    in_scope.push(v.to_string());
                }
            }
            Err(ConditionError::UnknownVariable {
                name: name.clone(),
                in_scope,
            })
        }
    }
}

/// Checks the field names of `c`'s path against the variable's type, as far as the plan
/// loaded it. Strings, slices, interfaces and Rust enums are not checked: the decoder
/// gives them a different shape than their DWARF members.
fn check_fields(c: &Comparison, plan: &CapturePlan) -> Result<(), ConditionError> {
    let var = plan
        .vars
        .iter()
        .find(|v| v.name == c.path[0] && v.frame.is_none())
        .or_else(|| plan.vars.iter().find(|v| v.name == c.path[0]));
    let Some(Root::Region(_, mut ty)) = var.map(|v| &v.root) else {
        return Ok(());
    };
    for (i, field) in c.path.iter().enumerate().skip(1) {
        // Pointers are followed implicitly, as in `eval`.
        for _ in 0..8 {
            match plan.types.strip(ty) {
                Some((_, t)) => match t.kind {
                    TypeKind::Pointer {
                        target: Some(target),
                        ..
                    } => ty = target,
                    _ => break,
                },
                None => return Ok(()),
            }
        }
        let Some((sid, t)) = plan.types.strip(ty) else {
            return Ok(());
        };
        if shape_of(&plan.types, sid, plan.lang) != Shape::Other {
            return Ok(());
        }
        let prefix = c.path[..i].join(".");
        match &t.kind {
            TypeKind::Aggregate(agg) if agg.variants.is_some() => return Ok(()),
            TypeKind::Aggregate(agg) => match agg.members.iter().find(|m| m.name == *field) {
                Some(m) => ty = m.ty,
                None => {
                    return Err(ConditionError::UnknownField {
                        path: prefix,
                        type_name: t.name.clone(),
                        field: field.clone(),
                        fields: agg.members.iter().map(|m| m.name.clone()).collect(),
                    })
                }
            },
            // A pointer whose target was not loaded (not followed): nothing to check.
            TypeKind::Pointer { .. } | TypeKind::Alias { .. } => return Ok(()),
            _ => {
                return Err(ConditionError::UnknownField {
                    path: prefix,
                    type_name: t.name.clone(),
                    field: field.clone(),
                    fields: Vec::new(),
                })
            }
        }
    }
    Ok(())
}
