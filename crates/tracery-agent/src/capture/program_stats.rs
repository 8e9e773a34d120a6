//! What each loaded eBPF program costs: the kernel's run count and run time per program
//! (`bpf_stats`), for benchmarks and operators asking what being armed costs.

use std::{os::fd::OwnedFd, time::Duration};

use aya::{sys::Stats, Ebpf};

use crate::error::AgentError;

/// Calls and run time of one program since it was loaded (counted while stats are on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    /// The program's name, as in `tracery_common::names`.
    pub name: String,
    /// Times it ran: for a uprobe, the traps it took.
    pub run_count: u64,
    /// Time spent in it, not counting the trap around a uprobe.
    pub run_time: Duration,
}

impl ProgramStats {
    /// The change from `before` (same program) to `self`.
    pub fn since(&self, before: &ProgramStats) -> ProgramStats {
        ProgramStats {
            name: self.name.clone(),
            run_count: self.run_count.saturating_sub(before.run_count),
            run_time: self.run_time.saturating_sub(before.run_time),
        }
    }

    /// Mean run time per call, in nanoseconds; 0 when it did not run.
    pub fn ns_per_call(&self) -> f64 {
        if self.run_count == 0 {
            return 0.0;
        }
        self.run_time.as_nanos() as f64 / self.run_count as f64
    }
}

/// Turns the kernel's per-program run-time counting on for as long as the returned fd
/// lives (`BPF_ENABLE_STATS`; it costs two clock reads per program run, so it is off by
/// default).
pub fn enable() -> Result<OwnedFd, AgentError> {
    aya::sys::enable_stats(Stats::RunTime).map_err(|e| AgentError::Stats(Box::new(e)))
}

/// The counters of every program in `ebpf`, by name.
pub fn read(ebpf: &Ebpf) -> Vec<ProgramStats> {
    ebpf.programs()
        .filter_map(|(name, program)| {
            // A program that was never loaded has no kernel counters.
            let info = program.info().ok()?;
            Some(ProgramStats {
                name: name.to_string(),
                run_count: info.run_count(),
                run_time: info.run_time(),
            })
        })
        .collect()
}
