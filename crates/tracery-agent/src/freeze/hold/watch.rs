//! Which sockets the `sk_msg` program sees: the TCP sockets of watched cgroups.
//!
//! The sockops program, attached to a cgroup, adds connections as they are established.
//! Connections that already exist (a database pool opened at start-up, kept-alive HTTP
//! clients) are added here, through a duplicate of each process's socket descriptors.

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use aya::maps::{MapData, SockHash};
use tracery_common::hold::SockKey;

use crate::{error::HoldError, freeze::connections::find_connection};

/// Where the root of the cgroup v2 hierarchy is mounted (the unified hierarchy of a
/// hybrid host, or the root of a pure cgroup v2 host).
pub fn cgroup2_root() -> Option<PathBuf> {
    crate::discovery::cgroup2_dir("/")
}

/// The cgroup v2 path of `pid` (the `0::` line of `/proc/PID/cgroup`), e.g. `/svc/orders`.
pub fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// The cgroup directory to watch for `pid`'s messages (its pod's, in a Kubernetes pod;
/// else its own), or why its messages cannot be held.
pub fn cgroup_dir(pid: u32) -> Result<PathBuf, HoldError> {
    let rel = cgroup_of(pid).ok_or(HoldError::NoCgroupFile { pid })?;
    // A pod's containers share its connections' fate: watch the pod, not one container.
    let rel = crate::pods::hold_cgroup(&rel);
    if rel == "/" {
        let root = cgroup2_root().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
        // Watching the root cgroup would put every connection of the node under the
        // sk_msg program.
        return Err(HoldError::RootCgroup { pid, root });
    }
    crate::discovery::cgroup2_dir(&rel).ok_or(HoldError::NoCgroupMount { pid, cgroup: rel })
}

/// Adds the TCP sockets `pid` has open now to `socks`. Returns how many joined.
pub fn add_open_sockets(socks: &mut SockHash<MapData, SockKey>, pid: u32) -> usize {
    let mut added = 0;
    find_connection(pid, |key, fd| {
        if socks.insert(key, fd.as_raw_fd(), 0).is_ok() {
            added += 1;
        }
        None::<()>
    });
    added
}

/// The TCP connections `pid` has open now.
pub fn open_connections(pid: u32) -> Vec<SockKey> {
    let mut out = Vec::new();
    find_connection(pid, |key, _| {
        out.push(key);
        None::<()>
    });
    out
}

/// Every process in the cgroup directory `dir` (its `cgroup.procs`).
pub fn processes_in(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Opens a cgroup directory for attaching a program to it.
pub fn open_cgroup(dir: &Path) -> Result<File, HoldError> {
    File::open(dir).map_err(|source| HoldError::OpenCgroup {
        dir: dir.to_path_buf(),
        source,
    })
}
