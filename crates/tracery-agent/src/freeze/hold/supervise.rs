//! Keeping a hold keeper running. The held bytes wait in sinks the agent holds, and the
//! keeper journals its progress in a memfd the agent holds too, so when a keeper dies
//! (even by SIGKILL) the agent starts another with the same sinks and journal, and that
//! one goes on with the held bytes: unreleased ones stay held, a release in progress
//! resumes at its first unwritten byte.

use std::{
    process::ExitStatus,
    time::{Duration, Instant},
};

use tracery_common::hold::conf;

use super::{spawn_keeper, Holder};

/// Least time between two keeper starts: one that dies at once is not restarted in a
/// tight loop.
const RESPAWN_GAP: Duration = Duration::from_millis(200);
/// Most time a keeper whose control socket closed is given to exit.
const EXIT_WAIT: Duration = Duration::from_secs(2);

impl Holder {
    /// True when a keeper runs; starts another when the last one died.
    pub(super) fn keeper_alive(&mut self) -> bool {
        match self.keeper.child.try_wait() {
            Ok(Some(status)) => self.respawn(status),
            Ok(None) | Err(_) => true,
        }
    }

    /// The keeper's control socket closed: waits for it to exit, and starts another.
    pub(super) fn replace_keeper(&mut self) -> bool {
        let until = Instant::now() + EXIT_WAIT;
        loop {
            match self.keeper.child.try_wait() {
                Ok(Some(status)) => return self.respawn(status),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                _ => return false,
            }
        }
    }

    fn respawn(&mut self, status: ExitStatus) -> bool {
        // No process may pass for the dead keeper (its tgid could be reused).
        let _ = self.conf.set(conf::KEEPER_TGID, 0, 0);
        if let Some(wait) = RESPAWN_GAP.checked_sub(self.last_spawn.elapsed()) {
            std::thread::sleep(wait);
        }
        self.last_spawn = Instant::now();
        match spawn_keeper(&self.kit) {
            Ok(k) => {
                tracing::warn!(
                    %status,
                    pid = k.child.id(),
                    "the hold keeper died; a new one goes on with the held messages"
                );
                // Lines the dead keeper sent and nobody read yet (deadline releases).
                while let Ok(line) = self.keeper.replies.try_recv() {
                    self.stray.push(line);
                }
                self.keeper = k;
                true
            }
            Err(e) => {
                tracing::error!(
                    %status,
                    "the hold keeper died and a new one did not start: {}; held messages \
                     wait in the agent until one does",
                    tracery_model::error::chain(&e)
                );
                false
            }
        }
    }

    /// The running keeper's process id.
    pub fn keeper_pid(&self) -> u32 {
        self.keeper.child.id()
    }
}
