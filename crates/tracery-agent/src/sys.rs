//! Every raw syscall and `unsafe` block of the agent, each with its safety argument.

use std::{os::fd::RawFd, time::Duration};

/// Raises RLIMIT_MEMLOCK so map creation works on kernels that still charge it (< 5.11).
pub fn raise_memlock_limit() -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `lim` is a valid rlimit struct that outlives the call.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Returns freed heap memory to the kernel (glibc `malloc_trim`): free blocks at the top of
/// each arena and whole free pages inside it. A no-op on other C libraries.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

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

/// Nanoseconds on `clock`.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC now, the clock `bpf_ktime_get_ns` uses.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME now.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Reads a plain record type from the start of a ring-buffer record.
pub fn read_record<T: aya::Pod>(record: &[u8]) -> Option<T> {
    if record.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: the slice holds at least size_of::<T>() bytes; `Pod` types are repr(C) with
    // only integer fields, so every bit pattern is valid; the read is unaligned-safe.
    Some(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<T>()) })
}

/// CPU time (user + system) this process has used so far.
pub fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the valid, writable pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: zero-initialised and, on success, filled in by getrusage.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ---- ptrace, waitpid, process_vm_readv, tgkill: the suspension of one thread ----

/// Result of a raw call that returns -1 and sets errno on failure.
fn check(r: libc::c_long) -> std::io::Result<libc::c_long> {
    if r == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `ptrace(request, tid, addr, data)` for requests whose `addr` and `data` are plain words.
fn ptrace_words(
    request: libc::c_uint,
    tid: u32,
    addr: usize,
    data: usize,
) -> std::io::Result<libc::c_long> {
    // SAFETY: every request routed here (SEIZE, INTERRUPT, CONT, LISTEN, DETACH) reads
    // `addr` and `data` as integers, never as pointers into this process.
    let r = unsafe {
        libc::ptrace(
            request,
            tid as libc::pid_t,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    check(r)
}

/// `PTRACE_SEIZE`: the thread keeps running, and it is not killed when the tracer exits
/// (never `PTRACE_O_EXITKILL`). With `follow_clones`, threads it creates are seized too
/// (`PTRACE_O_TRACECLONE`).
pub fn ptrace_seize(tid: u32, follow_clones: bool) -> std::io::Result<()> {
    let options = if follow_clones {
        libc::PTRACE_O_TRACECLONE
    } else {
        0
    };
    ptrace_words(libc::PTRACE_SEIZE, tid, 0, options as usize).map(drop)
}

/// `PTRACE_GETEVENTMSG`: for a `PTRACE_EVENT_CLONE` stop, the new thread's id.
pub fn ptrace_geteventmsg(tid: u32) -> std::io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: the kernel writes one unsigned long into the valid pointer it is given.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid as libc::pid_t,
            std::ptr::null_mut::<libc::c_void>(),
            &mut msg as *mut libc::c_ulong,
        )
    };
    check(r)?;
    Ok(msg)
}

/// `PTRACE_INTERRUPT`: makes a seized thread enter a ptrace-stop.
pub fn ptrace_interrupt(tid: u32) -> std::io::Result<()> {
    ptrace_words(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

/// `PTRACE_CONT`, delivering `signal` (0 suppresses the pending one).
pub fn ptrace_cont(tid: u32, signal: i32) -> std::io::Result<()> {
    ptrace_words(libc::PTRACE_CONT, tid, 0, signal as usize).map(drop)
}

/// `PTRACE_LISTEN`: leaves a group-stopped thread stopped but lets it wake on SIGCONT.
pub fn ptrace_listen(tid: u32) -> std::io::Result<()> {
    ptrace_words(libc::PTRACE_LISTEN, tid, 0, 0).map(drop)
}

/// `PTRACE_DETACH` from a ptrace-stopped thread, delivering `signal`.
pub fn ptrace_detach(tid: u32, signal: i32) -> std::io::Result<()> {
    ptrace_words(libc::PTRACE_DETACH, tid, 0, signal as usize).map(drop)
}

/// `PTRACE_GETREGS` of a ptrace-stopped thread.
pub fn ptrace_getregs(tid: u32) -> std::io::Result<libc::user_regs_struct> {
    let mut regs = std::mem::MaybeUninit::<libc::user_regs_struct>::zeroed();
    // SAFETY: the kernel writes one user_regs_struct into the valid pointer it is given.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGS,
            tid as libc::pid_t,
            std::ptr::null_mut::<libc::c_void>(),
            regs.as_mut_ptr(),
        )
    };
    check(r)?;
    // SAFETY: zero-initialised (all-integer struct) and filled by the kernel on success.
    Ok(unsafe { regs.assume_init() })
}

/// `PTRACE_GETSIGINFO` of a thread in signal-delivery-stop: `(si_signo, si_code)`.
pub fn ptrace_getsiginfo(tid: u32) -> std::io::Result<(i32, i32)> {
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: the kernel writes one siginfo_t into the valid pointer it is given.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGINFO,
            tid as libc::pid_t,
            std::ptr::null_mut::<libc::c_void>(),
            info.as_mut_ptr(),
        )
    };
    check(r)?;
    // SAFETY: zero-initialised and filled by the kernel on success.
    let info = unsafe { info.assume_init() };
    Ok((info.si_signo, info.si_code))
}

/// One `waitpid` report: the thread and its raw status.
#[derive(Clone, Copy, Debug)]
pub struct WaitReport {
    pub tid: u32,
    pub status: i32,
}

/// `waitpid(pid, __WALL | __WNOTHREAD | WNOHANG)`; `pid` -1 waits for any tracee of the
/// calling thread. `__WNOTHREAD` keeps it from reaping children other threads of the agent
/// spawned. `None` when nothing changed (or there is nothing to wait for).
pub fn waitpid_nohang(pid: i32) -> std::io::Result<Option<WaitReport>> {
    wait_flags(pid, libc::__WALL | libc::__WNOTHREAD | libc::WNOHANG)
}

fn wait_flags(pid: i32, flags: i32) -> std::io::Result<Option<WaitReport>> {
    let mut status = 0;
    // SAFETY: `status` is a valid int for the kernel to fill.
    let r = unsafe { libc::waitpid(pid, &mut status, flags) };
    match r {
        0 => Ok(None),
        -1 => {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ECHILD) {
                Ok(None)
            } else {
                Err(e)
            }
        }
        tid => Ok(Some(WaitReport {
            tid: tid as u32,
            status,
        })),
    }
}

/// Reads `buf.len()` bytes at `addr` of process `pid` (`process_vm_readv`). Returns the
/// bytes read, fewer when the range runs into unmapped memory. Never writes the target.
pub fn process_vm_read(pid: u32, addr: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` covers exactly `buf`, which is writable and outlives the call; the
    // remote iovec is only an address in the other process, checked by the kernel.
    let r = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Sends `signal` to thread `tid` of process `pid` (`tgkill`).
pub fn tgkill(pid: u32, tid: u32, signal: i32) -> std::io::Result<()> {
    // SAFETY: a plain syscall with integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            pid as libc::c_long,
            tid as libc::c_long,
            signal as libc::c_long,
        )
    };
    check(r).map(drop)
}

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

/// `dup2(from, to)`, for placing descriptors at fixed numbers in a child before exec.
pub fn dup2(from: RawFd, to: RawFd) -> std::io::Result<()> {
    // SAFETY: dup2 on descriptor numbers; no pointers.
    let r = unsafe { libc::dup2(from, to) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
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

/// Moves `fd` to a descriptor number of at least `min`, close-on-exec.
pub fn dup_above(fd: RawFd, min: RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: fcntl on a descriptor number; a non-negative result is a new fd.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `r` is a new descriptor this process owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(r) })
}

/// `setsid()`: the calling process leaves its session and process group.
pub fn setsid() -> std::io::Result<()> {
    // SAFETY: no arguments; async-signal-safe (used between fork and exec).
    if unsafe { libc::setsid() } < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
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

/// Waits up to `timeout` until any of `fds` is readable; returns which are.
pub fn readable_among(fds: &[RawFd], timeout: Duration) -> std::io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Ok(vec![false; fds.len()])
        } else {
            Err(e)
        };
    }
    Ok(pfds.iter().map(|p| p.revents & libc::POLLIN != 0).collect())
}
