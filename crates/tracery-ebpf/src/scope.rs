//! The checks every breakpoint program applies before it captures: the trace scope
//! (`--trace-id`, `--header`) and the rate limit. Shared by the native capture uprobe and
//! the CPython watchpoint program, so both filter hits the same way.

use aya_ebpf::helpers::generated::bpf_ktime_get_ns;
use tracery_common::trace::TraceContext;

/// A 16-byte id as two words, for cheap comparisons.
#[inline(always)]
pub fn words(b: &[u8; 16]) -> (u64, u64) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&b[..8]);
    hi.copy_from_slice(&b[8..]);
    (u64::from_ne_bytes(lo), u64::from_ne_bytes(hi))
}

/// True when the hit's request is in the trace scope: of trace `scope_trace` when
/// `scoped`, and carrying every `--header` filter of `header_bits`.
#[inline(always)]
pub fn in_scope(
    scoped: bool,
    scope_trace: &[u8; 16],
    header_bits: u32,
    trace: Option<&TraceContext>,
) -> bool {
    let Some(t) = trace else {
        return false;
    };
    if scoped && words(&t.trace_id) != words(scope_trace) {
        return false;
    }
    t.header_bits & header_bits == header_bits
}

/// The rate limit as a generic cell rate algorithm: admit a hit unless the schedule
/// (`tat`, the theoretical arrival time) is more than `burst_ns` ahead of now.
#[inline(always)]
pub fn rate_allows(interval_ns: u64, burst_ns: u64, tat: &mut u64) -> bool {
    if interval_ns == 0 {
        return true;
    }
    // SAFETY: reads the monotonic clock; no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let start = if *tat < now { now } else { *tat };
    if start - now > burst_ns {
        return false;
    }
    // Racy across CPUs by design: two CPUs may both admit a hit against the same slot, so
    // the limit can be exceeded by the CPU count at most; it is never unbounded.
    *tat = start + interval_ns;
    true
}
