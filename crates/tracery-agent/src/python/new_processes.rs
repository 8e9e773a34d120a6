//! Python processes that start after a breakpoint that selects them was set (a service or
//! executable target): armed once the location's code exists in them.
//!
//! At exec the interpreter has not run the service's modules yet, so the location has no
//! code object to watch. A new process waits here and is tried again every
//! [`RETRY_EVERY`] until it can be armed, for at most [`READY_WITHIN`]; then the last
//! reason is kept in the breakpoint's errors (as for Node processes).

use std::time::{Duration, Instant};

use tracery_model::error::chain;

use super::{locate::PyLocation, PythonRuntime};
use crate::{capture::probes::ProbeTable, manager::Target};

/// How long a new Python process has to import the location's module. A service does
/// that within a second of exec; a loaded machine is slower.
pub(super) const READY_WITHIN: Duration = Duration::from_secs(15);

/// How often a new process that is not ready yet is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// A breakpoint waiting to be armed in a process that just started.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(super) breakpoint: u64,
    pid: u32,
    until: Instant,
    next_try: Instant,
}

impl PythonRuntime {
    /// A process that just executed a new image: the Python breakpoints whose target
    /// `selects` it are armed in it once its code is loaded (see [`PythonRuntime::tick`]).
    pub fn on_exec(&mut self, pid: u32, selects: impl Fn(&Target) -> bool) {
        // A new image, perhaps of a reused PID: nothing known of the old one applies.
        self.forget_process(pid);
        if !super::is_python_process(pid) {
            return;
        }
        let now = Instant::now();
        for (id, bp) in &self.breakpoints {
            let waiting = self.is_pending(*id, pid);
            if bp.ended.is_some()
                || bp.pids.contains_key(&pid)
                || waiting
                || !selects(&bp.spec.target)
            {
                continue;
            }
            self.pending.push(Pending {
                breakpoint: *id,
                pid,
                until: now + READY_WITHIN,
                next_try: now,
            });
        }
    }

    /// True while breakpoint `id` waits for new process `pid` to be ready.
    pub fn is_pending(&self, id: u64, pid: u32) -> bool {
        self.pending
            .iter()
            .any(|p| p.breakpoint == id && p.pid == pid)
    }

    /// Tries the waiting processes whose turn it is.
    pub(super) fn arm_pending(&mut self, table: &mut ProbeTable) {
        if self.pending.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut still = Vec::new();
        for mut p in std::mem::take(&mut self.pending) {
            let alive = std::path::Path::new(&format!("/proc/{}", p.pid)).exists();
            let Some(bp) = self.breakpoints.remove(&p.breakpoint) else {
                continue;
            };
            let mut bp = bp;
            if alive && bp.ended.is_none() && !bp.pids.contains_key(&p.pid) {
                if now < p.next_try {
                    still.push(p);
                } else {
                    let location = PyLocation::parse(&bp.spec.location);
                    // Fails until the interpreter has run the module of the location.
                    match self.arm_in(table, &bp, &location, p.pid) {
                        Ok(sites) => {
                            tracing::info!(
                                id = p.breakpoint,
                                pid = p.pid,
                                "armed in a new Python process"
                            );
                            bp.pids.insert(p.pid, sites);
                        }
                        Err(_) if now < p.until => {
                            p.next_try = now + RETRY_EVERY;
                            still.push(p);
                        }
                        Err(e) => bp.errors.push((p.pid, chain(&e))),
                    }
                }
            }
            self.breakpoints.insert(bp.spec.id, bp);
        }
        // Processes that became pending while these were tried keep their place.
        still.append(&mut self.pending);
        self.pending = still;
    }
}
