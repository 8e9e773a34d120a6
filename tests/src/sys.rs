//! The raw system calls of the tests crate, each with why it is sound.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    process::Command,
};

/// Makes the child of `cmd`, between fork and exec: join the cgroup whose `cgroup.procs`
/// is open as `procs`, enter the network namespace open as `netns`, and take a UTS
/// namespace of its own named `hostname`. Spawning fails with the errno of the first step
/// that fails.
pub fn enter_node_on_exec(cmd: &mut Command, procs: OwnedFd, netns: OwnedFd, hostname: CString) {
    let enter = move || -> io::Result<()> {
        let check = |rc: libc::c_long| {
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        // SAFETY: `procs` is an open descriptor owned by this closure, and the buffer is a
        // one-byte static. "0" moves the writing process, i.e. this child.
        check(unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) } as _)?;
        // SAFETY: `netns` is an open descriptor of a network namespace file owned by this
        // closure; setns only reads it.
        check(unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) }.into())?;
        // SAFETY: unshare takes no pointers; the new UTS namespace is this child's alone.
        check(unsafe { libc::unshare(libc::CLONE_NEWUTS) }.into())?;
        let name = hostname.as_bytes();
        // SAFETY: `name` points at `name.len()` readable bytes that outlive the call.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }.into())
    };
    // SAFETY: the hook runs in the forked child, where only async-signal-safe calls are
    // allowed: it makes only the system calls above, on descriptors and a string prepared
    // before the fork, and allocates nothing (an OS error is stored inline).
    unsafe {
        cmd.pre_exec(enter);
    }
}

/// Sends SIGKILL to `pid`; a process that is already gone is not an error.
pub fn kill9(pid: u32) -> io::Result<()> {
    // 0 and negative pids would signal whole process groups.
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill takes no pointers; a positive pid names one process.
    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
        return Ok(());
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        e => Err(e),
    }
}

/// True when this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Clock ticks per second, the unit of the times in `/proc/PID/stat`.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(ticks > 0, "sysconf(_SC_CLK_TCK) failed");
    ticks as u64
}
