//! Runtime breakpoints (Node, Python) waiting to be armed in a process that started after
//! them. At exec the runtime is not ready for them: Node has no SIGUSR1 handler yet and
//! has not loaded the location's script, CPython has not imported the location's module.
//! So the process waits here and is tried again every [`RETRY_EVERY`] until it can be
//! armed, for at most [`READY_WITHIN`]; then the last reason goes to the breakpoint's
//! errors.

use std::time::{Duration, Instant};

/// How long a new process has to become ready for a breakpoint. Node and CPython get there
/// within a second of exec; a loaded machine is slower.
pub const READY_WITHIN: Duration = Duration::from_secs(15);

/// How often a new process that is not ready yet is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// Breakpoint `breakpoint`, waiting to be armed in new process `pid`.
#[derive(Debug)]
pub struct Waiting {
    pub breakpoint: u64,
    pub pid: u32,
    until: Instant,
    next_try: Instant,
}

/// The breakpoints waiting for new processes, in the order they began to wait.
#[derive(Debug, Default)]
pub struct LateArming {
    waiting: Vec<Waiting>,
}

impl LateArming {
    /// Breakpoint `breakpoint` waits for `pid`, unless it does already.
    pub fn add(&mut self, breakpoint: u64, pid: u32) {
        if self.is_waiting(breakpoint, pid) {
            return;
        }
        let now = Instant::now();
        self.waiting.push(Waiting {
            breakpoint,
            pid,
            until: now + READY_WITHIN,
            next_try: now,
        });
    }

    /// True while breakpoint `breakpoint` waits for `pid`.
    pub fn is_waiting(&self, breakpoint: u64, pid: u32) -> bool {
        self.waiting
            .iter()
            .any(|w| w.breakpoint == breakpoint && w.pid == pid)
    }

    /// Breakpoint `breakpoint` waits for no process any more (it was removed).
    pub fn forget_breakpoint(&mut self, breakpoint: u64) {
        self.waiting.retain(|w| w.breakpoint != breakpoint);
    }

    /// Takes the waits whose turn it is at `now`; the others keep their place.
    pub fn take_due(&mut self, now: Instant) -> Vec<Waiting> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let (due, later) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.next_try <= now);
        self.waiting = later;
        due
    }

    /// A try at `now` failed: the wait goes on, unless its time is up. Returns false then,
    /// and the failure is final.
    pub fn retry(&mut self, mut w: Waiting, now: Instant) -> bool {
        if now >= w.until {
            return false;
        }
        w.next_try = now + RETRY_EVERY;
        self.waiting.push(w);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_tried_again_until_its_time_is_up() {
        let mut late = LateArming::default();
        late.add(1, 42);
        late.add(1, 42);
        assert!(late.is_waiting(1, 42));
        let start = Instant::now();
        let due = late.take_due(start);
        assert_eq!(due.len(), 1, "one wait, however often it was added");
        assert!(!late.is_waiting(1, 42));
        let w = due.into_iter().next().unwrap();
        assert!(late.retry(w, start));
        assert!(late.take_due(start).is_empty(), "not before its next try");
        let w = late.take_due(start + RETRY_EVERY).pop().unwrap();
        assert!(!late.retry(w, start + READY_WITHIN), "time is up");
        assert!(!late.is_waiting(1, 42));
    }

    #[test]
    fn a_removed_breakpoint_waits_no_more() {
        let mut late = LateArming::default();
        late.add(1, 42);
        late.add(2, 42);
        late.forget_breakpoint(1);
        assert!(!late.is_waiting(1, 42));
        assert!(late.is_waiting(2, 42));
    }
}
