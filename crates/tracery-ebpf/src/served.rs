//! Which request each thread, Go goroutine and tokio task serves: written by the receive
//! path (`trace`) and the goroutine/task hooks (`tasks`), read by the capture probe and
//! the hold verdict.

use aya_ebpf::{macros::map, maps::LruHashMap};
use tracery_common::trace::{GoKey, TraceContext, MAX_TRACED};

#[map(name = "THREAD_TRACE")]
pub static THREAD_TRACE: LruHashMap<u64, TraceContext> =
    LruHashMap::with_max_entries(MAX_TRACED, 0);

#[map(name = "GO_TRACE")]
pub static GO_TRACE: LruHashMap<GoKey, TraceContext> = LruHashMap::with_max_entries(MAX_TRACED, 0);

/// The trace the current thread serves, if known; with a `key` (a goroutine's `g`, a
/// tokio task's id), the trace of that goroutine or task.
#[inline(always)]
pub fn current_trace(pid_tgid: u64, key: Option<u64>) -> Option<TraceContext> {
    let p = match key {
        Some(g) => GO_TRACE.get_ptr(GoKey {
            tgid: (pid_tgid >> 32) as u32,
            _pad: 0,
            g,
        })?,
        None => THREAD_TRACE.get_ptr(pid_tgid)?,
    };
    // SAFETY: a map value pointer, valid for this program run.
    Some(unsafe { *p })
}
