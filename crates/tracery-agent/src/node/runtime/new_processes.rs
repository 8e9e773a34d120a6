//! Node processes that start after a breakpoint that selects them was set (a service or
//! executable target): armed once Node in them is ready (see [`crate::late_arming`]).
//!
//! At exec, Node has no SIGUSR1 handler yet (the signal would kill it: the agent never
//! sends it then), and the script of the location is not loaded yet.

use std::time::Instant;

use tracery_model::error::chain;

use super::{breakpoints, NodeRuntime};
use crate::{manager::Target, process::pid_exists};

impl NodeRuntime {
    /// A process that just executed a new image: the Node breakpoints whose target
    /// `selects` it will be armed in it once it is ready (see [`NodeRuntime::tick`]).
    pub fn on_exec(&mut self, pid: u32, selects: impl Fn(&Target) -> bool) {
        for (id, bp) in &self.breakpoints {
            if bp.ended.is_none() && !bp.pids.contains_key(&pid) && selects(&bp.spec.target) {
                self.pending.add(*id, pid);
            }
        }
    }

    /// Tries the waiting processes whose turn it is.
    pub(super) fn arm_pending(&mut self) {
        let now = Instant::now();
        for w in self.pending.take_due(now) {
            let Some(bp) = self.breakpoints.get(&w.breakpoint) else {
                continue;
            };
            if !pid_exists(w.pid) || bp.ended.is_some() || bp.pids.contains_key(&w.pid) {
                continue;
            }
            // `arm_in` opens the inspector only once Node handles SIGUSR1 (before, the
            // signal's default action would end the process), and finds the location
            // only once its script is loaded: until then it fails, and is tried again.
            let (spec, when) = (bp.spec.clone(), bp.when.clone());
            let Some((file, line)) = breakpoints::parse_location(&spec.location) else {
                // Not a location of a script: `add` refused it already.
                continue;
            };
            let file = file.to_owned();
            let (id, pid) = (w.breakpoint, w.pid);
            match self.arm_in(&spec, when.as_ref(), pid, &file, line) {
                Ok(v8) => {
                    tracing::info!(id, pid, "armed in a new Node process");
                    if let Some(bp) = self.breakpoints.get_mut(&id) {
                        bp.pids.insert(pid, v8);
                    }
                }
                Err(e) => {
                    // Not ready yet (no handler, script not loaded): again, until the deadline.
                    if !self.pending.retry(w, now) {
                        if let Some(bp) = self.breakpoints.get_mut(&id) {
                            bp.errors.push((pid, chain(&e)));
                        }
                    }
                }
            }
        }
    }
}
