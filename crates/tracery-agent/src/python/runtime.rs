//! The Python breakpoints of one agent: their watchpoints (one per site and thread, inherited
//! by threads started later), the kernel's records, and snapshots.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime},
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, RingBuf},
    programs::{
        perf_event::{
            BreakpointConfig, PerfBreakpointLength, PerfBreakpointType, PerfEventConfig,
            PerfEventLinkId, PerfEventScope, SamplePolicy,
        },
        PerfEvent,
    },
    Ebpf, EbpfLoader,
};
use tracery_common::python::{names, PyHit, PySite, PySiteKey, PY_MAX_CHILDREN};
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
    capture::snapshot::{Clock, Snapshot},
    capture::when::when_holds,
    manager::{BreakpointSpec, BreakpointStatus, Ended, Target},
};

/// Hardware watchpoints one thread has (x86-64: DR0 to DR3).
pub const DEBUG_REGISTERS: usize = 4;

/// One watched instruction in one process.
struct Site {
    key: PySiteKey,
    code: CodeInfo,
    line: u32,
    /// One watchpoint per thread that existed at attach; threads they start inherit it.
    links: Vec<PerfEventLinkId>,
}

struct PyBreakpoint {
    spec: BreakpointSpec,
    when: Option<Expr>,
    /// pid -> its sites.
    pids: BTreeMap<u32, Vec<Site>>,
    hits: u64,
    filtered: u64,
    over_limit: u64,
    errors: Vec<(u32, String)>,
    exited: Vec<u32>,
    ended: Option<Ended>,
}

/// The agent's Python breakpoints (created at the first one: it loads the watchpoint program).
pub struct PythonRuntime {
    ebpf: Ebpf,
    sites: BpfHashMap<MapData, PySiteKey, PySite>,
    ring: RingBuf<MapData>,
    breakpoints: BTreeMap<u64, PyBreakpoint>,
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
    /// Loads the watchpoint program (its own copy of the agent's eBPF object, with the
    /// native capture's large maps shrunk: only the Python maps are used from it).
    pub fn start() -> Result<Self, PythonError> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(tracery_common::names::HITS, 4096)
            .load(crate::capture::loader::OBJECT)
            .map_err(|e| kernel("load the eBPF object", e))?;
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
            ebpf,
            sites,
            ring,
            breakpoints: BTreeMap::new(),
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
        spec: BreakpointSpec,
        pids: Vec<u32>,
        fail_fast: bool,
    ) -> Result<BreakpointStatus, PythonError> {
        if spec.freeze.is_some() {
            return Err(PythonError::Unsupported {
                what: "--freeze",
                hint: "freeze the trace with a breakpoint in a native service it passes through",
            });
        }
        if spec.scope.trace_id.is_some() || spec.scope.header.is_some() {
            return Err(PythonError::Unsupported {
                what: "--trace-id and --header",
                hint: "thread attribution of Python hits is not done yet; use --when on a \
                       variable of the request",
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
        self.remove(spec.id);
        let location = PyLocation::parse(&spec.location);
        let mut bp = PyBreakpoint {
            spec,
            when,
            pids: BTreeMap::new(),
            hits: 0,
            filtered: 0,
            over_limit: 0,
            errors: Vec::new(),
            exited: Vec::new(),
            ended: None,
        };
        for pid in pids {
            match self.arm_in(&bp.spec, &location, pid) {
                Ok(sites) => {
                    bp.pids.insert(pid, sites);
                }
                Err(e) if fail_fast => {
                    let id = bp.spec.id;
                    self.breakpoints.insert(id, bp);
                    self.remove(id);
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

    fn arm_in(
        &mut self,
        spec: &BreakpointSpec,
        location: &PyLocation,
        pid: u32,
    ) -> Result<Vec<Site>, PythonError> {
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
        let mut sites = Vec::new();
        for s in specs {
            match self.arm_site(spec, &interp, pid, s) {
                Ok(site) => sites.push(site),
                Err(e) => {
                    for site in sites {
                        self.disarm_site(site);
                    }
                    return Err(e);
                }
            }
        }
        Ok(sites)
    }

    fn arm_site(
        &mut self,
        spec: &BreakpointSpec,
        interp: &Interpreter,
        pid: u32,
        s: PySiteSpec,
    ) -> Result<Site, PythonError> {
        let addr = s.code.unit_addr(s.unit);
        let key = PySiteKey { pid, _pad: 0, addr };
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
        let prog: &mut PerfEvent = self
            .ebpf
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
                Ok(link) => site.links.push(link),
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
        if let Some(prog) = self.ebpf.program_mut(names::PY_WATCH) {
            let prog: &mut PerfEvent = prog.try_into().expect("a perf_event program");
            for link in site.links {
                if let Err(e) = prog.detach(link) {
                    tracing::warn!(pid = site.key.pid, "cannot close a Python watchpoint: {e}");
                }
            }
        }
        let _ = self.sites.remove(&site.key);
    }

    /// Removes a Python breakpoint and its watchpoints. Returns false if it did not exist.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(mut bp) = self.breakpoints.remove(&id) else {
            return false;
        };
        self.disarm(&mut bp);
        true
    }

    fn disarm(&mut self, bp: &mut PyBreakpoint) {
        for (_, sites) in std::mem::take(&mut bp.pids) {
            for site in sites {
                self.disarm_site(site);
            }
        }
    }

    /// Watchpoint traps the kernel dropped for `id` (writes, other frames), per process.
    pub fn spurious(&self, id: u64) -> u64 {
        let Some(bp) = self.breakpoints.get(&id) else {
            return 0;
        };
        bp.pids
            .values()
            .flatten()
            .filter_map(|s| self.sites.get(&s.key, 0).ok())
            .map(|v| v.spurious)
            .sum()
    }

    /// Open watchpoints (perf events) of `id` in `pid`.
    pub fn watchpoints(&self, id: u64, pid: u32) -> usize {
        self.breakpoints
            .get(&id)
            .and_then(|b| b.pids.get(&pid))
            .map_or(0, |s| s.iter().map(|s| s.links.len()).sum())
    }

    fn code(&mut self, pid: u32, addr: u64) -> Option<CodeInfo> {
        self.codes
            .entry((pid, addr))
            .or_insert_with(|| CodeInfo::read(&Mem::new(pid), addr).ok())
            .clone()
    }

    /// Takes the records that arrived, ends breakpoints at their hit limit or expiry, and
    /// forgets processes that exited.
    pub fn tick(&mut self) -> Vec<Snapshot> {
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
        self.expire();
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
            trace_id: None,
            span_id: None,
            language: SourceLanguage::Python,
            databases: Vec::new(),
            pod: None,
        })
    }

    fn expire(&mut self) {
        let now = SystemTime::now();
        let mut ending = Vec::new();
        for (id, bp) in &mut self.breakpoints {
            if bp.ended.is_none() && bp.spec.expires_at.is_some_and(|t| now >= t) {
                bp.ended = Some(Ended::Expired);
            }
            let gone: Vec<u32> = bp
                .pids
                .keys()
                .copied()
                .filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
                .collect();
            for pid in gone {
                bp.pids.remove(&pid);
                self.interpreters.remove(&pid);
                self.codes.retain(|(p, _), _| *p != pid);
                if matches!(bp.spec.target, Target::Pid(_)) {
                    bp.exited.push(pid);
                    bp.ended.get_or_insert(Ended::TargetExited);
                }
            }
            if bp.ended.is_some() && !bp.pids.is_empty() {
                ending.push(*id);
            }
        }
        for id in ending {
            let mut bp = self.breakpoints.remove(&id).expect("listed above");
            self.disarm(&mut bp);
            self.breakpoints.insert(id, bp);
        }
    }

    /// Waits up to `timeout` for records, then takes them (for one-shot callers and tests).
    pub fn wait(&mut self, timeout: Duration) -> Vec<Snapshot> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.tick();
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

impl Drop for PythonRuntime {
    fn drop(&mut self) {
        // Closing every watchpoint leaves each process as it was found.
        let ids: Vec<u64> = self.breakpoints.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
    }
}
