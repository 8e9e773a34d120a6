//! Exec events: a process replaced its image (`sched_process_exec`), so the agent can arm
//! breakpoints on processes that start or restart after the breakpoint was set.

/// Most bytes of the executable path an exec event carries (including the NUL).
pub const EXEC_PATH_MAX: usize = 256;

/// Ring buffer size for exec events: execs are rare next to breakpoint hits.
pub const EXEC_RING_BYTES: u32 = 256 << 10;

/// One exec, as the tracepoint program writes it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    /// Process id (tgid) after the exec.
    pub pid: u32,
    /// Bytes of `path` in use, without the NUL.
    pub path_len: u32,
    /// The path the kernel resolved for the new image, NUL-terminated.
    pub path: [u8; EXEC_PATH_MAX],
}

impl ExecEvent {
    /// The executable path, lossily as UTF-8.
    pub fn path(&self) -> &[u8] {
        let n = (self.path_len as usize).min(EXEC_PATH_MAX);
        &self.path[..n]
    }
}
