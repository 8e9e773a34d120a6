//! Ring-buffer records: one per emitted hit.
//!
//! Layout: [`HitHeader`], then `data_len` bytes of captured data (offsets as in the plan),
//! then, `stack_offset` bytes after the header, `stack_len` bytes of user stack from the
//! hit's `rsp`. Records come in a few fixed sizes, so bytes between the parts are unused.

use crate::{regs::NUM_REGS, MAX_OPS};

/// Outcome of one fetch op.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpStatus {
    /// Not run (zero, so a cleared result reads as "not run").
    NotRun = 0,
    /// Bytes were read.
    Ok = 1,
    /// `bpf_probe_read_user` failed (unmapped or paged-out memory).
    Fault = 2,
    /// The base pointer was null.
    Null = 3,
    /// The op the base or length depends on did not succeed.
    BaseFailed = 4,
    /// The op asked for more than the caps allow; nothing was read.
    OutOfBounds = 5,
}

impl OpStatus {
    /// Decodes the byte the kernel wrote; unknown values read as `NotRun`.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Ok,
            2 => Self::Fault,
            3 => Self::Null,
            4 => Self::BaseFailed,
            5 => Self::OutOfBounds,
            _ => Self::NotRun,
        }
    }
}

/// Result of one fetch op: its status and how many bytes it wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpResult {
    /// An [`OpStatus`] as `u8`.
    pub status: u8,
    pub _pad: u8,
    /// Bytes written (for strings, without the NUL).
    pub len: u16,
}

/// Fixed part of every hit record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HitHeader {
    pub breakpoint_id: u64,
    /// Sequence number of this hit for its probe (from the hit-limit counter).
    pub seq: u64,
    /// `bpf_ktime_get_ns` at the hit (CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    /// Probe slot (attach cookie).
    pub slot: u32,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Bytes of data that follow the header.
    pub data_len: u32,
    /// Offset of the stack copy, from the end of the header.
    pub stack_offset: u32,
    /// Bytes of stack copied.
    pub stack_len: u32,
    /// Bit set of `HIT_*`.
    pub flags: u32,
    pub _pad: u32,
    /// The hitting task's cgroup v2 id: names its pod after the process is gone.
    pub cgroup_id: u64,
    /// W3C trace id of the request this thread serves, all zero when unknown.
    pub trace_id: [u8; 16],
    /// Span id of that request, all zero when unknown.
    pub span_id: [u8; 8],
    /// Registers at the hit, in `pt_regs` order.
    pub regs: [u64; NUM_REGS],
    pub results: [OpResult; MAX_OPS],
}

impl HitHeader {
    /// The kernel sent the hitting thread the freeze trap (it was seized).
    pub const HIT_TRAPPED: u32 = 1;
    /// Go: the goroutine's thread will be trapped at its next system call.
    pub const HIT_GO_PENDING: u32 = 2;
    /// Size of the header in bytes.
    pub const SIZE: usize = core::mem::size_of::<Self>();
}

const _: () = assert!(HitHeader::SIZE.is_multiple_of(8));
