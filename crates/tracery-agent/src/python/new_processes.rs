//! Python processes that start after a breakpoint that selects them was set (a service or
//! executable target): armed once the location's code exists in them (see
//! [`crate::late_arming`]).
//!
//! At exec the interpreter has not run the service's modules yet, so the location has no
//! code object to watch.

use std::time::Instant;

use tracery_model::error::chain;

use super::{locate::PyLocation, PythonRuntime};
use crate::{capture::probes::ProbeTable, manager::Target, process::pid_exists};

impl PythonRuntime {
    /// A process that just executed a new image: the Python breakpoints whose target
    /// `selects` it are armed in it once its code is loaded (see [`PythonRuntime::tick`]).
    pub fn on_exec(&mut self, pid: u32, selects: impl Fn(&Target) -> bool) {
        // A new image, perhaps of a reused PID: nothing known of the old one applies.
        self.forget_process(pid);
        if !super::is_python_process(pid) {
            return;
        }
        for (id, bp) in &self.breakpoints {
            if bp.ended.is_none() && !bp.pids.contains_key(&pid) && selects(&bp.spec.target) {
                self.pending.add(*id, pid);
            }
        }
    }

    /// Tries the waiting processes whose turn it is.
    pub(super) fn arm_pending(&mut self, table: &mut ProbeTable) {
        let now = Instant::now();
        for w in self.pending.take_due(now) {
            let Some(mut bp) = self.breakpoints.remove(&w.breakpoint) else {
                continue;
            };
            if pid_exists(w.pid) && bp.ended.is_none() && !bp.pids.contains_key(&w.pid) {
                let location = PyLocation::parse(&bp.spec.location);
                let (id, pid) = (w.breakpoint, w.pid);
                // Fails until the interpreter has run the module of the location.
                match self.arm_in(table, &bp, &location, pid) {
                    Ok(sites) => {
                        tracing::info!(id, pid, "armed in a new Python process");
                        bp.pids.insert(pid, sites);
                    }
                    Err(e) => {
                        if !self.pending.retry(w, now) {
                            bp.errors.push((pid, chain(&e)));
                        }
                    }
                }
            }
            self.breakpoints.insert(bp.spec.id, bp);
        }
    }
}
