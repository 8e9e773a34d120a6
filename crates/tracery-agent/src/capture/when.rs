//! A breakpoint's `--when` condition, compiled into its sites and checked per hit.
//!
//! The kernel takes each site's simple comparisons ([`condition::compile`]); user space
//! re-checks the whole expression on every hit that reaches it, since sites differ in what
//! their kernel part took and re-checking a kernel comparison agrees with it.

use tracery_dwarf::{
    condition::{self, ConditionError, Expr, KernelSplit},
    CapturePlan, ProbeSite, Variable,
};

#[cfg(doc)]
use crate::capture::session::PreparedBreakpoint;

/// What a `--when` left to the kernel and to user space at each site of a breakpoint.
#[derive(Clone, Debug, Default)]
pub struct CompiledWhen {
    /// One split per site, in the order of [`PreparedBreakpoint::sites`]; empty without `--when`.
    pub splits: Vec<KernelSplit>,
}

impl CompiledWhen {
    /// True when some site leaves part of the condition to user space.
    pub fn user_checks(&self) -> bool {
        self.splits.iter().any(|s| s.rest.is_some())
    }

    /// The hit limit to give the kernel for a breakpoint limited to `limit` hits: none when
    /// user space may still reject a hit, which must not use up the kernel's quota.
    pub fn kernel_hit_limit(&self, limit: u64) -> u64 {
        if self.user_checks() {
            0
        } else {
            limit
        }
    }
}

/// Parses a `--when` text, if there is one; a typo is reported before anything is armed.
pub fn parse_when(text: Option<&str>) -> Result<Option<Expr>, ConditionError> {
    text.map(condition::parse).transpose()
}

/// Installs the kernel's share of `when` into every site (of a [`PreparedBreakpoint`] or
/// a [`crate::capture::session::PreparedFile`]), before they are armed.
///
/// Fails when the condition names a variable or field that a site does not have.
pub fn compile_when(
    when: Option<&Expr>,
    sites: &mut [(ProbeSite, CapturePlan)],
) -> Result<CompiledWhen, ConditionError> {
    let mut compiled = CompiledWhen::default();
    if let Some(expr) = when {
        for (_, plan) in sites {
            let split = condition::compile(expr, plan)?;
            split.apply(&mut plan.config);
            compiled.splits.push(split);
        }
    }
    Ok(compiled)
}

/// True when a hit with these variables passes `when` (always, without one).
pub fn when_holds(when: Option<&Expr>, variables: &[Variable]) -> bool {
    when.is_none_or(|e| condition::eval(e, variables))
}
