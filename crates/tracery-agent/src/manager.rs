//! The agent's breakpoint manager: keeps each breakpoint armed on every process it targets,
//! including processes that start or restart later, and hands out their snapshots.
//!
//! The control plane (or standalone mode) adds and removes [`BreakpointSpec`]s and calls
//! [`Manager::tick`] in a loop; everything kernel-side is owned here.

mod arming;
mod cluster;
mod node;
mod python;
mod spec;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, SystemTime},
};

use tracery_dwarf::condition::Expr;
use tracery_model::error::chain;

use arming::{disarm_all, InProcess, SharedFile};
pub use spec::{BreakpointSpec, BreakpointStatus, Ended, Target};

use crate::{
    capture::session::Session,
    capture::snapshot::Snapshot,
    capture::when::{parse_when, when_holds},
    error::AgentError,
    exec_watch::ExecWatcher,
    freeze::freezer::Freezer,
    freeze::{
        EvalError, FreezeEvent, FrozenThread, HeldMessage, ReleaseReason, ResumeOutcome, TraceId,
    },
    pods::{PodDirectory, PodGroups},
};

struct Armed {
    spec: BreakpointSpec,
    /// Tracker bit of `spec.scope.header`, as a mask (0 for none).
    header_bits: u32,
    /// A `--freeze` breakpoint armed in Go code: the kernel watches system calls for it.
    go_freeze: bool,
    /// `spec.when`, parsed once.
    when: Option<Expr>,
    /// The processes it is armed in.
    pids: BTreeMap<u32, InProcess>,
    /// Probe sites bound to executable files, for all their processes.
    shared: Vec<SharedFile>,
    /// Pod breakpoints: the pod groups in its kernel cgroup set (set id = breakpoint id).
    pod_set: BTreeSet<u64>,
    hits: u64,
    filtered: u64,
    kernel_drops: u64,
    over_limit: u64,
    errors: Vec<(u32, String)>,
    exited: Vec<u32>,
    ended: Option<Ended>,
}

/// Arms breakpoints on processes and collects their snapshots.
pub struct Manager {
    session: Session,
    execs: ExecWatcher,
    breakpoints: BTreeMap<u64, Armed>,
    /// Hits of breakpoints removed before their records were read.
    pub orphaned: u64,
    freezer: Freezer,
    /// Processes with a freezing breakpoint whose cgroup is watched for message holds.
    hold_watched: BTreeMap<u32, HoldWatch>,
    /// Cluster mode: this node's pods (`None` outside a cluster).
    pods: Option<PodDirectory>,
    /// The pod of each process that hit, found once: a process never changes pod.
    pod_refs: HashMap<u32, tracery_model::PodRef>,
    /// Cluster mode: the cgroups of this node's pods, by id.
    pod_groups: PodGroups,
    /// Breakpoints in Node.js processes (`.js`/`.ts` locations), through the inspector;
    /// started at the first one.
    node: Option<crate::node::NodeRuntime>,
    /// Breakpoints in CPython processes, through hardware watchpoints; started at the first.
    python: Option<crate::python::PythonRuntime>,
    /// New processes already caught by their file's shared sites, whose requests are
    /// followed once they have lived [`arming::FOLLOW_AFTER`].
    to_follow: Vec<arming::ToFollow>,
}

impl Manager {
    /// Loads the eBPF programs and starts watching execs. Needs root or CAP_BPF + CAP_PERFMON.
    pub fn start() -> Result<Self, AgentError> {
        let mut session = Session::start()?;
        let execs = session.watch_execs()?;
        Ok(Self {
            session,
            execs,
            breakpoints: BTreeMap::new(),
            orphaned: 0,
            freezer: Freezer::default(),
            hold_watched: BTreeMap::new(),
            pods: None,
            pod_refs: HashMap::new(),
            pod_groups: PodGroups::default(),
            node: None,
            python: None,
            to_follow: Vec::new(),
        })
    }

    /// Processes whose requests the kernel follows now: those with an armed breakpoint
    /// that needs tracking, and those with a frozen or held request not yet let go.
    pub fn tracked_processes(&mut self) -> Vec<u32> {
        self.session.table().tracked()
    }

    /// Run counts and run times of every loaded eBPF program; they count only while
    /// [`crate::capture::program_stats::enable`]'s fd is open.
    pub fn program_stats(&mut self) -> Vec<crate::ProgramStats> {
        self.session.table().program_stats()
    }

    /// Watches the cgroup v2 directory `dir` for message holds: a trace frozen on any node
    /// has its messages held here when they carry its trace header, or come from a thread
    /// this agent tracks as serving it. Use it for the node's (or pod's) workload cgroup.
    pub fn watch_cgroup(&mut self, dir: &std::path::Path) -> Result<(), AgentError> {
        self.session.table().hold_watch_cgroup(dir)
    }

    /// Adds a breakpoint and arms it on every matching process running now. A breakpoint
    /// whose target matches no process yet is kept and armed when one starts. Fails when a
    /// PID target does not exist, its binary cannot take the location, or `when` is
    /// malformed.
    pub fn add(&mut self, spec: BreakpointSpec) -> Result<BreakpointStatus, AgentError> {
        if crate::node::is_node_location(&spec.location) {
            return self.add_node(spec);
        }
        if self.is_python(&spec) {
            return self.add_python(spec);
        }
        let id = spec.id;
        let when = parse_when(spec.when.as_deref())?;
        let header_bits = match &spec.scope.header {
            Some((name, value)) => 1 << self.session.tracker().header_bit(name, value)?,
            None => 0,
        };
        let pids = match &spec.target {
            Target::Pid(pid) => vec![*pid],
            Target::Matching(m) => m.find(),
            Target::Pods(selector) => self.find_pods(id, selector)?,
        };
        let mut armed = Armed {
            spec,
            header_bits,
            go_freeze: false,
            when,
            pids: BTreeMap::new(),
            shared: Vec::new(),
            pod_set: BTreeSet::new(),
            hits: 0,
            filtered: 0,
            kernel_drops: 0,
            over_limit: 0,
            errors: Vec::new(),
            exited: Vec::new(),
            ended: None,
        };
        self.remove(id)?;
        // Bound to the file first: a process that starts from now on is caught from its
        // first instruction. A file not there yet is bound when its first process starts.
        if let Some((path, cgroup)) = arming::target_file(&armed.spec.target) {
            let (path, cgroup) = (path.to_path_buf(), cgroup.cloned());
            if path.exists() {
                let bound = arming::node_filter(cgroup.as_ref())
                    .and_then(|f| arming::arm_file(&mut self.session, &mut armed, &path, f));
                if let Err(e) = bound {
                    self.release_scope(&armed);
                    return Err(e);
                }
            }
        }
        for pid in pids {
            let at = arming::Arming {
                session: &mut self.session,
                freezer: &mut self.freezer,
                hold_watched: &mut self.hold_watched,
                pod_groups: &mut self.pod_groups,
            };
            let result = at.arm_in(&mut armed, pid);
            match (result, &armed.spec.target) {
                (Ok(p), _) => {
                    armed.pids.insert(pid, p);
                }
                // A PID target that cannot be armed is the caller's error to see at once.
                (Err(e), Target::Pid(_)) => {
                    disarm_all(&mut self.session, &mut armed)?;
                    self.release_scope(&armed);
                    return Err(e);
                }
                (Err(e), _) => armed.errors.push((pid, chain(&e))),
            }
        }
        let pods = matches!(armed.spec.target, Target::Pods(_));
        self.breakpoints.insert(id, armed);
        if pods {
            self.refresh_pod_sets();
        }
        Ok(self.status_of(id).expect("just inserted"))
    }

    /// Removes a breakpoint and detaches its probes. Returns false if it did not exist.
    pub fn remove(&mut self, id: u64) -> Result<bool, AgentError> {
        if self.node.as_mut().is_some_and(|n| n.remove(id)) {
            return Ok(true);
        }
        if self.remove_python(id) {
            return Ok(true);
        }
        let Some(mut bp) = self.breakpoints.remove(&id) else {
            return Ok(false);
        };
        let pids: Vec<u32> = bp.pids.keys().copied().collect();
        disarm_all(&mut self.session, &mut bp)?;
        self.release_scope(&bp);
        for pid in pids {
            self.unseize_if_unused(pid);
        }
        self.forget_pod_refs();
        Ok(true)
    }

    fn release_scope(&mut self, bp: &Armed) {
        if let Some((name, value)) = &bp.spec.scope.header {
            self.session.tracker().release_header(name, value);
        }
    }

    /// Detaches from `pid` once no armed `--freeze` breakpoint needs its threads seized, and
    /// stops watching system calls once no such breakpoint is in Go code.
    fn unseize_if_unused(&mut self, pid: u32) {
        let go = self
            .breakpoints
            .values()
            .any(|b| b.go_freeze && b.ended.is_none() && !b.pids.is_empty());
        let pending = self.freezer.go_pending();
        self.session.tracker().set_go_freeze_armed(go || pending);
        let wanted = self
            .breakpoints
            .values()
            .any(|b| b.spec.freeze.is_some() && b.ended.is_none() && b.pids.contains_key(&pid));
        self.freezer.unseize(pid, wanted, self.session.tracker());
    }

    /// Stops watching processes for message holds once no armed freezing breakpoint needs
    /// them and nothing is frozen or held here: until then their new connections must
    /// still join the sockhash, and their tasks' traces must still be followed.
    fn unwatch_idle(&mut self) {
        if self.hold_watched.is_empty() {
            return;
        }
        let idle = self
            .session
            .table()
            .holder_if_started()
            .is_none_or(|h| h.idle());
        if !idle {
            return;
        }
        let unwanted: Vec<u32> = self
            .hold_watched
            .keys()
            .copied()
            .filter(|pid| {
                !self.breakpoints.values().any(|b| {
                    b.spec.freeze.is_some() && b.ended.is_none() && b.pids.contains_key(pid)
                })
            })
            .collect();
        for pid in unwanted {
            let w = self.hold_watched.remove(&pid).expect("listed above");
            let table = self.session.table();
            table.hold_unwatch(&w.dir);
            if w.tracking {
                table.untrack(pid);
            }
        }
    }

    /// Waits up to `timeout` for hits, arms breakpoints on processes that just started,
    /// forgets processes that exited and ends expired breakpoints. Returns the snapshots
    /// that arrived; the caller hands them on (the Manager keeps none).
    pub fn tick(&mut self, timeout: Duration) -> Result<Vec<Snapshot>, AgentError> {
        let hits = self.session.poll_hits(timeout)?;
        let snaps = self.place_hits(hits);
        let mut delivered = Vec::with_capacity(snaps.len());
        // Traces the kernel froze on a hit that user space then rejected.
        let mut not_frozen = Vec::new();
        for (s, chosen) in snaps {
            let Some(bp) = self.breakpoints.get_mut(&s.breakpoint_id) else {
                self.orphaned += 1;
                continue;
            };
            if !chosen {
                bp.filtered += 1;
                not_frozen.extend(freeze_trace(bp, &s));
                continue;
            }
            if bp.ended.is_some() {
                bp.over_limit += 1;
                not_frozen.extend(freeze_trace(bp, &s));
                continue;
            }
            if !when_holds(bp.when.as_ref(), &s.variables) {
                bp.filtered += 1;
                not_frozen.extend(freeze_trace(bp, &s));
                continue;
            }
            bp.hits += 1;
            if bp.spec.hit_limit != 0 && bp.hits >= bp.spec.hit_limit {
                bp.ended = Some(Ended::HitLimit);
            }
            delivered.push(s);
        }
        if let Some(node) = &mut self.node {
            let mut hits = node.tick();
            self.tag_pods(&mut hits);
            delivered.extend(hits);
        }
        let mut hits = self.tick_python();
        self.tag_pods(&mut hits);
        delivered.extend(hits);
        let trapped = self.session.take_trapped();
        let timeouts: HashMap<u64, Duration> = self
            .breakpoints
            .iter()
            .filter_map(|(id, b)| Some((*id, b.spec.freeze?.timeout)))
            .collect();
        if !timeouts.is_empty() || !trapped.is_empty() {
            self.freezer
                .on_hits(&delivered, &trapped, &timeouts, self.session.tracker());
        }
        self.freezer.poll_go(self.session.tracker());
        let released = self.freezer.expire(self.session.tracker(), |pid| {
            crate::process::pid_exists(pid)
        });
        if let Some(h) = self.session.table().holder_if_started() {
            h.poll();
            for t in not_frozen {
                if !self.freezer.has(t) {
                    h.discard(t);
                }
            }
            for r in &released {
                if !self.freezer.has(r.thread.trace_id) {
                    h.release(r.thread.trace_id, r.reason);
                }
            }
        }
        for r in released {
            self.unseize_if_unused(r.thread.pid);
        }
        for e in self.execs.poll(Duration::ZERO)? {
            // A new image, perhaps of a reused PID: its pod is found again at its first hit.
            self.pod_refs.remove(&e.pid);
            // A pod's sandbox starts before its containers: its group joins the sets of
            // the breakpoints that choose the pod before their file's next process runs.
            if self.pods.is_some()
                && self.pod_files_bound()
                && self.pod_groups.learn(e.pid).is_some_and(|(_, new)| new)
            {
                self.sync_pod_sets();
            }
            self.arm_new_process(&e);
            self.node_exec(&e);
            self.python_exec(&e);
        }
        self.follow_due();
        let now = SystemTime::now();
        let mut released_pids = Vec::new();
        for bp in self.breakpoints.values_mut() {
            if bp.ended.is_none() && bp.spec.expires_at.is_some_and(|t| now >= t) {
                bp.ended = Some(Ended::Expired);
            }
            let gone: Vec<u32> = bp
                .pids
                .iter()
                .filter(|(_, p)| !p.process.is_alive())
                .map(|(pid, _)| *pid)
                .collect();
            released_pids.extend(gone.iter().copied());
            for pid in gone {
                if let Some(p) = bp.pids.remove(&pid) {
                    arming::disarm_in(&mut self.session, bp, p)?;
                }
                if matches!(bp.spec.target, Target::Pid(_)) {
                    bp.exited.push(pid);
                    if bp.ended.is_none() {
                        bp.ended = Some(Ended::TargetExited);
                    }
                }
            }
            if bp.ended.is_some() && !(bp.pids.is_empty() && bp.shared.is_empty()) {
                released_pids.extend(bp.pids.keys().copied());
                disarm_all(&mut self.session, bp)?;
            }
        }
        let forget = !released_pids.is_empty();
        for pid in released_pids {
            self.unseize_if_unused(pid);
        }
        if forget {
            self.forget_pod_refs();
        }
        self.unwatch_idle();
        Ok(delivered)
    }

    /// Requests frozen on this node now.
    pub fn frozen(&self) -> Vec<FrozenThread> {
        self.freezer.frozen()
    }

    /// What the ptrace tracer of `--freeze` breakpoints has done: seized threads, and
    /// signals it passed on (each one a stop of a seized thread).
    pub fn tracer_stats(&self) -> crate::freeze::suspend::TracerStats {
        self.freezer.tracer_stats()
    }

    /// Lets every frozen thread of `trace` on this node go. Resuming a trace that is not
    /// frozen does nothing and says when it was last released, if it was.
    pub fn resume(&mut self, trace: TraceId) -> ResumeOutcome {
        // Held bytes go out first: a thread let go may send more on the same connections,
        // and that must follow them (it would queue behind them anyway).
        let held = self
            .session
            .table()
            .holder_if_started()
            .and_then(|h| h.release(trace, ReleaseReason::Resumed));
        let outcome = self.freezer.resume(trace, self.session.tracker());
        match outcome {
            ResumeOutcome::Resumed { threads, .. } => {
                for r in &threads {
                    // Its breakpoint may have ended meanwhile (a freeze is one hit by default).
                    self.unseize_if_unused(r.thread.pid);
                }
                ResumeOutcome::Resumed { threads, held }
            }
            ResumeOutcome::NotFrozen(_) if held.is_some() => ResumeOutcome::Resumed {
                threads: Vec::new(),
                held,
            },
            not_frozen => not_frozen,
        }
    }

    /// Evaluates `expr` (a variable or field path) in the stopped thread of `trace`.
    pub fn eval(&mut self, trace: TraceId, expr: &str) -> Result<serde_json::Value, EvalError> {
        let (pid, regs) = self
            .freezer
            .stopped(trace)
            .ok_or(EvalError::NotStopped(trace))?;
        let (exe, bias) = self
            .session
            .executable_of(pid)
            .map_err(|e| EvalError::Read(e.to_string()))?;
        crate::freeze::eval::eval_in(&exe, bias, pid, &regs, expr)
    }

    /// Messages of frozen traces held on this node now, oldest first.
    pub fn held(&mut self) -> Vec<HeldMessage> {
        self.session
            .table()
            .holder_if_started()
            .map(|h| h.held().to_vec())
            .unwrap_or_default()
    }

    /// Holds `trace`'s outbound messages on this node until `deadline`: the trace froze on
    /// another node (the controller tells every agent).
    pub fn hold_trace(&mut self, trace: TraceId, deadline: SystemTime) -> Result<(), AgentError> {
        self.session.table().holder()?.hold(trace, deadline)
    }

    /// Takes the freezes and releases since the last call, oldest first.
    pub fn take_freeze_events(&mut self) -> Vec<FreezeEvent> {
        let mut events = self.freezer.take_events();
        if let Some(h) = self.session.table().holder_if_started() {
            events.extend(h.take_events());
        }
        events
    }

    /// Takes the sends and receives of traced requests seen since the last call.
    pub fn take_messages(&mut self) -> tracery_model::message::MessageBatch {
        self.session.table().tracker().take_messages()
    }

    /// Message events the kernel wrote, and lost to a full ring, since start.
    pub fn message_counters(&mut self) -> (u64, u64) {
        self.session.table().tracker().message_counters()
    }

    /// State of every breakpoint.
    pub fn status(&self) -> Vec<BreakpointStatus> {
        let node = self.node.iter().flat_map(|n| n.status());
        let python = self.python.iter().flat_map(|p| p.status());
        self.breakpoints
            .keys()
            .filter_map(|id| self.status_of(*id))
            .chain(node)
            .chain(python)
            .collect()
    }

    /// State of one breakpoint.
    pub fn status_of(&self, id: u64) -> Option<BreakpointStatus> {
        let Some(bp) = self.breakpoints.get(&id) else {
            if let Some(s) = self.python.as_ref().and_then(|p| p.status_of(id)) {
                return Some(s);
            }
            return self.node.as_ref()?.status_of(id);
        };
        let live: u64 = bp
            .pids
            .values()
            .flat_map(|p| &p.slots)
            .chain(bp.shared.iter().flat_map(|s| &s.slots))
            .filter_map(|s| self.session.counters(*s).ok())
            .map(|c| c.dropped)
            .sum();
        Some(BreakpointStatus {
            id,
            processes: bp.pids.iter().map(|(pid, p)| (*pid, p.sites)).collect(),
            files: bp
                .shared
                .iter()
                .map(|s| (s.path.clone(), s.slots.len()))
                .collect(),
            hits: bp.hits,
            filtered: bp.filtered,
            kernel_drops: bp.kernel_drops + live,
            over_limit: bp.over_limit,
            errors: bp.errors.clone(),
            exited: bp.exited.clone(),
            ended: bp.ended.clone(),
        })
    }
}

/// Fails when a `--capture` placeholder's root variable is not captured at a site.
fn check_capture_scope(
    paths: &[String],
    location: &str,
    plan: &tracery_dwarf::CapturePlan,
) -> Result<(), AgentError> {
    for path in paths {
        // `req->user.id`, `items[0]`, `order.customer`: the variable is what comes first.
        let root = &path[..path.find(['.', '-', '[']).unwrap_or(path.len())];
        if plan.variables().any(|(name, _)| name == root) {
            continue;
        }
        let mut in_scope: Vec<String> = Vec::new();
        for (name, _) in plan.variables() {
            if !in_scope.iter().any(|s| s == name) {
                in_scope.push(name.to_owned());
            }
        }
        return Err(AgentError::CaptureOutOfScope {
            path: path.clone(),
            location: location.to_owned(),
            in_scope,
        });
    }
    Ok(())
}

/// A process watched for message holds.
struct HoldWatch {
    /// Its cgroup directory.
    dir: std::path::PathBuf,
    /// True when the watch holds a use of the process's trace tracking.
    tracking: bool,
}

/// The trace of a rejected hit of a freezing breakpoint: the kernel froze it already.
fn freeze_trace(bp: &Armed, s: &Snapshot) -> Option<TraceId> {
    bp.spec.freeze?;
    TraceId::parse(s.trace_id.as_deref()?).ok()
}

impl Drop for Manager {
    fn drop(&mut self) {
        // Held messages go out, frozen threads continue and seized ones are detached before
        // the probes go.
        if let Some(h) = self.session.table().holder_if_started() {
            h.release_all();
        }
        self.freezer.release_all(self.session.tracker());
    }
}
