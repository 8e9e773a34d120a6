//! A process's TCP connections, found through duplicates of its socket descriptors
//! (`pidfd_getfd`). The holder uses them to watch connections that were open before a
//! hold; the keeper, to find the socket a held message is to be sent on.

use std::os::fd::{AsRawFd, OwnedFd};

use tracery_common::hold::SockKey;

use crate::sys;

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
