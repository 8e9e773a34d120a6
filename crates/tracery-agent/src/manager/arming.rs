//! Arming one breakpoint: once in an executable file for every process that runs it
//! (shared sites), or in one process with sites of its own; and undoing both.
//!
//! A breakpoint whose target names an executable file (`--exe`, a service's `exe`) binds
//! its probes to the file's inode, before any process runs it: the kernel relocates each
//! hit from its instruction pointer, so a process is caught from its first instruction,
//! however briefly it lives. What stays per process is what needs one: following which
//! request its threads serve, and seizing its threads for `--freeze`.
//!
//! A pod breakpoint binds to the file of the first process it is armed in, filtered in
//! the kernel to the groups of the pods it chooses: later processes of that file in those
//! pods (a job's next run, a new replica of the image) are caught from their first
//! instruction. Targets chosen by name, command line or PID are armed process by process,
//! as they are found.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use tracery_model::error::chain;

use crate::{
    capture::executables::FileKey,
    capture::probes::SlotId,
    capture::session::{ArmOptions, CgroupFilter, PreparedBreakpoint, Session},
    capture::when::compile_when,
    discovery::NodeCgroup,
    error::AgentError,
    exec_watch::Exec,
    freeze::freezer::Freezer,
    pods::PodGroups,
    process::TargetProcess,
};

use super::{cluster, Armed, HoldWatch, Manager, Target};

/// How long a new process already caught by shared sites lives before its requests are
/// followed, for a breakpoint that is neither scoped nor freezing (those follow at once).
/// Following attaches the system-call hooks when nothing else is followed, and dropping
/// the last follower detaches them, which takes about 1.4 s here: a job that starts a
/// process every few hundred milliseconds would stall the agent on that churn. A process
/// that lives this long is worth it; its hits until then carry no trace id.
pub(super) const FOLLOW_AFTER: Duration = Duration::from_secs(1);

/// A new process to follow for a breakpoint once it has lived [`FOLLOW_AFTER`].
pub(super) struct ToFollow {
    breakpoint: u64,
    exec: Exec,
    due: Instant,
}

impl Manager {
    /// Arms the breakpoints that target a process that just executed. Where its file's
    /// shared sites caught it already, it is only followed, later (see [`FOLLOW_AFTER`]).
    pub(super) fn arm_new_process(&mut self, e: &Exec) {
        let file = FileKey::at(&Path::new("/proc").join(e.pid.to_string()).join("exe"));
        let mut now = Vec::new();
        for bp in self.breakpoints.values() {
            if bp.ended.is_some()
                || bp.pids.contains_key(&e.pid)
                || !cluster::selects_exec(&bp.spec.target, self.pods.as_ref(), e)
            {
                continue;
            }
            // A scoped or freezing breakpoint needs the process's requests from the start.
            let needs_requests = bp.spec.scope.trace_id.is_some()
                || bp.spec.scope.header.is_some()
                || bp.spec.freeze.is_some();
            if !needs_requests
                && file.is_some_and(|f| bp.shared.iter().any(|s| s.file.same_inode(&f)))
            {
                self.to_follow.push(ToFollow {
                    breakpoint: bp.spec.id,
                    exec: e.clone(),
                    due: Instant::now() + FOLLOW_AFTER,
                });
            } else {
                now.push(bp.spec.id);
            }
        }
        for id in now {
            self.arm_one(id, e.pid);
        }
    }

    /// Follows the new processes whose time has come, if they still run what they ran.
    pub(super) fn follow_due(&mut self) {
        if self.to_follow.is_empty() {
            return;
        }
        let now = Instant::now();
        let (due, later) = std::mem::take(&mut self.to_follow)
            .into_iter()
            .partition(|f| f.due <= now);
        self.to_follow = later;
        for f in due {
            let Some(bp) = self.breakpoints.get(&f.breakpoint) else {
                continue;
            };
            // Exited, or its PID was reused for something else: nothing to follow.
            if bp.ended.is_some()
                || bp.pids.contains_key(&f.exec.pid)
                || !cluster::selects_exec(&bp.spec.target, self.pods.as_ref(), &f.exec)
            {
                continue;
            }
            self.arm_one(f.breakpoint, f.exec.pid);
        }
    }

    /// Arms breakpoint `id` in `pid` now; a failure goes to its errors.
    pub(super) fn arm_one(&mut self, id: u64, pid: u32) {
        let Some(bp) = self.breakpoints.get_mut(&id) else {
            return;
        };
        let at = Arming {
            session: &mut self.session,
            freezer: &mut self.freezer,
            hold_watched: &mut self.hold_watched,
            pod_groups: &mut self.pod_groups,
        };
        match at.arm_in(bp, pid) {
            Ok(p) => {
                tracing::info!(id, pid, "armed in a process");
                bp.pids.insert(pid, p);
            }
            // Its file's shared sites caught it; only following its requests failed,
            // because it has exited (a zombie not yet reaped counts: its `/proc` entry
            // stays, with nothing left to follow).
            Err(e)
                if !bp.shared.is_empty()
                    && (matches!(e, AgentError::NoSuchProcess { .. })
                        || crate::process::has_exited(pid)) =>
            {
                tracing::debug!(id, pid, "exited before followed");
            }
            Err(err) => bp.errors.push((pid, chain(&err))),
        }
    }
}

/// A breakpoint in one process.
pub(super) struct InProcess {
    pub process: TargetProcess,
    /// The process's own probe sites; empty when shared sites cover its file.
    pub slots: Vec<SlotId>,
    /// Probe sites that serve it, its own or shared: what status shows.
    pub sites: usize,
    /// It holds a use of the process's request tracking ([`Session::follow`]).
    pub followed: bool,
}

/// Probe sites shared by every process of one executable file.
pub(super) struct SharedFile {
    /// The file the probes are bound to (compared with [`FileKey::same_inode`]).
    pub file: FileKey,
    /// Its path, for status: as the agent named it, or as its first process did.
    pub path: String,
    pub slots: Vec<SlotId>,
}

/// The executable file `target` names, with the node cgroup it is limited to.
pub(super) fn target_file(target: &Target) -> Option<(&Path, Option<&NodeCgroup>)> {
    match target {
        Target::Matching(m) => m.file(),
        Target::Pid(_) | Target::Pods(_) => None,
    }
}

/// The kernel filter for a node cgroup: only its processes count.
pub(super) fn node_filter(cgroup: Option<&NodeCgroup>) -> Result<Option<CgroupFilter>, AgentError> {
    let Some(c) = cgroup else { return Ok(None) };
    let (id, level) = c.kernel_id().ok_or_else(|| AgentError::NodeCgroupGone {
        cgroup: c.path().to_owned(),
    })?;
    Ok(Some(CgroupFilter::Under { id, level }))
}

/// The options the kernel enforces for `bp`, with the kernel's hit limit.
fn options(bp: &Armed, kernel_hit_limit: u64) -> ArmOptions {
    let spec = &bp.spec;
    ArmOptions {
        breakpoint_id: spec.id,
        hit_limit: kernel_hit_limit,
        rate_per_sec: spec.rate_per_sec,
        scope_trace: spec.scope.trace_id.map(|t| t.0),
        header_bits: bp.header_bits,
        freeze: spec.freeze.map(|f| f.timeout),
    }
}

/// Binds `bp`'s probes to the executable file at `path` for all its processes, unless they
/// are bound to that file already. Returns the number of sites.
pub(super) fn arm_file(
    session: &mut Session,
    bp: &mut Armed,
    path: &Path,
    filter: Option<CgroupFilter>,
) -> Result<usize, AgentError> {
    let key = FileKey::at(path).ok_or_else(|| AgentError::ExecutableFile {
        path: path.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    if let Some(shared) = bp.shared.iter().find(|s| s.file.same_inode(&key)) {
        return Ok(shared.slots.len());
    }
    let in_file = |e: AgentError| AgentError::InFile {
        path: path.to_path_buf(),
        source: Box::new(e),
    };
    let spec = &bp.spec;
    let mut prepared = session
        .prepare_file(path, &spec.location, &spec.limits)
        .map_err(in_file)?;
    for (_, plan) in &prepared.sites {
        super::check_capture_scope(&spec.capture_paths, &spec.location, plan).map_err(in_file)?;
    }
    let compiled =
        compile_when(bp.when.as_ref(), &mut prepared.sites).map_err(|e| in_file(e.into()))?;
    let opts = options(bp, compiled.kernel_hit_limit(spec.hit_limit));
    let slots = session.arm_shared(&prepared, &opts, filter)?;
    tracing::info!(
        id = spec.id,
        file = %path.display(),
        sites = slots.len(),
        "armed for every process of the file"
    );
    let n = slots.len();
    // `/proc/PID/exe` names the file by the path its process sees.
    let shown = std::fs::read_link(path).unwrap_or_else(|_| path.to_path_buf());
    bp.shared.push(SharedFile {
        file: key,
        path: shown.display().to_string(),
        slots,
    });
    Ok(n)
}

/// What arming a breakpoint in one process touches, borrowed from the [`Manager`].
pub(super) struct Arming<'a> {
    pub session: &'a mut Session,
    pub freezer: &'a mut Freezer,
    pub hold_watched: &'a mut BTreeMap<u32, HoldWatch>,
    pub pod_groups: &'a mut PodGroups,
}

impl Arming<'_> {
    /// Arms `bp` in `pid`. When the breakpoint binds to files (its target names one, or
    /// chooses pods), the process's file gets shared sites (if it has none yet) and the
    /// process only has its requests followed; otherwise it gets sites of its own. For a
    /// `--freeze` breakpoint the process's threads are seized first, so the first hit can
    /// already stop; if that fails the breakpoint still captures and the reason is kept
    /// with its errors.
    pub fn arm_in(mut self, bp: &mut Armed, pid: u32) -> Result<InProcess, AgentError> {
        let spec = &bp.spec;
        let mut prepared = self.session.prepare(pid, &spec.location, &spec.limits)?;
        if spec.freeze.is_some() {
            seize_for_freeze(
                self.session,
                self.freezer,
                self.hold_watched,
                bp,
                &prepared,
                pid,
            );
        }
        let arm = match self.file_filter(bp, pid)? {
            Some(filter) => {
                // Through /proc/PID/exe: the process's own file, even if the path now
                // names a newer build, or lies in a container's filesystem.
                let path = prepared.target.exe_path();
                arm_file(self.session, bp, &path, filter).and_then(|sites| {
                    self.session.follow(&prepared)?;
                    Ok(InProcess {
                        process: prepared.target.clone(),
                        slots: Vec::new(),
                        sites,
                        followed: true,
                    })
                })
            }
            None => {
                let spec = &bp.spec;
                for (_, plan) in &prepared.sites {
                    super::check_capture_scope(&spec.capture_paths, &spec.location, plan)?;
                }
                let compiled = compile_when(bp.when.as_ref(), &mut prepared.sites)?;
                let opts = options(bp, compiled.kernel_hit_limit(spec.hit_limit));
                self.session.arm(&prepared, &opts).map(|slots| InProcess {
                    process: prepared.target.clone(),
                    sites: slots.len(),
                    slots,
                    followed: false,
                })
            }
        }?;
        // A frozen request outlives its breakpoint (one hit by default): keep following
        // which request the process's threads and tasks serve until the hold is over.
        if let Some(w) = self.hold_watched.get_mut(&pid).filter(|w| !w.tracking) {
            w.tracking = self.session.table().retain_tracking(pid);
        }
        Ok(arm)
    }

    /// `Some` when `bp` binds to `pid`'s file, with the kernel filter of its shared sites.
    /// A pod breakpoint first puts `pid`'s pod group into its set, so the process counts
    /// from the first hit. One whose pod group this agent cannot see gets sites of its own.
    fn file_filter(
        &mut self,
        bp: &mut Armed,
        pid: u32,
    ) -> Result<Option<Option<CgroupFilter>>, AgentError> {
        match &bp.spec.target {
            Target::Matching(_) => match target_file(&bp.spec.target) {
                Some((_, cgroup)) => Ok(Some(node_filter(cgroup)?)),
                None => Ok(None),
            },
            Target::Pods(_) => {
                let Some((group, _)) = self.pod_groups.learn(pid) else {
                    return Ok(None);
                };
                if !bp.pod_set.contains(&group) {
                    self.session.table().set_cgroup(bp.spec.id, group, true)?;
                    bp.pod_set.insert(group);
                }
                Ok(Some(Some(CgroupFilter::InSet(bp.spec.id))))
            }
            Target::Pid(_) => Ok(None),
        }
    }
}

/// Seizes `pid`'s threads and watches its cgroup's messages, for a `--freeze` breakpoint.
/// Failures go to the breakpoint's errors: it still captures.
fn seize_for_freeze(
    session: &mut Session,
    freezer: &mut Freezer,
    hold_watched: &mut std::collections::BTreeMap<u32, HoldWatch>,
    bp: &mut Armed,
    prepared: &PreparedBreakpoint,
    pid: u32,
) {
    let go = prepared
        .sites
        .first()
        .is_some_and(|(_, p)| p.language() == tracery_dwarf::SourceLanguage::Go);
    if go {
        bp.go_freeze = true;
        session.tracker().set_go_freeze_armed(true);
    }
    match freezer.seize(pid, prepared.executable.binary(), session.tracker()) {
        Ok(()) => {}
        // By design, not a failure: the request is frozen by holding its messages, and
        // each frozen request says so.
        Err(crate::freeze::freezer::FreezeError::Unstoppable { reason }) => {
            tracing::info!(pid, "{reason}");
        }
        Err(e) => bp.errors.push((
            pid,
            format!(
                "hits will not stop their thread: {}",
                tracery_model::error::chain(&e)
            ),
        )),
    }
    if let std::collections::btree_map::Entry::Vacant(slot) = hold_watched.entry(pid) {
        match session.table().hold_watch(pid) {
            Ok(dir) => {
                slot.insert(HoldWatch {
                    dir,
                    tracking: false,
                });
            }
            Err(e) => bp.errors.push((pid, tracery_model::error::chain(&e))),
        }
    }
}

/// Undoes `bp` in one process: detaches its own sites, then drops its request tracking
/// (detaching tracking programs takes longer; the process stops trapping first).
/// Counts the kernel's drops of those sites into the breakpoint.
pub(super) fn disarm_in(
    session: &mut Session,
    bp: &mut Armed,
    p: InProcess,
) -> Result<(), AgentError> {
    for slot in p.slots {
        bp.kernel_drops += session.counters(slot).map_or(0, |c| c.dropped);
        session.disarm(slot)?;
    }
    if p.followed {
        session.unfollow(p.process.pid());
    }
    Ok(())
}

/// Undoes `bp` everywhere: its shared sites first, so no process traps any more while
/// the slower part, dropping each process's request tracking, runs.
pub(super) fn disarm_all(session: &mut Session, bp: &mut Armed) -> Result<(), AgentError> {
    for shared in std::mem::take(&mut bp.shared) {
        for slot in shared.slots {
            bp.kernel_drops += session.counters(slot).map_or(0, |c| c.dropped);
            session.disarm(slot)?;
        }
    }
    for group in std::mem::take(&mut bp.pod_set) {
        session.table().set_cgroup(bp.spec.id, group, false)?;
    }
    for (_, p) in std::mem::take(&mut bp.pids) {
        disarm_in(session, bp, p)?;
    }
    Ok(())
}
