//! Waiting on descriptors (`poll`).

use std::{os::fd::RawFd, time::Duration};

/// Waits until `fd` is readable or `timeout` passes. Returns true when readable.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // Rounded up: truncating would spin through zero-timeout polls in the last
    // millisecond before a deadline.
    let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
    // SAFETY: `pfd` is one valid pollfd and the count passed is 1.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    match r {
        r if r > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Waits until `fd` can take more bytes or `timeout` passes. Returns true when writable.
pub fn wait_writable(fd: RawFd, timeout: Duration) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `pfd` is one valid pollfd and the count passed is 1.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    match r {
        r if r > 0 => Ok(pfd.revents & (libc::POLLERR | libc::POLLHUP) == 0),
        0 => Ok(false),
        _ => Err(std::io::Error::last_os_error()),
    }
}
