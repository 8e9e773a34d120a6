//! The Python breakpoints of one agent: their watchpoints (one per site and thread, inherited
//! by threads started later), the kernel's records, and snapshots.
//!
//! The watchpoint program runs in the agent's one eBPF object (the [`ProbeTable`]'s), so it
//! reads the trace tracker's per-thread map: trace scope, header filters and the trace id of
//! each hit work as for native breakpoints, and each armed process is tracked as one.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime},
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, RingBuf},
    programs::{
        perf_event::{
            BreakpointConfig, PerfBreakpointLength, PerfBreakpointType, PerfEventConfig,
            PerfEventLink, PerfEventScope, SamplePolicy,
        },
        PerfEvent,
    },
};
use tracery_common::{
    python::{names, PyHit, PySite, PySiteKey, PY_MAX_CHILDREN},
    ProbeConfig,
};
use tracery_model::{condition::Expr, error::chain, Location, SourceLanguage};

use super::{
    code::CodeInfo,
    decode,
    interpreter::{self, Interpreter},
    locate::{self, PyLocation, PySiteSpec},
    memory::Mem,
    PythonError,
};
use crate::{
    capture::probes::ProbeTable,
    capture::snapshot::{hex_id, Clock, Snapshot},
    capture::when::when_holds,
    manager::{BreakpointSpec, BreakpointStatus, Ended, Target},
};

/// Hardware watchpoints one thread has (x86-64: DR0 to DR3).
pub const DEBUG_REGISTERS: usize = 4;

/// One watched instruction in one process.
pub(super) struct Site {
    key: PySiteKey,
    code: CodeInfo,
    line: u32,
    /// One watchpoint per thread that existed at attach; threads they start inherit it.
    /// Owned: dropping one closes its watchpoint.
    links: Vec<PerfEventLink>,
}

pub(super) struct PyBreakpoint {
    pub(super) spec: BreakpointSpec,
    pub(super) when: Option<Expr>,
    /// Tracker bit of `spec.scope.header`, as a mask (0 for none).
    header_bits: u32,
    /// pid -> its sites. Each process in it holds one use of its trace tracking.
    pub(super) pids: BTreeMap<u32, Vec<Site>>,
    hits: u64,
    filtered: u64,
    over_limit: u64,
    pub(super) errors: Vec<(u32, String)>,
    exited: Vec<u32>,
    pub(super) ended: Option<Ended>,
}

/// The agent's Python breakpoints (created at the first one: it loads the watchpoint program).
pub struct PythonRuntime {
    sites: BpfHashMap<MapData, PySiteKey, PySite>,
    ring: RingBuf<MapData>,
    pub(super) breakpoints: BTreeMap<u64, PyBreakpoint>,
    /// Breakpoints waiting for processes that started after them to be ready.
    pub(super) pending: crate::late_arming::LateArming,
    interpreters: HashMap<u32, Interpreter>,
    codes: HashMap<(u32, u64), Option<CodeInfo>>,
    clock: Clock,
}

fn kernel(
    action: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> PythonError {
    PythonError::Kernel {
        action: action.into(),
        source: Box::new(e),
    }
}

impl PythonRuntime {
    /// Loads the watchpoint program into `table`'s eBPF object, where it shares the trace
    /// tracker's maps with the native programs.
    pub fn start(table: &mut ProbeTable) -> Result<Self, PythonError> {
        let ebpf = table.ebpf();
        let prog: &mut PerfEvent = ebpf
            .program_mut(names::PY_WATCH)
            .ok_or_else(|| {
                kernel(
                    "find the Python program",
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                )
            })?
            .try_into()
            .map_err(|e| kernel("use the Python program", e))?;
        prog.load()
            .map_err(|e| kernel("load the Python watchpoint program", e))?;
        let sites = BpfHashMap::try_from(ebpf.take_map(names::PY_SITES).ok_or_else(|| {
            kernel(
                "find PY_SITES",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?)
        .map_err(|e| kernel("open PY_SITES", e))?;
        let ring = RingBuf::try_from(ebpf.take_map(names::PY_HITS).ok_or_else(|| {
            kernel(
                "find PY_HITS",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?)
        .map_err(|e| kernel("open PY_HITS", e))?;
        Ok(Self {
            sites,
            ring,
            breakpoints: BTreeMap::new(),
            pending: Default::default(),
            interpreters: HashMap::new(),
            codes: HashMap::new(),
            clock: Clock::new(),
        })
    }

    /// True when breakpoint `id` is a Python breakpoint.
    pub fn has(&self, id: u64) -> bool {
        self.breakpoints.contains_key(&id)
    }

    /// Arms `spec` in every process of `pids`. With `fail_fast` (a PID target) the first
    /// failure is returned; otherwise failures are kept per process in the status.
    pub fn add(
        &mut self,
        table: &mut ProbeTable,
        spec: BreakpointSpec,
        pids: Vec<u32>,
        fail_fast: bool,
    ) -> Result<BreakpointStatus, PythonError> {
        if spec.freeze.is_some() {
            return Err(PythonError::Unsupported {
                what: "--freeze",
                hint: "the native freeze stops the hitting thread at the breakpoint, and a \
                       Python thread stops there holding the GIL, which would stop every \
                       request of the process, not only the frozen trace; freeze the trace \
                       with a breakpoint in a native service it passes through",
            });
        }
        let when = match spec.when.as_deref() {
            Some(text) => {
                Some(
                    tracery_model::condition::parse(text).map_err(|e| PythonError::When {
                        condition: text.to_owned(),
                        reason: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        self.remove(table, spec.id);
        let header_bits = match &spec.scope.header {
            Some((name, value)) => {
                let bit = table.tracker().header_bit(name, value).map_err(|e| {
                    kernel(format!("register the --header {name}={value} filter"), e)
                })?;
                1 << bit
            }
            None => 0,
        };
        let location = PyLocation::parse(&spec.location);
        let mut bp = PyBreakpoint {
            spec,
            when,
            header_bits,
            pids: BTreeMap::new(),
            hits: 0,
            filtered: 0,
            over_limit: 0,
            errors: Vec::new(),
            exited: Vec::new(),
            ended: None,
        };
        for pid in pids {
            match self.arm_in(table, &bp, &location, pid) {
                Ok(sites) => {
                    bp.pids.insert(pid, sites);
                }
                Err(e) if fail_fast => {
                    let id = bp.spec.id;
                    self.breakpoints.insert(id, bp);
                    self.remove(table, id);
                    return Err(e);
                }
                Err(e) => bp.errors.push((pid, chain(&e))),
            }
        }
        let id = bp.spec.id;
        self.breakpoints.insert(id, bp);
        Ok(self.status_of(id).expect("just inserted"))
    }

    fn interpreter(&mut self, pid: u32) -> Result<Interpreter, PythonError> {
        if let Some(i) = self.interpreters.get(&pid) {
            return Ok(i.clone());
        }
        let i = Interpreter::open(pid)?;
        self.interpreters.insert(pid, i.clone());
        Ok(i)
    }

    /// Watchpoints of `pid` in use by other breakpoints.
    fn used_in(&self, pid: u32) -> usize {
        self.breakpoints
            .values()
            .filter_map(|b| b.pids.get(&pid))
            .map(Vec::len)
            .sum()
    }

    /// Arms `bp` in `pid`: its sites' watchpoints, and one use of the process's trace
    /// tracking (which thread serves which request), kept while the process is in `bp.pids`.
    pub(super) fn arm_in(
        &mut self,
        table: &mut ProbeTable,
        bp: &PyBreakpoint,
        location: &PyLocation,
        pid: u32,
    ) -> Result<Vec<Site>, PythonError> {
        let spec = &bp.spec;
        let interp = self.interpreter(pid)?;
        let specs = locate::resolve(&interp, location)?;
        let free = DEBUG_REGISTERS.saturating_sub(self.used_in(pid));
        if specs.len() > free {
            return Err(PythonError::TooManySites {
                pid,
                location: spec.location.clone(),
                wanted: specs.len(),
                free,
            });
        }
        table
            .track(pid, None, None)
            .map_err(|e| kernel(format!("follow the requests of PID {pid}"), e))?;
        let mut sites = Vec::new();
        for s in specs {
            match self.arm_site(table, bp, &interp, pid, s) {
                Ok(site) => sites.push(site),
                Err(e) => {
                    for site in sites {
                        self.disarm_site(site);
                    }
                    table.untrack(pid);
                    return Err(e);
                }
            }
        }
        Ok(sites)
    }

    fn arm_site(
        &mut self,
        table: &mut ProbeTable,
        bp: &PyBreakpoint,
        interp: &Interpreter,
        pid: u32,
        s: PySiteSpec,
    ) -> Result<Site, PythonError> {
        let spec = &bp.spec;
        let addr = s.code.unit_addr(s.unit);
        let key = PySiteKey { pid, _pad: 0, addr };
        // The native probe's rate fields, filled the native way.
        let mut rate = ProbeConfig::EMPTY;
        rate.set_rate(spec.rate_per_sec);
        let value = PySite {
            breakpoint_id: spec.id,
            code: s.code.addr,
            hit_limit: if spec.when.is_some() {
                0
            } else {
                spec.hit_limit
            },
            claimed: 0,
            spurious: 0,
            eval_start: interp.eval_loop.0,
            eval_end: interp.eval_loop.1,
            max_depth: u32::from(spec.limits.max_depth).max(1),
            max_children: u32::from(spec.limits.max_elements).clamp(1, PY_MAX_CHILDREN as u32),
            offsets: interp.kernel_offsets(),
            flags: if spec.scope.trace_id.is_some() {
                u32::from(ProbeConfig::FLAG_SCOPED)
            } else {
                0
            },
            header_bits: bp.header_bits,
            scope_trace: spec.scope.trace_id.map_or([0; 16], |t| t.0),
            rate_interval_ns: rate.rate_interval_ns,
            rate_burst_ns: rate.rate_burst_ns,
            rate_tat: 0,
            out_of_scope: 0,
            rate_limited: 0,
        };
        self.sites
            .insert(key, value, 0)
            .map_err(|e| kernel(format!("store the site of PID {pid}"), e))?;
        let mut site = Site {
            key,
            code: s.code,
            line: s.line,
            links: Vec::new(),
        };
        let prog: &mut PerfEvent = table
            .ebpf()
            .program_mut(names::PY_WATCH)
            .expect("loaded at start")
            .try_into()
            .expect("a perf_event program");
        for tid in interpreter::threads(pid) {
            let config = PerfEventConfig::Breakpoint(BreakpointConfig::Data {
                r#type: PerfBreakpointType::ReadWrite,
                address: addr,
                length: PerfBreakpointLength::Len2,
            });
            // Per thread, inherited by the threads it starts from now on.
            match prog.attach(
                config,
                PerfEventScope::OneProcess {
                    pid: tid,
                    cpu: None,
                },
                SamplePolicy::Period(1),
                true,
            ) {
                Ok(id) => match prog.take_link(id) {
                    Ok(link) => site.links.push(link),
                    Err(e) => {
                        self.disarm_site(site);
                        return Err(kernel("keep a watchpoint's link", e));
                    }
                },
                // The thread exited meanwhile.
                Err(_) if !std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists() => {}
                Err(e) => {
                    self.disarm_site(site);
                    return Err(kernel(
                        format!("open a watchpoint at {addr:#x} in thread {tid} of PID {pid}"),
                        e,
                    ));
                }
            }
        }
        Ok(site)
    }

    fn disarm_site(&mut self, site: Site) {
        // Dropping the links closes the watchpoints.
        drop(site.links);
        let _ = self.sites.remove(&site.key);
    }

    /// Removes a Python breakpoint and its watchpoints. Returns false if it did not exist.
    pub fn remove(&mut self, table: &mut ProbeTable, id: u64) -> bool {
        self.pending.forget_breakpoint(id);
        let Some(mut bp) = self.breakpoints.remove(&id) else {
            return false;
        };
        self.disarm(table, &mut bp);
        if let Some((name, value)) = &bp.spec.scope.header {
            table.tracker().release_header(name, value);
        }
        true
    }

    fn disarm(&mut self, table: &mut ProbeTable, bp: &mut PyBreakpoint) {
        for (pid, sites) in std::mem::take(&mut bp.pids) {
            for site in sites {
                self.disarm_site(site);
            }
            table.untrack(pid);
        }
    }

    /// The kernel's counters of `id`'s sites, summed: traps dropped as not a fetch by the
    /// watched frame (writes, other frames), fetches out of the trace scope, fetches over
    /// the rate limit.
    pub fn kernel_counters(&self, id: u64) -> KernelCounters {
        let mut c = KernelCounters::default();
        let Some(bp) = self.breakpoints.get(&id) else {
            return c;
        };
        for v in bp
            .pids
            .values()
            .flatten()
            .filter_map(|s| self.sites.get(&s.key, 0).ok())
        {
            c.spurious += v.spurious;
            c.out_of_scope += v.out_of_scope;
            c.rate_limited += v.rate_limited;
        }
        c
    }

    /// Open watchpoints (perf events) of `id` in `pid`.
    pub fn watchpoints(&self, id: u64, pid: u32) -> usize {
        self.breakpoints
            .get(&id)
            .and_then(|b| b.pids.get(&pid))
            .map_or(0, |s| s.iter().map(|s| s.links.len()).sum())
    }

    /// Drops what is cached of process `pid` (its interpreter, its code objects).
    pub(super) fn forget_process(&mut self, pid: u32) {
        self.interpreters.remove(&pid);
        self.codes.retain(|(p, _), _| *p != pid);
    }

    fn code(&mut self, pid: u32, addr: u64) -> Option<CodeInfo> {
        self.codes
            .entry((pid, addr))
            .or_insert_with(|| CodeInfo::read(&Mem::new(pid), addr).ok())
            .clone()
    }

    /// Takes the records that arrived, ends breakpoints at their hit limit or expiry, arms
    /// new processes that became ready, and forgets processes that exited.
    pub fn tick(&mut self, table: &mut ProbeTable) -> Vec<Snapshot> {
        let mut records = Vec::new();
        while let Some(item) = self.ring.next() {
            if item.len() >= std::mem::size_of::<PyHit>() {
                // SAFETY: the kernel wrote a whole `PyHit` (repr(C), integers and byte
                // arrays only: any bytes are valid); read unaligned from the ring.
                let hit: PyHit = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                records.push(Box::new(hit));
            }
        }
        let mut out = Vec::new();
        for hit in records {
            if let Some(s) = self.snapshot(&hit) {
                out.push(s);
            }
        }
        self.expire(table);
        self.arm_pending(table);
        out
    }

    fn snapshot(&mut self, hit: &PyHit) -> Option<Snapshot> {
        let (line, code) = {
            let bp = self.breakpoints.get(&hit.breakpoint_id)?;
            let site = bp
                .pids
                .get(&hit.pid)?
                .iter()
                .find(|s| s.key.addr == hit.site_addr)?;
            (site.line, site.code.clone())
        };
        let pid = hit.pid;
        let variables = decode::variables(hit, &code);
        let stack = decode::stack(hit, line, |addr| self.code(pid, addr));
        let bp = self.breakpoints.get_mut(&hit.breakpoint_id)?;
        if bp.ended.is_some() {
            bp.over_limit += 1;
            return None;
        }
        if !when_holds(bp.when.as_ref(), &variables) {
            bp.filtered += 1;
            return None;
        }
        bp.hits += 1;
        if bp.spec.hit_limit != 0 && bp.hits >= bp.spec.hit_limit {
            bp.ended = Some(Ended::HitLimit);
        }
        Some(Snapshot {
            breakpoint_id: hit.breakpoint_id,
            pid,
            tid: hit.tid,
            time: self.clock.wall(hit.time_ns),
            location: Location {
                function: code.qualname.clone(),
                file: code.filename.clone(),
                line,
                address: hit.site_addr,
            },
            variables,
            stack,
            trace_id: hex_id(&hit.trace_id),
            span_id: hex_id(&hit.span_id),
            language: SourceLanguage::Python,
            databases: Vec::new(),
            pod: None,
        })
    }

    fn expire(&mut self, table: &mut ProbeTable) {
        let now = SystemTime::now();
        let mut gone = Vec::new();
        for (id, bp) in &mut self.breakpoints {
            if bp.ended.is_none() && bp.spec.expires_at.is_some_and(|t| now >= t) {
                bp.ended = Some(Ended::Expired);
            }
            gone.extend(
                bp.pids
                    .keys()
                    .filter(|pid| !crate::process::pid_exists(**pid))
                    .map(|pid| (*id, *pid)),
            );
        }
        for (id, pid) in gone {
            let Some(bp) = self.breakpoints.get_mut(&id) else {
                continue;
            };
            let sites = bp.pids.remove(&pid).unwrap_or_default();
            if matches!(bp.spec.target, Target::Pid(_)) {
                bp.exited.push(pid);
                bp.ended.get_or_insert(Ended::TargetExited);
            }
            // The kernel's site entries go too: a dead process's would hold their slots.
            for site in sites {
                self.disarm_site(site);
            }
            table.untrack(pid);
            self.forget_process(pid);
        }
        let ending: Vec<u64> = self
            .breakpoints
            .iter()
            .filter(|(_, bp)| bp.ended.is_some() && !bp.pids.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in ending {
            let mut bp = self.breakpoints.remove(&id).expect("listed above");
            self.disarm(table, &mut bp);
            self.breakpoints.insert(id, bp);
        }
    }

    /// Waits up to `timeout` for records, then takes them (for one-shot callers and tests).
    pub fn wait(&mut self, table: &mut ProbeTable, timeout: Duration) -> Vec<Snapshot> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.tick(table);
            if !got.is_empty() || std::time::Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// State of every Python breakpoint.
    pub fn status(&self) -> Vec<BreakpointStatus> {
        self.breakpoints
            .keys()
            .filter_map(|id| self.status_of(*id))
            .collect()
    }

    /// State of one Python breakpoint.
    pub fn status_of(&self, id: u64) -> Option<BreakpointStatus> {
        let bp = self.breakpoints.get(&id)?;
        Some(BreakpointStatus {
            id,
            files: Vec::new(),
            processes: bp.pids.iter().map(|(p, s)| (*p, s.len())).collect(),
            hits: bp.hits,
            filtered: bp.filtered,
            kernel_drops: 0,
            over_limit: bp.over_limit,
            errors: bp.errors.clone(),
            exited: bp.exited.clone(),
            ended: bp.ended.clone(),
        })
    }
}

/// Kernel counters of one Python breakpoint (see [`PythonRuntime::kernel_counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub spurious: u64,
    pub out_of_scope: u64,
    pub rate_limited: u64,
}
