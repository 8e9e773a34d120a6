//! A capture session: breakpoints resolved in processes, armed, and their hits decoded.
//!
//! [`Session::prepare`] does the DWARF work (no privileges needed beyond reading the
//! process's executable) with the session's [`Executables`], so every process and
//! breakpoint of one file shares its DWARF context; [`Session`] owns the kernel side and
//! turns records into [`Snapshot`]s.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tracery_common::{regs::pt, HitHeader, ProbeConfig, ProbeState};
use tracery_dwarf::{CaptureLimits, CapturePlan, Executable, LoadBias, ProbeSite, SourceLanguage};

use crate::{
    capture::executables::Executables,
    capture::probes::{AttachTarget, ProbeTable, ProgramKind, SlotId},
    capture::ring::{HitReader, RawHit},
    capture::snapshot::{hex_id, Clock, Location, Snapshot, StackFrame},
    error::AgentError,
    freeze::tracking::{GoProcess, TokioProcess},
    process::TargetProcess,
    sys,
};

/// Most frames unwound per hit.
const MAX_FRAMES: usize = 64;

/// A location resolved in one process and compiled into capture plans, ready to arm.
pub struct PreparedBreakpoint {
    pub target: TargetProcess,
    /// The process's executable, shared with every other process and site of that file.
    pub executable: Arc<Executable>,
    pub bias: LoadBias,
    /// End of the main thread's stack, so the kernel's stack copy never runs past it.
    pub stack_top: Option<u64>,
    /// Every address the location maps to, each with its plan.
    pub sites: Vec<(ProbeSite, CapturePlan)>,
}

/// Resolves `location` in the executable of `pid` and compiles a plan for each site, with
/// an executable loaded for this call alone: for one-shot callers. An agent uses
/// [`Session::prepare`], which shares executables between calls.
pub fn prepare(
    pid: u32,
    location: &str,
    limits: &CaptureLimits,
) -> Result<PreparedBreakpoint, AgentError> {
    let target = TargetProcess::open(pid)?;
    let executable = Arc::new(Executable::open(target.exe_path())?);
    prepare_in(target, executable, location, limits)
}

fn prepare_in(
    target: TargetProcess,
    executable: Arc<Executable>,
    location: &str,
    limits: &CaptureLimits,
) -> Result<PreparedBreakpoint, AgentError> {
    let bias = target.load_bias(executable.binary())?;
    let stack_top = target.main_stack_top();
    let sites = plan_sites(&executable, location, limits)?;
    Ok(PreparedBreakpoint {
        target,
        executable,
        bias,
        stack_top,
        sites,
    })
}

/// Every site `location` maps to in `executable`, each with its plan.
fn plan_sites(
    executable: &Executable,
    location: &str,
    limits: &CaptureLimits,
) -> Result<Vec<(ProbeSite, CapturePlan)>, AgentError> {
    let sites = executable.resolve(location)?;
    let mut planned = Vec::with_capacity(sites.len());
    for site in sites {
        let plan = executable
            .plan(site.address, limits)
            .map_err(|source| AgentError::Plan {
                address: site.address.to_string(),
                source,
            })?;
        // Off an instruction the kernel would single-step, when that changes nothing the
        // capture reads: the single step is most of a hit's cost on a VM.
        planned.push(executable.step_free(&site, &plan).unwrap_or((site, plan)));
    }
    Ok(planned)
}

/// What the tracker hooks in `bp`'s process: Go's goroutine creation, or tokio's tasks.
fn runtime_hooks(bp: &PreparedBreakpoint) -> (Option<GoProcess>, Option<TokioProcess>) {
    if is_go(&bp.sites) {
        (Some(go_process(&bp.executable, bp.target.exe_path())), None)
    } else {
        (None, tokio_process(&bp.executable, bp.target.exe_path()))
    }
}

/// True when the sites are in Go code.
fn is_go(sites: &[(ProbeSite, CapturePlan)]) -> bool {
    sites
        .first()
        .is_some_and(|(_, plan)| plan.language() == SourceLanguage::Go)
}

/// The kernel config of one site, relocated by `bias`, with `opts` applied.
fn site_config(plan: &CapturePlan, bias: LoadBias, opts: &ArmOptions, go: bool) -> ProbeConfig {
    let mut config = plan.relocate(bias);
    config.breakpoint_id = opts.breakpoint_id;
    config.hit_limit = opts.hit_limit;
    config.set_rate(opts.rate_per_sec);
    config.header_bits = opts.header_bits;
    if let Some(t) = opts.scope_trace {
        config.scope_trace = t;
        config.flags |= ProbeConfig::FLAG_SCOPED;
    }
    if go {
        config.flags |= ProbeConfig::FLAG_GO;
    }
    if let Some(timeout) = opts.freeze {
        config.flags |= ProbeConfig::FLAG_FREEZE;
        config.freeze_ns = timeout.as_nanos().min(u128::from(u64::MAX)) as u64;
    }
    config
}

/// Limits the kernel enforces for one breakpoint.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArmOptions {
    /// Copied into every record, for the caller to tell breakpoints apart.
    pub breakpoint_id: u64,
    /// Records each site emits before going quiet; 0 for no limit.
    pub hit_limit: u64,
    /// Records per second per site; 0 for no limit.
    pub rate_per_sec: u32,
    /// Only hits of requests of this trace (`--trace-id`).
    pub scope_trace: Option<[u8; 16]>,
    /// Only hits of requests that carried these `--header` filters (tracker bits).
    pub header_bits: u32,
    /// Freeze the hit's request for this long (`--freeze`): hold its messages, and trap
    /// the hitting thread when the agent has seized it.
    pub freeze: Option<Duration>,
}

/// A hit whose thread the kernel sent the freeze trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrappedHit {
    pub breakpoint_id: u64,
    pub seq: u64,
    pub pid: u32,
    pub tid: u32,
    /// Go: the goroutine to stop at its next system call (the trap comes later).
    pub go_g: Option<u64>,
}

/// A prepared breakpoint in an executable file, for every process that runs it.
pub struct PreparedFile {
    /// The file, as the agent sees it; its inode is what the probes bind to.
    pub path: std::path::PathBuf,
    pub executable: Arc<Executable>,
    /// Every address the location maps to, each with its plan.
    pub sites: Vec<(ProbeSite, CapturePlan)>,
}

/// Which tasks' hits count at a shared site, as the kernel tells cgroups apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupFilter {
    /// Tasks in one cgroup v2 subtree (a node's).
    Under {
        /// The cgroup's id (its directory's inode).
        id: u64,
        /// Its depth below the root (the root is 0).
        level: u32,
    },
    /// Tasks in, or below, any cgroup of a set the caller keeps with
    /// [`ProbeTable::set_cgroup`](crate::ProbeTable::set_cgroup) (chosen pods).
    InSet(u64),
}

struct ArmedSite {
    site: ProbeSite,
    plan: CapturePlan,
    executable: Arc<Executable>,
    /// The one process of the site with its load bias; `None` for a shared site, whose
    /// hits carry their bias in their instruction pointer.
    process: Option<(TargetProcess, LoadBias)>,
}

impl ArmedSite {
    /// The load bias of the process that made `hit`.
    fn bias(&self, hit: &RawHit) -> LoadBias {
        match &self.process {
            Some((_, bias)) => *bias,
            None => LoadBias(hit.header.regs[pt::RIP as usize].wrapping_sub(self.plan.address().0)),
        }
    }
}

/// The kernel side of capturing: armed sites and the hits they produce.
pub struct Session {
    table: ProbeTable,
    reader: HitReader,
    armed: HashMap<SlotId, Arc<ArmedSite>>,
    /// Disarmed sites kept until their slot is reused, so records still in the ring buffer
    /// decode instead of being lost.
    retired: HashMap<SlotId, Arc<ArmedSite>>,
    clock: Clock,
    /// Records whose slot was unknown or reused (counted, never silent).
    pub undecodable: u64,
    trapped: Vec<TrappedHit>,
    executables: Executables,
}

impl Session {
    /// Loads the eBPF programs. Needs root or CAP_BPF + CAP_PERFMON.
    pub fn start() -> Result<Self, AgentError> {
        let mut table = ProbeTable::load()?;
        let reader = table.take_reader()?;
        Ok(Self {
            table,
            reader,
            armed: HashMap::new(),
            retired: HashMap::new(),
            clock: Clock::new(),
            undecodable: 0,
            trapped: Vec::new(),
            executables: Executables::default(),
        })
    }

    /// Resolves `location` in the executable of `pid` and compiles a plan for each site. The
    /// executable comes from the session's cache: a second process of one file, or a second
    /// breakpoint in it, reuses its DWARF context, and a location or plan prepared before
    /// is not prepared again.
    pub fn prepare(
        &mut self,
        pid: u32,
        location: &str,
        limits: &CaptureLimits,
    ) -> Result<PreparedBreakpoint, AgentError> {
        let target = TargetProcess::open(pid)?;
        let executable = self.executables.get(&target)?;
        let prepared = prepare_in(target, executable, location, limits);
        // Indexing a binary and compiling plans allocate and free hundreds of MiB of small
        // blocks; glibc keeps freed heap mapped unless asked, and an agent that armed once
        // would hold that peak for good.
        sys::trim_heap();
        prepared
    }

    /// The executables loaded by this session.
    pub fn executables(&self) -> &Executables {
        &self.executables
    }

    /// Starts reporting exec events (see [`ProbeTable::watch_execs`]).
    pub fn watch_execs(&mut self) -> Result<crate::exec_watch::ExecWatcher, AgentError> {
        self.table.watch_execs()
    }

    /// Attaches every site of `bp`; on failure, detaches what it attached.
    pub fn arm(
        &mut self,
        bp: &PreparedBreakpoint,
        opts: &ArmOptions,
    ) -> Result<Vec<SlotId>, AgentError> {
        let mut slots = Vec::new();
        let go = is_go(&bp.sites);
        let (go_proc, tokio_proc) = runtime_hooks(bp);
        for (site, plan) in &bp.sites {
            let mut config = site_config(plan, bp.bias, opts, go);
            config.stack_top = bp.stack_top.unwrap_or(0);
            let target = AttachTarget {
                path: bp.target.exe_path(),
                offset: site.file_offset.0,
                pid: Some(bp.target.pid()),
            };
            let armed = self
                .table
                .track(bp.target.pid(), go_proc.as_ref(), tokio_proc.as_ref())
                .and_then(|()| {
                    self.table
                        .arm(ProgramKind::Capture, target, &config)
                        .inspect_err(|_| self.table.untrack(bp.target.pid()))
                });
            let site = ArmedSite {
                site: site.clone(),
                plan: plan.clone(),
                executable: bp.executable.clone(),
                process: Some((bp.target.clone(), bp.bias)),
            };
            if let Err(e) = self.record(armed, site, &mut slots) {
                for s in slots {
                    let _ = self.disarm(s);
                }
                return Err(e);
            }
        }
        Ok(slots)
    }

    /// Resolves `location` in the executable file at `path` and compiles a plan for each
    /// site, with no process needed: for [`Session::arm_shared`].
    pub fn prepare_file(
        &mut self,
        path: &std::path::Path,
        location: &str,
        limits: &CaptureLimits,
    ) -> Result<PreparedFile, AgentError> {
        let executable = self.executables.get_file(path)?;
        let sites = plan_sites(&executable, location, limits);
        sys::trim_heap();
        Ok(PreparedFile {
            path: path.to_path_buf(),
            executable,
            sites: sites?,
        })
    }

    /// Attaches every site of `file` once for every process that runs it, now and later:
    /// the kernel relocates each hit from its instruction pointer, so a process is caught
    /// from its first instruction, with no work per process. With `cgroup`, only tasks in
    /// that cgroup subtree count. On failure, detaches what it attached.
    pub fn arm_shared(
        &mut self,
        file: &PreparedFile,
        opts: &ArmOptions,
        cgroup: Option<CgroupFilter>,
    ) -> Result<Vec<SlotId>, AgentError> {
        let mut slots = Vec::new();
        let go = is_go(&file.sites);
        for (site, plan) in &file.sites {
            let mut config = site_config(plan, LoadBias(0), opts, go);
            config.flags |= ProbeConfig::FLAG_SHARED;
            config.link_address = plan.address().0;
            match cgroup {
                Some(CgroupFilter::Under { id, level }) => {
                    config.flags |= ProbeConfig::FLAG_IN_CGROUP;
                    config.cgroup_id = id;
                    config.cgroup_level = level;
                }
                Some(CgroupFilter::InSet(set)) => {
                    config.flags |= ProbeConfig::FLAG_IN_CGROUP_SET;
                    config.cgroup_set = set;
                }
                None => {}
            }
            let target = AttachTarget {
                path: file.path.clone(),
                offset: site.file_offset.0,
                pid: None,
            };
            let armed = self.table.arm(ProgramKind::Capture, target, &config);
            let site = ArmedSite {
                site: site.clone(),
                plan: plan.clone(),
                executable: file.executable.clone(),
                process: None,
            };
            if let Err(e) = self.record(armed, site, &mut slots) {
                for s in slots {
                    let _ = self.disarm(s);
                }
                return Err(e);
            }
        }
        Ok(slots)
    }

    /// Follows which request each thread (or goroutine, or tokio task) of `bp`'s process
    /// serves, with no probe site of its own: its hits come from shared sites. Undo with
    /// [`Session::unfollow`].
    pub fn follow(&mut self, bp: &PreparedBreakpoint) -> Result<(), AgentError> {
        let (go_proc, tokio_proc) = runtime_hooks(bp);
        self.table
            .track(bp.target.pid(), go_proc.as_ref(), tokio_proc.as_ref())
    }

    /// Drops the use of `pid`'s tracking that [`Session::follow`] took.
    pub fn unfollow(&mut self, pid: u32) {
        self.table.untrack(pid);
    }

    fn record(
        &mut self,
        armed: Result<SlotId, AgentError>,
        site: ArmedSite,
        slots: &mut Vec<SlotId>,
    ) -> Result<(), AgentError> {
        let slot = armed?;
        self.retired.remove(&slot);
        self.armed.insert(slot, Arc::new(site));
        slots.push(slot);
        Ok(())
    }

    /// Detaches one site.
    pub fn disarm(&mut self, slot: SlotId) -> Result<(), AgentError> {
        self.table.disarm(slot)?;
        if let Some(a) = self.armed.remove(&slot) {
            if let Some((target, _)) = &a.process {
                self.table.untrack(target.pid());
            }
            self.retired.insert(slot, a);
        }
        Ok(())
    }

    /// Header filters and trappable threads of the trace tracker.
    pub fn tracker(&mut self) -> &mut crate::freeze::tracking::Tracker {
        self.table.tracker()
    }

    /// The loaded programs: the message holder lives there.
    pub fn table(&mut self) -> &mut ProbeTable {
        &mut self.table
    }

    /// Takes the hits whose thread was sent the freeze trap since the last call.
    pub fn take_trapped(&mut self) -> Vec<TrappedHit> {
        std::mem::take(&mut self.trapped)
    }

    /// Kernel counters of one site.
    pub fn counters(&self, slot: SlotId) -> Result<ProbeState, AgentError> {
        self.table.state(slot)
    }

    /// Records the kernel could not write because the ring buffer was full, over all sites
    /// armed in this session, plus records user space could not decode.
    pub fn dropped(&self) -> u64 {
        let kernel: u64 = self
            .table
            .armed()
            .filter_map(|s| self.table.state(s).ok())
            .map(|s| s.dropped)
            .sum();
        kernel + self.reader.malformed + self.undecodable
    }

    /// The executable of `pid` with its load bias: the one its sites were armed with, else
    /// the session's cached one for that file (loaded now if there is none).
    pub fn executable_of(&mut self, pid: u32) -> Result<(Arc<Executable>, LoadBias), AgentError> {
        let armed = self
            .armed
            .values()
            .chain(self.retired.values())
            .find_map(|a| {
                let (target, bias) = a.process.as_ref()?;
                (target.pid() == pid && target.is_alive()).then(|| (a.executable.clone(), *bias))
            });
        if let Some(found) = armed {
            return Ok(found);
        }
        let target = TargetProcess::open(pid)?;
        let executable = self.executables.get(&target)?;
        let bias = target.load_bias(executable.binary())?;
        Ok((executable, bias))
    }

    /// Waits up to `timeout` for records and discards them undecoded; returns how many.
    /// For benchmarks that measure the kernel side alone.
    pub fn drain_raw(&mut self, timeout: Duration) -> Result<usize, AgentError> {
        Ok(self.reader.poll(timeout)?.len())
    }

    /// Waits up to `timeout` for hits and decodes them.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Snapshot>, AgentError> {
        Ok(self.poll_hits(timeout)?.into_iter().map(|h| h.0).collect())
    }

    /// [`Session::poll`], with the cgroup id each hitting task was in.
    pub fn poll_hits(&mut self, timeout: Duration) -> Result<Vec<(Snapshot, u64)>, AgentError> {
        let raw = self.reader.poll(timeout)?;
        let mut out = Vec::with_capacity(raw.len());
        for hit in raw {
            let slot = SlotId(hit.header.slot);
            let Some(site) = self.armed.get(&slot).or_else(|| self.retired.get(&slot)) else {
                self.undecodable += 1;
                continue;
            };
            let h = &hit.header;
            if h.flags & (HitHeader::HIT_TRAPPED | HitHeader::HIT_GO_PENDING) != 0 {
                self.trapped.push(TrappedHit {
                    breakpoint_id: h.breakpoint_id,
                    seq: h.seq,
                    pid: h.pid,
                    tid: h.tid,
                    go_g: (h.flags & HitHeader::HIT_GO_PENDING != 0)
                        .then_some(h.regs[pt::R14 as usize]),
                });
            }
            out.push((decode_hit(site, &hit, &self.clock), h.cgroup_id));
        }
        Ok(out)
    }
}

/// What the tracker needs to know about the Go executable `exe`.
fn go_process(exe: &Executable, path: std::path::PathBuf) -> GoProcess {
    let binary = exe.binary();
    let newproc_returns: Vec<u64> = binary
        .return_addresses("runtime.newproc1")
        .into_iter()
        .flatten()
        .filter_map(|a| Some(binary.file_offset(a)?.0))
        .collect();
    // `newproc.func1` is the closure `newproc` runs on the system stack:
    // `newg := newproc1(...); runqput(pp, newg, true)`.
    let newproc_queued: Vec<u64> = binary
        .call_sites("runtime.newproc.func1", "runtime.runqput")
        .into_iter()
        .flatten()
        .filter_map(|a| Some(binary.file_offset(a)?.0))
        .collect();
    let runtime = exe.go_runtime();
    GoProcess {
        newproc_queued,
        newproc_returns,
        g_status: runtime.map(|r| r.g_status),
        curg: runtime.and_then(|r| r.curg),
        path,
    }
}

/// The tokio task hooks of `exe`, if it runs tokio's scheduler.
fn tokio_process(exe: &Executable, path: std::path::PathBuf) -> Option<TokioProcess> {
    let binary = exe.binary();
    let offsets = |needle: &str| -> Vec<u64> {
        binary
            .symbols()
            .iter()
            .filter(|s| s.name.contains(needle))
            .filter_map(|s| Some(binary.file_offset(s.address)?.0))
            .collect()
    };
    // Legacy-mangled names: `tokio::runtime::task::raw::poll::<T, S>`, `dealloc` and
    // `tokio::runtime::task::list::OwnedTasks<S>::bind_inner`.
    let polls = offsets("5tokio7runtime4task3raw4poll17h");
    (!polls.is_empty()).then(|| TokioProcess {
        spawns: offsets("19OwnedTasks$LT$S$GT$10bind_inner17h"),
        deallocs: offsets("5tokio7runtime4task3raw7dealloc17h"),
        polls,
        runtime: exe.tokio_runtime(),
        path,
    })
}

fn decode_hit(a: &ArmedSite, hit: &RawHit, clock: &Clock) -> Snapshot {
    let h = &hit.header;
    tracing::debug!(
        slot = h.slot,
        seq = h.seq,
        data = hit.data.len(),
        stack = hit.stack.len(),
        "decoding hit"
    );
    let bias = a.bias(hit);
    let pc = bias.to_proc(a.site.address);
    let mut regs = h.regs;
    // The trap leaves the instruction pointer past the breakpoint; unwinding starts at it.
    regs[pt::RIP as usize] = pc.0;
    let exe = &a.executable;
    let mut variables = exe.decode(&a.plan, h, &hit.data);
    // Before the snapshot exists: no later path (link, store, export) sees a raw secret.
    // `--when` already ran, on the raw values, in the kernel.
    tracery_model::redact::active().variables(&mut variables);
    let stack = exe
        .stack(bias, &regs, regs[pt::RSP as usize], &hit.stack, MAX_FRAMES)
        .into_iter()
        .map(|f| StackFrame {
            address: bias.to_proc(f.address).0,
            function: f.function,
            file: f.file,
            line: f.line,
            inlined: f.inlined,
        })
        .collect();
    Snapshot {
        breakpoint_id: h.breakpoint_id,
        pid: h.pid,
        tid: h.tid,
        time: clock.wall(h.ktime_ns),
        location: Location {
            function: a.site.function.clone(),
            file: a.site.file.display().to_string(),
            line: a.site.line,
            address: pc.0,
        },
        variables,
        stack,
        trace_id: hex_id(&h.trace_id),
        span_id: hex_id(&h.span_id),
        language: a.plan.language(),
        databases: Vec::new(),
        pod: None,
    }
}
