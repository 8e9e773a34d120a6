//! ptrace, waitpid and tgkill: the suspension of one thread.

use super::check;

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

/// One `waitpid` report: the thread and what happened to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitReport {
    pub tid: u32,
    pub status: WaitStatus,
}

/// A `waitpid` status, decoded once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// The thread exited, or a signal killed it.
    Gone,
    /// A ptrace-stop. `signal` is the stop signal (`WSTOPSIG`); `event` says which stop.
    Stopped { signal: i32, event: PtraceEvent },
    /// Anything else (a continued report): nothing to do.
    Other,
}

/// The `PTRACE_EVENT_*` of a ptrace-stop (bits 16..24 of the status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtraceEvent {
    /// No event: a signal-delivery-stop, the signal about to be delivered.
    None,
    /// `PTRACE_EVENT_CLONE`: the thread created one (`ptrace_geteventmsg` says which).
    Clone,
    /// `PTRACE_EVENT_STOP`: an interrupt stop or a group-stop.
    Stop,
    /// Another event, which the options the agent sets do not ask for.
    Other(i32),
}

impl WaitStatus {
    /// Decodes a raw `waitpid` status.
    pub fn from_raw(status: i32) -> Self {
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Self::Gone;
        }
        if !libc::WIFSTOPPED(status) {
            return Self::Other;
        }
        let event = match (status >> 16) & 0xff {
            0 => PtraceEvent::None,
            libc::PTRACE_EVENT_CLONE => PtraceEvent::Clone,
            libc::PTRACE_EVENT_STOP => PtraceEvent::Stop,
            e => PtraceEvent::Other(e),
        };
        Self::Stopped {
            signal: libc::WSTOPSIG(status),
            event,
        }
    }
}

/// `waitpid(pid, __WALL | __WNOTHREAD | WNOHANG)`; `pid` -1 waits for any tracee of the
/// calling thread. `__WNOTHREAD` keeps it from reaping children other threads of the agent
/// spawned. `None` when nothing changed (or there is nothing to wait for).
pub fn waitpid_nohang(pid: i32) -> std::io::Result<Option<WaitReport>> {
    wait_flags(pid, libc::__WALL | libc::__WNOTHREAD | libc::WNOHANG)
}

/// Whether the calling thread has a tracee (or child) left: `waitid` fails with `ECHILD`
/// when it has none. Nothing is reaped.
pub fn has_tracees() -> bool {
    // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WNOHANG
        | libc::WNOWAIT
        | libc::WEXITED
        | libc::WSTOPPED
        | libc::__WALL
        | libc::__WNOTHREAD;
    // SAFETY: `info` is a valid siginfo_t for the kernel to fill.
    let r = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) };
    !(r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
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
            status: WaitStatus::from_raw(status),
        })),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wait_statuses() {
        // Layouts from <bits/waitstatus.h>: exit code << 8; the killing signal; 0x7f |
        // signal << 8 | event << 16 for a stop; 0xffff for continued.
        assert_eq!(WaitStatus::from_raw(3 << 8), WaitStatus::Gone);
        assert_eq!(WaitStatus::from_raw(libc::SIGKILL), WaitStatus::Gone);
        assert_eq!(WaitStatus::from_raw(0xffff), WaitStatus::Other);
        let stop = |sig: i32, ev: i32| WaitStatus::from_raw(0x7f | sig << 8 | ev << 16);
        assert_eq!(
            stop(libc::SIGCONT, 0),
            WaitStatus::Stopped {
                signal: libc::SIGCONT,
                event: PtraceEvent::None
            }
        );
        assert_eq!(
            stop(libc::SIGTRAP, libc::PTRACE_EVENT_CLONE),
            WaitStatus::Stopped {
                signal: libc::SIGTRAP,
                event: PtraceEvent::Clone
            }
        );
        assert_eq!(
            stop(libc::SIGSTOP, libc::PTRACE_EVENT_STOP),
            WaitStatus::Stopped {
                signal: libc::SIGSTOP,
                event: PtraceEvent::Stop
            }
        );
        assert_eq!(
            stop(libc::SIGTRAP, libc::PTRACE_EVENT_EXEC),
            WaitStatus::Stopped {
                signal: libc::SIGTRAP,
                event: PtraceEvent::Other(libc::PTRACE_EVENT_EXEC)
            }
        );
    }
}
