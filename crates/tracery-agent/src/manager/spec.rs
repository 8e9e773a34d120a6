//! What a breakpoint is, as the control plane defines it, and what the manager reports
//! about it.

use std::time::SystemTime;

use tracery_dwarf::CaptureLimits;

use crate::{
    discovery::Matcher,
    freeze::{FreezeSpec, TraceScope},
    pods::PodSelector,
};

/// Which processes a breakpoint applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One process; the breakpoint ends when it exits.
    Pid(u32),
    /// Every process matching, now and later (an executable or a service definition).
    Matching(Matcher),
    /// Cluster mode: every process of the selected pods' containers, now and later
    /// (pods that start on this node included).
    Pods(PodSelector),
}

/// A breakpoint as the control plane defines it.
#[derive(Clone, Debug)]
pub struct BreakpointSpec {
    pub id: u64,
    pub target: Target,
    /// `FILE:LINE` or a function name.
    pub location: String,
    /// Condition over captured variables; hits where it is false are filtered, not delivered.
    pub when: Option<String>,
    /// Snapshots in total, over all processes; 0 for no limit.
    pub hit_limit: u64,
    /// Kernel-side rate limit per probe site; 0 for none.
    pub rate_per_sec: u32,
    /// When the breakpoint disarms by itself.
    pub expires_at: Option<SystemTime>,
    pub limits: CaptureLimits,
    /// Which requests may trigger it (`--trace-id`, `--header`).
    pub scope: TraceScope,
    /// Freeze the request it hits (`--freeze`).
    pub freeze: Option<FreezeSpec>,
    /// Placeholder paths of its `--capture` queries (`order.customer`): their variables
    /// must be in scope where it arms, since the controller binds them from each hit.
    pub capture_paths: Vec<String>,
}

/// Why a breakpoint is no longer armed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It reached its hit limit.
    HitLimit,
    /// Its expiry passed.
    Expired,
    /// Its only target process exited.
    TargetExited,
}

/// State of one breakpoint, for status displays.
#[derive(Clone, Debug)]
pub struct BreakpointStatus {
    pub id: u64,
    /// Processes it is armed in, with their probe sites.
    pub processes: Vec<(u32, usize)>,
    /// Executable files its probes are bound to, for every process of the target that
    /// runs them, now and later (`--exe`, services by `exe`, pods), with their probe
    /// sites; empty when armed process by process.
    pub files: Vec<(String, usize)>,
    /// Snapshots delivered so far.
    pub hits: u64,
    /// Hits user space dropped because `when` was false (not lost: they did not match).
    pub filtered: u64,
    /// Records the kernel could not deliver (ring buffer full).
    pub kernel_drops: u64,
    /// Hits that arrived after the hit limit was reached (several sites or processes
    /// racing for the last slots); counted, not delivered.
    pub over_limit: u64,
    /// Per process, why arming failed (e.g. the location is not in that binary).
    pub errors: Vec<(u32, String)>,
    /// Processes of a PID target that exited (the agent lost its target).
    pub exited: Vec<u32>,
    pub ended: Option<Ended>,
}
