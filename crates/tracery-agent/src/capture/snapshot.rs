//! Snapshots: the model lives in `tracery-model` (shared with the CLI and the
//! controller); what turns kernel timestamps into their wall-clock time is here.

use std::time::{Duration, SystemTime};

pub use tracery_model::snapshot::{Location, Snapshot, StackFrame};
pub use tracery_model::trace::hex_id;

/// Converts the kernel's monotonic timestamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds, sampled once.
    offset_ns: i128,
}

impl Clock {
    /// Samples both clocks now.
    pub fn new() -> Self {
        let mono = crate::sys::monotonic_ns();
        let real = crate::sys::realtime_ns();
        Self {
            offset_ns: i128::from(real) - i128::from(mono),
        }
    }

    /// Wall-clock time of a `bpf_ktime_get_ns` value.
    pub fn wall(&self, ktime_ns: u64) -> SystemTime {
        let ns = (i128::from(ktime_ns) + self.offset_ns).max(0) as u128;
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
