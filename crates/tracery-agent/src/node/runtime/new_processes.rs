//! Node processes that start after a breakpoint that selects them was set (a service or
//! executable target): armed once Node in them is ready.
//!
//! At exec, Node has no SIGUSR1 handler yet (the signal would kill it: the agent never
//! sends it then), and the script of the location is not loaded yet. So a new process
//! waits here and is tried again every [`RETRY_EVERY`] until it can be armed, for at most
//! [`READY_WITHIN`]; then the last reason is kept in the breakpoint's errors.

use std::time::{Duration, Instant};

use tracery_model::error::chain;

use super::{breakpoints, NodeRuntime};
use crate::manager::Target;

/// How long a new Node process has to install its SIGUSR1 handler and load the
/// location's script. Node does both within a second of exec; a loaded machine is slower.
pub(super) const READY_WITHIN: Duration = Duration::from_secs(15);

/// How often a new process that is not ready yet is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// A breakpoint waiting to be armed in a process that just started.
#[derive(Debug)]
pub(super) struct Pending {
    breakpoint: u64,
    pid: u32,
    until: Instant,
    next_try: Instant,
}

impl NodeRuntime {
    /// A process that just executed a new image: the Node breakpoints whose target
    /// `selects` it will be armed in it once it is ready (see [`NodeRuntime::tick`]).
    pub fn on_exec(&mut self, pid: u32, selects: impl Fn(&Target) -> bool) {
        let now = Instant::now();
        for (id, bp) in &self.breakpoints {
            let waiting = self
                .pending
                .iter()
                .any(|p| p.breakpoint == *id && p.pid == pid);
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
    pub(super) fn arm_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut still = Vec::new();
        for mut p in std::mem::take(&mut self.pending) {
            let alive = std::path::Path::new(&format!("/proc/{}", p.pid)).exists();
            let Some(bp) = self.breakpoints.get(&p.breakpoint) else {
                continue;
            };
            if !alive || bp.ended.is_some() || bp.pids.contains_key(&p.pid) {
                continue;
            }
            if now < p.next_try {
                still.push(p);
                continue;
            }
            // `arm_in` opens the inspector only once Node handles SIGUSR1 (before, the
            // signal's default action would end the process), and finds the location
            // only once its script is loaded: until then it fails, and is tried again.
            let (spec, when) = (bp.spec.clone(), bp.when.clone());
            let result = breakpoints::parse_location(&spec.location).map(|(file, line)| {
                let file = file.to_owned();
                self.arm_in(&spec, when.as_ref(), p.pid, &file, line)
            });
            match result {
                Some(Ok(v8)) => {
                    tracing::info!(
                        id = p.breakpoint,
                        pid = p.pid,
                        "armed in a new Node process"
                    );
                    if let Some(bp) = self.breakpoints.get_mut(&p.breakpoint) {
                        bp.pids.insert(p.pid, v8);
                    }
                }
                // Not ready yet (no handler, script not loaded): again, until the deadline.
                Some(Err(_)) | None if now < p.until => {
                    p.next_try = now + RETRY_EVERY;
                    still.push(p);
                }
                Some(Err(e)) => {
                    if let Some(bp) = self.breakpoints.get_mut(&p.breakpoint) {
                        bp.errors.push((p.pid, chain(&e)));
                    }
                }
                // Not a location of a script: `add` refused it already.
                None => {}
            }
        }
        // Processes that became pending while these were tried keep their place.
        still.append(&mut self.pending);
        self.pending = still;
    }
}
