//! Every raw syscall of the capture emulator, each with its safety argument.
//!
//! Test harness only: it traces the test's own child process. The product never writes
//! target memory.

use std::io;

/// Result of `waitpid`: the thread and its raw status.
pub struct WaitStatus {
    pub tid: i32,
    pub status: i32,
}

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `PTRACE_SEIZE` with `PTRACE_O_TRACECLONE`, so threads created later are traced too.
pub fn seize(tid: i32) -> io::Result<()> {
    // SAFETY: PTRACE_SEIZE takes no pointers; addr is unused (0) and data is an option mask.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            tid,
            0usize,
            libc::PTRACE_O_TRACECLONE as usize,
        )
    };
    check(r).map(drop)
}

/// `PTRACE_INTERRUPT`: stop a seized thread.
pub fn interrupt(tid: i32) -> io::Result<()> {
    // SAFETY: no pointers are passed.
    let r = unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0usize, 0usize) };
    check(r).map(drop)
}

/// `PTRACE_CONT`, delivering `signal` (0 for none).
pub fn cont(tid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: no pointers are passed; data is a signal number.
    let r = unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0usize, signal as usize) };
    check(r).map(drop)
}

/// `PTRACE_SINGLESTEP`: runs one instruction of a stopped thread.
pub fn single_step(tid: i32) -> io::Result<()> {
    // SAFETY: no pointers are passed.
    let r = unsafe { libc::ptrace(libc::PTRACE_SINGLESTEP, tid, 0usize, 0usize) };
    check(r).map(drop)
}

/// `PTRACE_DETACH`.
pub fn detach(tid: i32) -> io::Result<()> {
    // SAFETY: no pointers are passed.
    let r = unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, 0usize) };
    check(r).map(drop)
}

/// `PTRACE_GETREGS`.
pub fn get_regs(tid: i32) -> io::Result<libc::user_regs_struct> {
    // SAFETY: user_regs_struct is plain integers; all-zero is a valid value.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes exactly one user_regs_struct to the pointer, which is valid
    // and writable for that size.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGS,
            tid,
            0usize,
            &mut regs as *mut libc::user_regs_struct,
        )
    };
    check(r).map(|_| regs)
}

/// `PTRACE_SETREGS`.
pub fn set_regs(tid: i32, regs: &libc::user_regs_struct) -> io::Result<()> {
    // SAFETY: the kernel reads one user_regs_struct from a valid pointer.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGS,
            tid,
            0usize,
            regs as *const libc::user_regs_struct,
        )
    };
    check(r).map(drop)
}

/// `PTRACE_PEEKTEXT`: one word of the tracee's memory.
pub fn peek(tid: i32, addr: u64) -> io::Result<u64> {
    // PEEKTEXT returns the word; -1 is ambiguous, so errno is cleared and checked.
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: no pointers of ours are passed; addr is in the tracee.
    let r = unsafe { libc::ptrace(libc::PTRACE_PEEKTEXT, tid, addr as usize, 0usize) };
    // SAFETY: as above.
    let errno = unsafe { *libc::__errno_location() };
    if r == -1 && errno != 0 {
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok(r as u64)
}

/// `PTRACE_POKETEXT`: write one word of the tracee's code (the test's breakpoint).
pub fn poke(tid: i32, addr: u64, word: u64) -> io::Result<()> {
    // SAFETY: no pointers of ours are passed; the word is passed by value.
    let r = unsafe { libc::ptrace(libc::PTRACE_POKETEXT, tid, addr as usize, word as usize) };
    check(r).map(drop)
}

/// `waitpid(tid, __WALL | WNOHANG)`: a pending stop or exit of one traced thread. Never
/// `-1`: that would also reap other tests' children.
pub fn wait_tid(tid: i32) -> io::Result<Option<WaitStatus>> {
    let mut status = 0;
    // SAFETY: `status` is a valid, writable int.
    let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
    match r {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        tid => Ok(Some(WaitStatus { tid, status })),
    }
}

/// `PTRACE_GETEVENTMSG`: after a clone event, the new thread's id.
pub fn event_msg(tid: i32) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: the kernel writes one unsigned long to a valid, writable pointer.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid,
            0usize,
            &mut msg as *mut libc::c_ulong,
        )
    };
    check(r).map(|_| msg as u64)
}

/// `process_vm_readv`: `len` bytes at `addr` of `pid`, or `None` unless all were read
/// (like `bpf_probe_read_user`, which fails whole).
pub fn read_memory(pid: i32, addr: u64, len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` describes `buf`, valid and writable for `len` bytes; the remote iovec
    // is only interpreted by the kernel in the target's address space.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    (n == len as isize).then_some(buf)
}
