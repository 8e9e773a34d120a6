//! Quiet sites: a Node breakpoint whose rate is spent for this second is taken out of V8
//! until the second is over. A V8 breakpoint costs its line a debug break and a condition
//! evaluation on every pass, even when the condition answers at once that the rate is
//! spent; out of V8, the line runs at full speed. The hit that spends the rate says until
//! when (`quietUntil`, from `capture.js`).

use std::time::SystemTime;

use tracery_model::error::chain;

use super::NodeRuntime;
use crate::node::breakpoints;

impl NodeRuntime {
    /// Takes site `key` out of V8 until `until`, when its rate allows a hit again.
    pub(super) fn quiet_until(&mut self, key: u64, until: SystemTime) {
        let Some(site) = self.sites.get(&key) else {
            return;
        };
        let (pid, id) = (site.pid, site.breakpoint);
        let v8 = self
            .breakpoints
            .get(&id)
            .and_then(|b| b.pids.get(&pid))
            .and_then(|v| v.iter().find(|(k, _)| *k == key))
            .map(|(_, v8)| v8.clone());
        let (Some(v8), Some(p)) = (v8, self.processes.get(&pid)) else {
            return;
        };
        match self.rt.block_on(breakpoints::remove(&p.session, &v8)) {
            Ok(()) => {
                self.quiet.insert(key, until);
            }
            // Left set: its condition still answers at once.
            Err(e) => tracing::debug!(pid, id, "cannot quiet the V8 breakpoint: {}", chain(&e)),
        }
    }

    /// Sets again the quiet sites whose second is over.
    pub(super) fn wake_quiet(&mut self) {
        let now = SystemTime::now();
        let due: Vec<u64> = self
            .quiet
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(key, _)| *key)
            .collect();
        for key in due {
            self.quiet.remove(&key);
            let Some(site) = self.sites.get(&key) else {
                continue;
            };
            let (pid, id) = (site.pid, site.breakpoint);
            let Some(p) = self.processes.get(&pid) else {
                continue;
            };
            let Some(bp) = self.breakpoints.get_mut(&id).filter(|b| b.ended.is_none()) else {
                continue;
            };
            let Some((_, v8)) = bp
                .pids
                .get_mut(&pid)
                .and_then(|v| v.iter_mut().find(|(k, _)| *k == key))
            else {
                continue;
            };
            match self.rt.block_on(breakpoints::set_again(&p.session, v8)) {
                Ok(new_id) => v8.id = new_id,
                Err(e) => bp.errors.push((
                    pid,
                    format!(
                        "cannot set the V8 breakpoint again after its rate was spent: {}",
                        chain(&e)
                    ),
                )),
            }
        }
    }
}
