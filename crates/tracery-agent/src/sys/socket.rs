//! Sockets: their cookie, protocol and addresses, and non-blocking sends.

use std::os::fd::RawFd;

/// The kernel's cookie of a socket (`SO_COOKIE`): the key the eBPF side uses for it.
pub fn socket_cookie(fd: RawFd) -> std::io::Result<u64> {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for the kernel to write; `len` is their size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(cookie)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `send(fd, buf, MSG_NOSIGNAL | MSG_DONTWAIT)`: bytes written, or the error
/// (`WouldBlock` when the socket's buffer is full).
pub fn send_nowait(fd: RawFd, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let r = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `recv(fd, buf, MSG_DONTWAIT | flags)`: bytes read (0 at end of stream), or the error
/// (`WouldBlock` when nothing is queued).
fn recv_nowait_flags(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let r = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | flags,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Copies the bytes queued at the head of `fd` into `buf` without taking them
/// (`MSG_PEEK`): the queue stays the store until they are known to be sent.
pub fn peek_nowait(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    recv_nowait_flags(fd, buf, libc::MSG_PEEK)
}

/// Takes up to `buf.len()` queued bytes from `fd` without waiting.
pub fn recv_nowait(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    recv_nowait_flags(fd, buf, 0)
}

/// True for a TCP socket (`SO_PROTOCOL`).
pub fn is_tcp_socket(fd: RawFd) -> bool {
    let mut proto: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `proto` and `len` are valid for the kernel to write; `len` is their size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PROTOCOL,
            (&mut proto as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0 && proto == libc::IPPROTO_TCP
}

/// The local or peer address of a socket, as raw `sockaddr_storage`.
fn sock_name(fd: RawFd, peer: bool) -> Option<libc::sockaddr_storage> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: `ss` and `len` are valid for the kernel to write; `len` is their size.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    (r == 0).then_some(ss)
}

/// A connected TCP socket's 4-tuple, laid out as the eBPF programs see it.
pub fn sock_key(fd: RawFd) -> Option<tracery_common::hold::SockKey> {
    let (local, peer) = (sock_name(fd, false)?, sock_name(fd, true)?);
    let mut key = tracery_common::hold::SockKey::default();
    match i32::from(local.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says these are sockaddr_in.
            let (l, p) = unsafe {
                (
                    *(&local as *const _ as *const libc::sockaddr_in),
                    *(&peer as *const _ as *const libc::sockaddr_in),
                )
            };
            key.family = libc::AF_INET as u32;
            key.local_port = u32::from(u16::from_be(l.sin_port));
            key.remote_port = u32::from(p.sin_port) << 16;
            key.local_ip[0] = l.sin_addr.s_addr;
            key.remote_ip[0] = p.sin_addr.s_addr;
        }
        libc::AF_INET6 => {
            // SAFETY: the family says these are sockaddr_in6.
            let (l, p) = unsafe {
                (
                    *(&local as *const _ as *const libc::sockaddr_in6),
                    *(&peer as *const _ as *const libc::sockaddr_in6),
                )
            };
            let words = |b: [u8; 16]| {
                std::array::from_fn(|i| {
                    u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
                })
            };
            key.family = libc::AF_INET6 as u32;
            key.local_port = u32::from(u16::from_be(l.sin6_port));
            key.remote_port = u32::from(p.sin6_port) << 16;
            key.local_ip = words(l.sin6_addr.s6_addr);
            key.remote_ip = words(p.sin6_addr.s6_addr);
        }
        _ => return None,
    }
    Some(key)
}

/// True when two keys name the same connection, whichever way the kernel presented the
/// remote port (shifted or not).
pub fn same_conn(a: &tracery_common::hold::SockKey, b: &tracery_common::hold::SockKey) -> bool {
    let port = |raw: u32| if raw > 0xffff { raw >> 16 } else { raw };
    a.family == b.family
        && a.local_port == b.local_port
        && port(a.remote_port) == port(b.remote_port)
        && a.local_ip == b.local_ip
        && a.remote_ip == b.remote_ip
}
