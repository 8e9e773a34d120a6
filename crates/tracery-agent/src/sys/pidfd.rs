//! Process handles (`pidfd_open`) and duplicates of another process's descriptors
//! (`pidfd_getfd`).

use std::os::fd::RawFd;

/// `pidfd_open(pid)`: a handle on the process that stays valid if its pid is reused.
pub fn pidfd_open(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: plain syscall with integer arguments; a non-negative result is a new fd.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `r` is a new descriptor this process owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(r as RawFd) })
}

/// `pidfd_getfd`: a duplicate of descriptor `fd` of the process behind `pidfd` (the same
/// open file: same socket, same status flags). Needs ptrace rights over the process.
pub fn pidfd_getfd(pidfd: &std::os::fd::OwnedFd, fd: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall with integer arguments; a non-negative result is a new fd.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `r` is a new descriptor this process owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(r as RawFd) })
}
