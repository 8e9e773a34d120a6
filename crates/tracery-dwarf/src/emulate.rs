//! Fetch plans run in user space, exactly as the kernel's capture program runs them
//! (`crates/tracery-ebpf/src/capture.rs`), against memory a caller provides: a stopped
//! thread's (`trace eval`) or a test's.
//!
//! - ops run in order; `Reg` bases add `offset` to the `pt_regs` word, `PtrAt` bases read
//!   the `u64` at `base_slot` and fail with `BaseFailed` unless op `base_op` is `Ok`, and
//!   with `Null` when the pointer is 0; `Absolute` bases are the offset itself;
//! - dynamic lengths are `min(len, min(count, MAX_COPY) * len_scale)`;
//! - `Value` stores `base + offset` as 8 bytes; `Copy` reads all bytes or fails with
//!   `Fault` (like `bpf_probe_read_user`); `CStr` copies up to `len - 1` bytes plus a NUL
//!   and reports the length without it (like `bpf_probe_read_user_str`).

use tracery_common::{
    BaseKind, FetchOp, HitHeader, OpKind, OpResult, OpStatus, ProbeConfig, DATA_CAP, MAX_COPY,
    MAX_OPS,
};

/// Memory the ops read: all of `buf` from `addr`, or false (the kernel's fault).
pub trait Memory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
}

impl<F: Fn(u64, &mut [u8]) -> bool> Memory for F {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self(addr, buf)
    }
}

/// What one op did, and where it read: enough to re-read a value the caps cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpRun {
    pub status: OpStatus,
    /// Bytes written (for strings, without the NUL).
    pub len: usize,
    /// Address read from (0 for `Value` ops and failures).
    pub addr: u64,
    /// A `Copy` op cut by its cap: the whole length the plan asked for.
    pub full_len: Option<u64>,
    /// A `CStr` op that filled its cap: the string may go on.
    pub cstr_cut: bool,
}

impl OpRun {
    fn failed(status: OpStatus) -> Self {
        Self {
            status,
            len: 0,
            addr: 0,
            full_len: None,
            cstr_cut: false,
        }
    }
}

/// Runs every op of `cfg` into `data` (at least `DATA_CAP` bytes) and records each result in
/// `h.results`, as the kernel does before it emits a record.
pub fn run_ops(
    cfg: &ProbeConfig,
    h: &mut HitHeader,
    data: &mut [u8],
    mem: &impl Memory,
) -> Vec<OpRun> {
    let n = (cfg.n_ops as usize).min(MAX_OPS);
    (0..n)
        .map(|i| {
            let run = run_op(&cfg.ops[i], h, data, mem);
            h.results[i] = OpResult {
                status: run.status as u8,
                _pad: 0,
                len: run.len as u16,
            };
            run
        })
        .collect()
}

fn ok(h: &HitHeader, i: u8) -> bool {
    (i as usize) < MAX_OPS && h.results[i as usize].status == OpStatus::Ok as u8
}

fn word(data: &[u8], off: usize) -> Option<u64> {
    if off > DATA_CAP - 8 {
        return None;
    }
    Some(u64::from_le_bytes(data.get(off..off + 8)?.try_into().ok()?))
}

/// One op, as `run_op` in the kernel runs it.
pub fn run_op(op: &FetchOp, h: &HitHeader, data: &mut [u8], mem: &impl Memory) -> OpRun {
    let out = op.out as usize;
    let mut len = op.len as usize;
    if out >= DATA_CAP || len > MAX_COPY || out + len > DATA_CAP || data.len() < DATA_CAP {
        return OpRun::failed(OpStatus::OutOfBounds);
    }
    let mut full_len = None;
    if op.flags & FetchOp::FLAG_DYNAMIC_LEN != 0 {
        if !ok(h, op.len_op) {
            return OpRun::failed(OpStatus::BaseFailed);
        }
        let Some(count) = word(data, op.len_slot as usize) else {
            return OpRun::failed(OpStatus::OutOfBounds);
        };
        let bytes = count.min(MAX_COPY as u64) * u64::from(op.len_scale);
        if bytes < len as u64 {
            len = bytes as usize;
        }
        full_len = Some(count.saturating_mul(u64::from(op.len_scale)));
    }
    let addr = if op.base == BaseKind::Reg as u8 {
        let Some(r) = h.regs.get(op.reg as usize) else {
            return OpRun::failed(OpStatus::OutOfBounds);
        };
        r.wrapping_add(op.offset as u64)
    } else if op.base == BaseKind::PtrAt as u8 {
        if !ok(h, op.base_op) {
            return OpRun::failed(OpStatus::BaseFailed);
        }
        let Some(p) = word(data, op.base_slot as usize) else {
            return OpRun::failed(OpStatus::OutOfBounds);
        };
        if p == 0 {
            return OpRun::failed(OpStatus::Null);
        }
        p.wrapping_add(op.offset as u64)
    } else {
        op.offset as u64
    };
    let done = |len, full_len, cstr_cut| OpRun {
        status: OpStatus::Ok,
        len,
        addr,
        full_len,
        cstr_cut,
    };
    if op.kind == OpKind::Value as u8 {
        if out > DATA_CAP - 8 {
            return OpRun::failed(OpStatus::OutOfBounds);
        }
        data[out..out + 8].copy_from_slice(&addr.to_le_bytes());
        OpRun {
            addr: 0,
            ..done(8, None, false)
        }
    } else if op.kind == OpKind::Copy as u8 {
        if len == 0 {
            return done(0, None, false);
        }
        if !mem.read(addr, &mut data[out..out + len]) {
            return OpRun::failed(OpStatus::Fault);
        }
        done(len, full_len.filter(|f| *f > len as u64), false)
    } else if op.kind == OpKind::CStr as u8 {
        if len == 0 {
            return done(0, None, false);
        }
        match read_cstr(mem, addr, &mut data[out..out + len]) {
            Some(got) => done(got, None, got + 1 == len),
            None => OpRun::failed(OpStatus::Fault),
        }
    } else {
        OpRun::failed(OpStatus::OutOfBounds)
    }
}

/// `bpf_probe_read_user_str`: up to `buf.len() - 1` bytes and a NUL; returns the length
/// without the NUL. Reads page by page, so a string that ends just before unmapped memory
/// still reads; `None` when not even its first page is readable.
pub fn read_cstr(mem: &impl Memory, addr: u64, buf: &mut [u8]) -> Option<usize> {
    let cap = buf.len().checked_sub(1)?;
    let mut got = 0;
    while got < cap {
        let at = addr.wrapping_add(got as u64);
        let want = (4096 - (at % 4096) as usize).min(cap - got);
        if !mem.read(at, &mut buf[got..got + want]) {
            if got == 0 {
                return None;
            }
            break;
        }
        if let Some(z) = buf[got..got + want].iter().position(|b| *b == 0) {
            return Some(got + z);
        }
        got += want;
    }
    buf[got] = 0;
    Some(got)
}
