//! The Node breakpoints of one agent: an inspector session per Node process they target,
//! their V8 breakpoints, hit counting, expiry, and detaching when nothing needs a process.

use std::{
    collections::{BTreeMap, HashMap},
    sync::mpsc,
    time::{Duration, SystemTime},
};

use chromiumoxide_cdp::cdp::js_protocol::{
    debugger::{DisableParams, EnableParams},
    runtime::{AddBindingParams, EvaluateParams, RemoveBindingParams},
};
use tracery_model::{error::chain, Location, SourceLanguage};

use super::{
    breakpoints::{self, Site, V8Breakpoint},
    cdp::CdpSession,
    condition::{self, Caps, BINDING},
    inspector::{self, Inspector},
    scope::ScopeName,
    values, NodeError,
};
use crate::{
    capture::snapshot::Snapshot,
    manager::{BreakpointSpec, BreakpointStatus, Ended},
};

mod new_processes;
mod quiet;

/// How long detaching waits for the inspector's port to close after `inspector.close()`.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// One Node process the agent holds a session with.
struct Process {
    inspector: Inspector,
    session: CdpSession,
}

/// One V8 breakpoint's site, found again from a hit's id.
struct SiteInfo {
    breakpoint: u64,
    pid: u32,
    names: Vec<ScopeName>,
    file: String,
    line: u32,
}

struct NodeBreakpoint {
    spec: BreakpointSpec,
    /// `spec.when`, parsed.
    when: Option<tracery_model::condition::Expr>,
    /// pid → its V8 breakpoints, with their site keys.
    pids: BTreeMap<u32, Vec<(u64, V8Breakpoint)>>,
    hits: u64,
    over_limit: u64,
    errors: Vec<(u32, String)>,
    exited: Vec<u32>,
    ended: Option<Ended>,
}

/// The agent's Node breakpoints (created at the first one: it starts a small runtime for
/// the WebSocket sessions).
pub struct NodeRuntime {
    rt: tokio::runtime::Runtime,
    processes: BTreeMap<u32, Process>,
    breakpoints: BTreeMap<u64, NodeBreakpoint>,
    sites: HashMap<u64, SiteInfo>,
    next_site: u64,
    hits_tx: mpsc::Sender<(u32, String)>,
    hits_rx: mpsc::Receiver<(u32, String)>,
    /// Processes that started after a breakpoint that selects them was set, until Node
    /// in them is ready to be armed.
    pending: crate::late_arming::LateArming,
    /// Sites whose rate is spent for this second, taken out of V8 until then (site key ->
    /// when to set it again). A V8 breakpoint costs its line a debug break and a condition
    /// evaluation on every pass, even when the condition answers at once.
    quiet: BTreeMap<u64, SystemTime>,
}

impl NodeRuntime {
    /// Starts the runtime that carries the inspector sessions (one thread).
    pub fn start() -> Result<Self, NodeError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tracery-node")
            .enable_all()
            .build()
            .map_err(|source| NodeError::Io {
                action: "starting the Node inspector client",
                source,
            })?;
        let (hits_tx, hits_rx) = mpsc::channel();
        Ok(Self {
            rt,
            processes: BTreeMap::new(),
            breakpoints: BTreeMap::new(),
            sites: HashMap::new(),
            next_site: 1,
            hits_tx,
            hits_rx,
            pending: Default::default(),
            quiet: BTreeMap::new(),
        })
    }

    /// True when breakpoint `id` is a Node breakpoint.
    pub fn has(&self, id: u64) -> bool {
        self.breakpoints.contains_key(&id)
    }

    /// Arms `spec` (a `.js`/`.ts` location) in every process of `pids`. With `fail_fast`
    /// (a PID target) the first failure is returned; otherwise failures are kept per
    /// process in the status.
    pub fn add(
        &mut self,
        spec: BreakpointSpec,
        pids: Vec<u32>,
        fail_fast: bool,
    ) -> Result<BreakpointStatus, NodeError> {
        let (file, line) = breakpoints::parse_location(&spec.location)
            .map(|(f, l)| (f.to_owned(), l))
            .ok_or_else(|| NodeError::NoScript {
                pid: pids.first().copied().unwrap_or(0),
                file: spec.location.clone(),
                similar: Vec::new(),
            })?;
        if spec.freeze.is_some() {
            return Err(NodeError::Unsupported {
                what: "--freeze",
                hint: "freeze the trace with a breakpoint in a native service it passes through: \
                       a Node service in a watched cgroup then has its messages held by their trace header",
            });
        }
        if spec.scope.trace_id.is_some() || spec.scope.header.is_some() {
            return Err(NodeError::Unsupported {
                what: "--trace-id and --header",
                hint: "Node serves many requests on one thread, so the kernel cannot tell which \
                       request a hit belongs to; use --when on a variable of the request instead",
            });
        }
        let when = match spec.when.as_deref() {
            Some(text) => {
                Some(
                    tracery_model::condition::parse(text).map_err(|e| NodeError::When {
                        condition: text.to_owned(),
                        reason: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        // The condition is translated once, so a malformed one fails before anything is set.
        if let Some(e) = &when {
            condition::translate(e)?;
        }
        self.remove(spec.id);
        let mut bp = NodeBreakpoint {
            spec,
            when: when.clone(),
            pids: BTreeMap::new(),
            hits: 0,
            over_limit: 0,
            errors: Vec::new(),
            exited: Vec::new(),
            ended: None,
        };
        for pid in pids {
            match self.arm_in(&bp.spec, when.as_ref(), pid, &file, line) {
                Ok(v8) => {
                    bp.pids.insert(pid, v8);
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

    fn arm_in(
        &mut self,
        spec: &BreakpointSpec,
        when: Option<&tracery_model::condition::Expr>,
        pid: u32,
        file: &str,
        line: u32,
    ) -> Result<Vec<(u64, V8Breakpoint)>, NodeError> {
        if !crate::process::pid_exists(pid) {
            return Err(NodeError::Io {
                action: "finding the Node process",
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        if !inspector::is_node(pid) {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map_or_else(
                |_| "an unknown program".to_owned(),
                |p| p.display().to_string(),
            );
            return Err(NodeError::NotNode { pid, exe });
        }
        self.attach(pid, spec)?;
        let result = self.set_sites(spec, when, pid, file, line);
        if result.is_err() && !self.in_use(pid) {
            self.detach(pid);
        }
        result
    }

    fn set_sites(
        &mut self,
        spec: &BreakpointSpec,
        when: Option<&tracery_model::condition::Expr>,
        pid: u32,
        file: &str,
        line: u32,
    ) -> Result<Vec<(u64, V8Breakpoint)>, NodeError> {
        let session = &self.processes[&pid].session;
        let sites: Vec<Site> = self
            .rt
            .block_on(breakpoints::sites(session, pid, file, line))?;
        let mut set = Vec::new();
        for site in sites {
            let names = self.rt.block_on(breakpoints::scope_names(session, &site))?;
            check_capture_paths(&spec.capture_paths, &spec.location, &names)?;
            let key = self.next_site;
            self.next_site += 1;
            let cond = condition::breakpoint_condition(
                key,
                &names,
                when,
                spec.rate_per_sec,
                spec.hit_limit,
            )?;
            match self
                .rt
                .block_on(breakpoints::set(session, pid, &site, cond))
            {
                Ok(v8) => {
                    self.sites.insert(
                        key,
                        SiteInfo {
                            breakpoint: spec.id,
                            pid,
                            names,
                            file: site.source_path.clone(),
                            line,
                        },
                    );
                    set.push((key, v8));
                }
                Err(e) => {
                    for (key, v8) in set {
                        self.sites.remove(&key);
                        let _ = self.rt.block_on(breakpoints::remove(session, &v8));
                    }
                    return Err(e);
                }
            }
        }
        Ok(set)
    }

    /// Opens a session with `pid` unless one is open: inspector, Debugger, binding, capture.
    fn attach(&mut self, pid: u32, spec: &BreakpointSpec) -> Result<(), NodeError> {
        if self
            .processes
            .get(&pid)
            .is_some_and(|p| !p.session.is_closed())
        {
            return Ok(());
        }
        self.processes.remove(&pid);
        let inspector = inspector::open(pid)?;
        let stream = inspector::connect(pid, inspector.addr)?;
        let hits = self.hits_tx.clone();
        let caps = Caps {
            max_string: u32::from(spec.limits.max_string),
            max_elements: u32::from(spec.limits.max_elements),
            // Objects nest where C has pointers: one level more than the native default.
            max_depth: u32::from(spec.limits.max_depth) + 1,
        };
        let setup = async {
            let session = CdpSession::open(pid, &inspector.ws_url, stream, hits).await?;
            session.call(AddBindingParams::new(BINDING)).await?;
            let mut install = EvaluateParams::new(condition::install_expression(caps));
            install.include_command_line_api = Some(true);
            install.silent = Some(true);
            let r = session.call(install).await?;
            if let Some(ex) = r.exception_details {
                return Err(NodeError::Protocol {
                    method: "Runtime.evaluate (installing the capture)".into(),
                    reason: ex.text,
                });
            }
            session.call(EnableParams::default()).await?;
            Ok(session)
        };
        match self.rt.block_on(setup) {
            Ok(session) => {
                self.processes.insert(pid, Process { inspector, session });
                Ok(())
            }
            Err(e) => {
                if inspector.opened_by_agent {
                    let _ = close_inspector(&self.rt, pid, &inspector, None);
                }
                Err(e)
            }
        }
    }

    fn in_use(&self, pid: u32) -> bool {
        self.breakpoints.values().any(|b| b.pids.contains_key(&pid))
    }

    /// Removes a Node breakpoint and its V8 breakpoints; detaches from processes no other
    /// breakpoint needs. Returns false if it did not exist.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(mut bp) = self.breakpoints.remove(&id) else {
            return false;
        };
        let pids: Vec<u32> = bp.pids.keys().copied().collect();
        self.disarm(&mut bp);
        for pid in pids {
            if !self.in_use(pid) {
                self.detach(pid);
            }
        }
        true
    }

    fn disarm(&mut self, bp: &mut NodeBreakpoint) {
        for (pid, v8s) in std::mem::take(&mut bp.pids) {
            for (key, v8) in v8s {
                self.sites.remove(&key);
                // Out of V8 already.
                if self.quiet.remove(&key).is_some() {
                    continue;
                }
                if let Some(p) = self.processes.get(&pid) {
                    if let Err(e) = self.rt.block_on(breakpoints::remove(&p.session, &v8)) {
                        tracing::warn!(pid, id = bp.spec.id, error = %chain(&e), "cannot remove the V8 breakpoint");
                    }
                }
            }
        }
    }

    /// Ends the session with `pid`: the binding goes, the Debugger is disabled, and an
    /// inspector the agent opened is closed, leaving the process as it was found.
    fn detach(&mut self, pid: u32) {
        let Some(p) = self.processes.remove(&pid) else {
            return;
        };
        if p.session.is_closed() {
            return;
        }
        let cleanup = async {
            p.session.call(RemoveBindingParams::new(BINDING)).await?;
            let mut del = EvaluateParams::new(format!("delete globalThis.{BINDING}"));
            del.silent = Some(true);
            p.session.call(del).await?;
            p.session.call(DisableParams::default()).await.map(drop)
        };
        if let Err(e) = self.rt.block_on(cleanup) {
            tracing::warn!(pid, error = %chain(&e), "cannot clean up the Node inspector session");
        }
        if p.inspector.opened_by_agent {
            if let Err(e) = close_inspector(&self.rt, pid, &p.inspector, Some(&p.session)) {
                tracing::warn!(pid, error = %chain(&e), "cannot close the Node inspector");
            }
        }
    }

    /// For tests and diagnostics: true when V8 still holds breakpoint `id`'s breakpoint in
    /// `pid`, asked over the agent's session (which must still be open).
    pub fn still_set_in(&mut self, pid: u32, v8: &V8Breakpoint) -> Result<bool, NodeError> {
        let p = self.processes.get(&pid).ok_or(NodeError::Closed {
            method: "checking breakpoints".into(),
        })?;
        self.rt.block_on(breakpoints::still_set(&p.session, v8))
    }

    /// The V8 breakpoints of `id` in `pid` (empty once removed).
    pub fn v8_breakpoints(&self, id: u64, pid: u32) -> Vec<V8Breakpoint> {
        self.breakpoints
            .get(&id)
            .and_then(|b| b.pids.get(&pid))
            .map(|v| v.iter().map(|(_, b)| b.clone()).collect())
            .unwrap_or_default()
    }

    /// The inspector of `pid`, while the agent holds a session with it.
    pub fn inspector(&self, pid: u32) -> Option<&Inspector> {
        self.processes.get(&pid).map(|p| &p.inspector)
    }

    /// Takes the hits that arrived, ends breakpoints at their hit limit or expiry, and
    /// forgets processes that exited.
    pub fn tick(&mut self) -> Vec<Snapshot> {
        self.arm_pending();
        let mut out = Vec::new();
        let mut spent = Vec::new();
        while let Ok((pid, payload)) = self.hits_rx.try_recv() {
            let hit: values::Hit = match serde_json::from_str(&payload) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(pid, "unreadable Node hit: {e}");
                    continue;
                }
            };
            let Some(site) = self.sites.get(&hit.id).filter(|s| s.pid == pid) else {
                continue;
            };
            let Some(bp) = self.breakpoints.get_mut(&site.breakpoint) else {
                continue;
            };
            if bp.ended.is_some() {
                bp.over_limit += 1;
                continue;
            }
            if let Some(err) = &hit.error {
                tracing::warn!(pid, id = bp.spec.id, "the Node capture failed: {err}");
            }
            bp.hits += 1;
            if bp.spec.hit_limit != 0 && bp.hits >= bp.spec.hit_limit {
                bp.ended = Some(Ended::HitLimit);
            }
            if hit.quiet_until > 0.0 && bp.ended.is_none() {
                let until = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(hit.quiet_until / 1e3);
                spent.push((hit.id, until));
            }
            out.push(snapshot(site, &hit));
        }
        for (key, until) in spent {
            self.quiet_until(key, until);
        }
        self.wake_quiet();
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
                .filter(|pid| !crate::process::pid_exists(*pid))
                .collect();
            for pid in gone {
                if let Some(v8s) = bp.pids.remove(&pid) {
                    for (key, _) in v8s {
                        self.sites.remove(&key);
                    }
                }
                self.processes.remove(&pid);
                if matches!(bp.spec.target, crate::manager::Target::Pid(_)) {
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
            let pids: Vec<u32> = bp.pids.keys().copied().collect();
            self.disarm(&mut bp);
            self.breakpoints.insert(id, bp);
            for pid in pids {
                if !self.in_use(pid) {
                    self.detach(pid);
                }
            }
        }
        out
    }

    /// State of every Node breakpoint.
    pub fn status(&self) -> Vec<BreakpointStatus> {
        self.breakpoints
            .keys()
            .filter_map(|id| self.status_of(*id))
            .collect()
    }

    /// State of one Node breakpoint.
    pub fn status_of(&self, id: u64) -> Option<BreakpointStatus> {
        let bp = self.breakpoints.get(&id)?;
        Some(BreakpointStatus {
            id,
            files: Vec::new(),
            processes: bp.pids.iter().map(|(p, s)| (*p, s.len())).collect(),
            hits: bp.hits,
            filtered: 0,
            kernel_drops: 0,
            over_limit: bp.over_limit,
            errors: bp.errors.clone(),
            exited: bp.exited.clone(),
            ended: bp.ended.clone(),
        })
    }
}

impl Drop for NodeRuntime {
    fn drop(&mut self) {
        // On agent exit every process is left as it was found.
        let ids: Vec<u64> = self.breakpoints.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
        let pids: Vec<u32> = self.processes.keys().copied().collect();
        for pid in pids {
            self.detach(pid);
        }
    }
}

/// `inspector.close()` in the process (through the command-line API's `require`, which
/// CommonJS and ES modules both have there), then waits for the port to close.
fn close_inspector(
    rt: &tokio::runtime::Runtime,
    pid: u32,
    inspector: &Inspector,
    session: Option<&CdpSession>,
) -> Result<(), NodeError> {
    let owned;
    let session = match session {
        Some(s) => s,
        None => {
            let stream = inspector::connect(pid, inspector.addr)?;
            let (tx, _rx) = mpsc::channel();
            owned = rt.block_on(CdpSession::open(pid, &inspector.ws_url, stream, tx))?;
            &owned
        }
    };
    let mut close = EvaluateParams::new("require('inspector').close()");
    close.include_command_line_api = Some(true);
    close.silent = Some(true);
    // The answer may never come: closing ends this very connection.
    session.send(close);
    let deadline = std::time::Instant::now() + CLOSE_WAIT;
    while std::time::Instant::now() < deadline {
        if inspector::connect(pid, inspector.addr).is_err() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(NodeError::Timeout {
        method: "inspector.close()".into(),
        after: CLOSE_WAIT,
    })
}

fn check_capture_paths(
    paths: &[String],
    location: &str,
    names: &[ScopeName],
) -> Result<(), NodeError> {
    for path in paths {
        let root = &path[..path.find(['.', '[']).unwrap_or(path.len())];
        if root != "this" && !names.iter().any(|n| n.name == root) {
            return Err(NodeError::CaptureOutOfScope {
                path: path.clone(),
                location: location.to_owned(),
                in_scope: names.iter().map(|n| n.name.clone()).collect(),
            });
        }
    }
    Ok(())
}

fn snapshot(site: &SiteInfo, hit: &values::Hit) -> Snapshot {
    let stack = values::stack(&hit.stack);
    let time = SystemTime::UNIX_EPOCH + Duration::from_micros((hit.time.max(0.0) * 1000.0) as u64);
    Snapshot {
        breakpoint_id: site.breakpoint,
        pid: site.pid,
        // One JavaScript thread serves every request: the main thread's id.
        tid: site.pid,
        time,
        location: Location {
            function: stack
                .first()
                .map_or_else(String::new, |f| f.function.clone()),
            file: site.file.clone(),
            line: site.line,
            address: 0,
        },
        variables: values::variables(hit, &site.names),
        stack,
        trace_id: None,
        span_id: None,
        language: SourceLanguage::JavaScript,
        databases: Vec::new(),
        pod: None,
    }
}
