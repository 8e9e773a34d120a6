//! Which sockets the `sk_msg` program sees: the TCP sockets of watched cgroups.
//!
//! The sockops program, attached to a cgroup, adds connections as they are established.
//! Connections that already exist (a database pool opened at start-up, kept-alive HTTP
//! clients) are added here, through a duplicate of each process's socket descriptors.

use std::{
    fs::File,
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use aya::maps::{MapData, SockHash};
use tracery_common::hold::SockKey;

use crate::sys;

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

/// The cgroup directory `pid` is in, or why its messages cannot be held.
pub fn cgroup_dir(pid: u32) -> Result<PathBuf, String> {
    let rel = cgroup_of(pid).ok_or_else(|| format!("cannot read /proc/{pid}/cgroup"))?;
    if rel == "/" {
        let root = cgroup2_root().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
        // Watching the root cgroup would put every connection of the node under the
        // sk_msg program.
        return Err(format!(
            "process {pid} is in the root cgroup; run it in a cgroup of its own (a container, \
             a systemd service, or a directory under {})",
            root.display()
        ));
    }
    crate::discovery::cgroup2_dir(&rel).ok_or_else(|| {
        format!("no cgroup v2 mount shows cgroup {rel} of process {pid}; mount cgroup v2")
    })
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

/// Calls `f` with each TCP connection of `pid` and a duplicate of its descriptor, one at
/// a time, until `f` returns something.
pub fn find_connection<T>(pid: u32, mut f: impl FnMut(SockKey, OwnedFd) -> Option<T>) -> Option<T> {
    let pidfd = sys::pidfd_open(pid).ok()?;
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for e in dir.flatten() {
        let Ok(n) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let is_socket =
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        let Ok(fd) = sys::pidfd_getfd(&pidfd, n) else {
            continue;
        };
        if !sys::is_tcp_socket(fd.as_raw_fd()) {
            continue;
        }
        // Listeners have no peer: only connections get a key.
        let Some(key) = sys::sock_key(fd.as_raw_fd()) else {
            continue;
        };
        if let Some(found) = f(key, fd) {
            return Some(found);
        }
    }
    None
}

/// A duplicate of the socket of connection `conn` in process `pid`: descriptor `fd` when
/// it still is that connection, else found among the process's sockets.
pub fn sender_socket(pid: u32, fd: i32, conn: &SockKey) -> Option<OwnedFd> {
    let pidfd = sys::pidfd_open(pid).ok()?;
    if fd >= 0 {
        if let Ok(dup) = sys::pidfd_getfd(&pidfd, fd) {
            if sys::sock_key(dup.as_raw_fd()).is_some_and(|k| sys::same_conn(&k, conn)) {
                return Some(dup);
            }
        }
    }
    // The descriptor is unknown (sent outside a followed system call) or was reused.
    find_connection(pid, |k, dup| sys::same_conn(&k, conn).then_some(dup))
}

/// Every process in the cgroup directory `dir` (its `cgroup.procs`).
pub fn processes_in(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Opens a cgroup directory for attaching a program to it.
pub fn open_cgroup(dir: &Path) -> Result<File, String> {
    File::open(dir).map_err(|e| format!("cannot open cgroup {}: {e}", dir.display()))
}
