//! Every raw syscall and `unsafe` block of the agent, each with its `// SAFETY:` argument,
//! grouped by family. Callers use the flat names re-exported here (`sys::ptrace_cont`).

mod fd;
mod pidfd;
mod poll;
mod proc_mem;
mod process;
mod ptrace;
mod record;
mod socket;
mod time;

pub use fd::{dup_above, memfd, place_fds_before_exec, take_inherited_fd};
pub use pidfd::{pidfd_getfd, pidfd_open};
pub use poll::{wait_readable, wait_writable};
pub use proc_mem::process_vm_read;
pub use process::{cpu_time, raise_memlock_limit, trim_heap};
pub use ptrace::{
    has_tracees, ptrace_cont, ptrace_detach, ptrace_geteventmsg, ptrace_getregs, ptrace_getsiginfo,
    ptrace_interrupt, ptrace_listen, ptrace_seize, tgkill, waitpid_nohang, PtraceEvent, WaitStatus,
};
pub use record::read_record;
pub use socket::{
    is_tcp_socket, peek_nowait, recv_nowait, same_conn, send_nowait, sock_key, socket_cookie,
};
pub use time::{monotonic_ns, realtime_ns};

/// Result of a raw call that returns -1 and sets errno on failure.
pub(crate) fn check(r: libc::c_long) -> std::io::Result<libc::c_long> {
    if r == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
