//! Exec events from the `sched_process_exec` tracepoint: which processes just started
//! (or restarted) with which executable, so breakpoints can be armed on them.

use std::{os::fd::AsRawFd, os::unix::ffi::OsStrExt, path::PathBuf, time::Duration};

use aya::maps::{MapData, RingBuf};
use tracery_common::exec::ExecEvent;

use crate::{error::AgentError, sys};

/// A process that has just executed a new image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    pub pid: u32,
    /// The executable path as the kernel resolved it (in the process's mount namespace).
    pub path: PathBuf,
}

/// Reads exec events; create it with [`crate::ProbeTable::watch_execs`].
pub struct ExecWatcher {
    ring: RingBuf<MapData>,
}

impl ExecWatcher {
    pub(crate) fn new(ring: RingBuf<MapData>) -> Self {
        Self { ring }
    }

    /// Waits up to `timeout` for exec events and returns those available.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Exec>, AgentError> {
        let mut out = self.drain();
        if out.is_empty() {
            sys::wait_readable(self.ring.as_raw_fd(), timeout).map_err(|source| {
                AgentError::Io {
                    action: "waiting for exec events",
                    source,
                }
            })?;
            out = self.drain();
        }
        Ok(out)
    }

    fn drain(&mut self) -> Vec<Exec> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if let Some(ev) = sys::read_record::<ExecEvent>(&item) {
                out.push(Exec {
                    pid: ev.pid,
                    path: PathBuf::from(std::ffi::OsStr::from_bytes(ev.path())),
                });
            }
        }
        out
    }
}
