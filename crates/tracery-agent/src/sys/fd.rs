//! Descriptors: duplicates above a number, placed at fixed numbers in a child before
//! exec, and taken over by that child.

use std::{
    os::{
        fd::{FromRawFd, OwnedFd, RawFd},
        unix::process::CommandExt,
    },
    process::Command,
    sync::atomic::{AtomicU64, Ordering},
};

/// `dup2(from, to)`, for placing descriptors at fixed numbers in a child before exec.
fn dup2(from: RawFd, to: RawFd) -> std::io::Result<()> {
    // SAFETY: dup2 on descriptor numbers; no pointers.
    let r = unsafe { libc::dup2(from, to) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Moves `fd` to a descriptor number of at least `min`, close-on-exec.
pub fn dup_above(fd: RawFd, min: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: fcntl on a descriptor number; a non-negative result is a new fd.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `r` is a new descriptor this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `setsid()`: the calling process leaves its session and process group.
fn setsid() -> std::io::Result<()> {
    // SAFETY: no arguments; async-signal-safe (used between fork and exec).
    if unsafe { libc::setsid() } < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Makes `cmd`'s child place each source descriptor at its target number and start a
/// session of its own (a Ctrl-C for the parent's process group must not reach it).
///
/// Fails, before anything runs, unless every source is above every target: placing them
/// in order then never overwrites a source not yet placed.
pub fn place_fds_before_exec(cmd: &mut Command, moves: Vec<(RawFd, RawFd)>) -> std::io::Result<()> {
    let lowest_source = moves.iter().map(|m| m.0).min().unwrap_or(RawFd::MAX);
    if moves.iter().any(|m| m.1 >= lowest_source || m.1 < 0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "descriptor sources must lie above their targets",
        ));
    }
    // SAFETY: only async-signal-safe calls (dup2, setsid) run between fork and exec, and
    // `moves` was allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for &(src, dst) in &moves {
                dup2(src, dst)?;
            }
            setsid()
        });
    }
    Ok(())
}

/// Descriptor numbers below 256 already taken by [`take_inherited_fd`], one bit each
/// (the hold keeper inherits one socket per hold slot).
static INHERITED_TAKEN: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Takes ownership of descriptor `fd`, which the parent placed at this number before exec
/// (see [`place_fds_before_exec`]). `None` when `fd` is not open, not below 256, or was
/// taken already: each number is owned once.
pub fn take_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    let n = usize::try_from(fd).ok()?;
    let word = INHERITED_TAKEN.get(n / 64)?;
    let bit = 1u64 << (n % 64);
    if word.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
        return None;
    }
    // SAFETY: F_GETFD on a descriptor number; no pointers.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: `fd` is open, was inherited across exec for this process to own, and the
    // bit above makes this the only owner taken from it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An anonymous memory file (`memfd_create`, close-on-exec): state that outlives the
/// process that writes it, as long as another process holds a descriptor.
pub fn memfd(name: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string; flags only.
    let r = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `r` is a new descriptor this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}
