//! The user-space side of trace tracking: which processes the kernel parses requests of,
//! the `--header` filters it matches, and the threads it may trap for a freeze.

use std::collections::{BTreeMap, HashMap};

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
        UProbe,
    },
    Ebpf,
};
use tracery_common::{
    names,
    trace::{tgid_bit, GoKey, TrackedProc, GO_SUSPEND_PENDING, TRACK_GO, TRACK_TASKS},
    trace_header::{header_filter_hash, MAX_HEADER_FILTERS},
};

use crate::error::AgentError;

/// What the tracker needs to know about a Go executable.
#[derive(Clone, Debug)]
pub struct GoProcess {
    /// Path the kernel opens for the uprobes (e.g. `/proc/PID/exe`).
    pub path: std::path::PathBuf,
    /// File offsets of the calls of `runtime.runqput` in `runtime.newproc.func1`, where a
    /// parent goroutine's trace passes to its new child (one trap: preferred).
    pub newproc_queued: Vec<u64>,
    /// File offsets of the `ret` instructions of `runtime.newproc1`, where the same can be
    /// done (two traps: the `ret` is single-stepped); used when the call is not found.
    pub newproc_returns: Vec<u64>,
    /// Offset of `runtime.g.atomicstatus`; without it goroutines are never stopped.
    pub g_status: Option<u64>,
    /// Offsets of `runtime.g.m` and `runtime.m.curg`: `newproc1` runs on the system
    /// stack, where the creating goroutine is `g.m.curg`. Without them children do not
    /// inherit a trace.
    pub curg: Option<(u64, u64)>,
}

/// What the tracker needs to know about an executable running tokio.
#[derive(Clone, Debug)]
pub struct TokioProcess {
    /// Path the kernel opens for the uprobes (e.g. `/proc/PID/exe`).
    pub path: std::path::PathBuf,
    /// File offsets of every `tokio::runtime::task::raw::poll` instance: where a worker
    /// thread switches to a task. Hooked only when `runtime` is unknown.
    pub polls: Vec<u64>,
    /// File offsets of every `tokio::runtime::task::list::OwnedTasks::bind_inner`
    /// instance: where a spawned task is registered (it inherits its parent's trace).
    pub spawns: Vec<u64>,
    /// File offsets of every `tokio::runtime::task::raw::dealloc` instance. Hooked only
    /// when `runtime` is unknown.
    pub deallocs: Vec<u64>,
    /// Where tokio keeps the current task id (from DWARF). With it the kernel reads the
    /// task at a system call, and no uprobe runs on each poll.
    pub runtime: Option<tracery_dwarf::tokio_runtime::TokioRuntime>,
}

struct Tracked {
    /// Breakpoint sites in the process that need tracking.
    users: usize,
    /// Go goroutine and tokio task hooks.
    go_links: Vec<(&'static str, UProbeLinkId)>,
}

/// Tracking state: maps taken from the eBPF object, plus reference counts.
pub struct Tracker {
    pids: BpfHashMap<MapData, u32, TrackedProc>,
    /// `TRACKED_TGIDS`: a bit per process in `pids`, the node-wide programs' first check.
    tgid_bits: Array<MapData, u64>,
    go_suspend: BpfHashMap<MapData, GoKey, u64>,
    go_freeze_armed: Array<MapData, u64>,
    filters: BpfHashMap<MapData, u64, u32>,
    seized: BpfHashMap<MapData, u32, u32>,
    tracked: BTreeMap<u32, Tracked>,
    /// `(lower-case name, value)` -> (bit, users).
    filter_bits: HashMap<(String, String), (u32, usize)>,
    /// The system-call hooks, attached while any process is tracked.
    syscalls: super::syscall_hooks::SyscallHooks,
    /// Where the kernel finds a thread's thread-locals (`task_struct.thread.fsbase`);
    /// also kept open because programs loaded later refer to it by this fd.
    task_fsbase: Array<MapData, u64>,
    /// Whether that offset was read from the kernel's BTF; if not, tokio tasks are
    /// followed by the poll uprobe.
    fsbase_known: bool,
    /// Sends and receives of traced requests in tracked processes.
    messages: super::messages::MessageTap,
}

impl Tracker {
    /// Takes the tracker's maps out of `ebpf`.
    pub fn new(ebpf: &mut Ebpf) -> Result<Self, AgentError> {
        let task_fsbase: Array<MapData, u64> = {
            let map = ebpf.take_map(names::TASK_FSBASE).ok_or(AgentError::Map {
                map: names::TASK_FSBASE,
                source: None,
            })?;
            Array::try_from(map).map_err(|e| map_error(names::TASK_FSBASE, e))?
        };
        let mut tracker = Self {
            pids: take_hash(ebpf, names::TRACE_PIDS)?,
            tgid_bits: super::messages::take(ebpf, names::TRACKED_TGIDS)?,
            go_suspend: take_hash(ebpf, names::GO_SUSPEND)?,
            go_freeze_armed: {
                let map = ebpf
                    .take_map(names::GO_FREEZE_ARMED)
                    .ok_or(AgentError::Map {
                        map: names::GO_FREEZE_ARMED,
                        source: None,
                    })?;
                Array::try_from(map).map_err(|e| map_error(names::GO_FREEZE_ARMED, e))?
            },
            filters: take_hash(ebpf, names::HEADER_FILTERS)?,
            seized: take_hash(ebpf, names::SEIZED)?,
            tracked: BTreeMap::new(),
            filter_bits: HashMap::new(),
            syscalls: super::syscall_hooks::SyscallHooks::new(ebpf)?,
            task_fsbase,
            fsbase_known: false,
            messages: super::messages::MessageTap::new(ebpf)?,
        };
        // At start, while the heap is nearly empty: parsing the BTF allocates ~24 MiB for
        // a moment, which goes back to the kernel whole here. Later, between the DWARF
        // indexes, the same peak would stay (measured: +15 MiB in the demo's agent).
        tracker.fsbase_known = tracker.learn_fsbase();
        Ok(tracker)
    }

    /// Tells the kernel where a thread's thread-locals are; false if that is unknown.
    fn learn_fsbase(&mut self) -> bool {
        let known = match super::kernel_btf::task_fsbase_offset() {
            Ok(offset) => match self.task_fsbase.set(0, offset, 0) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("cannot tell the kernel where thread-locals are: {e}");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(
                    "tokio tasks will be followed with a uprobe on every task poll (slower \
                     for every request of an armed process): the kernel's thread pointer \
                     offset is unknown: {e}"
                );
                false
            }
        };
        // The BTF parse allocated and freed ~24 MiB: give it back rather than hold the peak.
        crate::sys::trim_heap();
        known
    }

    /// Starts (or keeps) parsing the requests `pid` receives. The syscall tracepoints are
    /// attached while any process is tracked, so a node with nothing armed runs none of
    /// them.
    pub fn track(
        &mut self,
        ebpf: &mut Ebpf,
        pid: u32,
        go: Option<&GoProcess>,
        tokio: Option<&TokioProcess>,
    ) -> Result<(), AgentError> {
        self.syscalls.attach(ebpf)?;
        if let Some(t) = self.tracked.get_mut(&pid) {
            t.users += 1;
            return Ok(());
        }
        let runtime = tokio.and_then(|t| t.runtime).filter(|_| self.fsbase_known);
        let go_curg = go.and_then(|g| g.curg);
        let u32_of = |o: u64| u32::try_from(o).unwrap_or(0);
        let proc = TrackedProc {
            flags: if go.is_some() {
                TRACK_GO
            } else if tokio.is_some() {
                TRACK_TASKS
            } else {
                0
            },
            g_status: go.and_then(|g| g.g_status).map_or(0, u32_of),
            g_m: go_curg.map_or(0, |(g_m, _)| u32_of(g_m)),
            m_curg: go_curg.map_or(0, |(_, m_curg)| u32_of(m_curg)),
            task_id_tls: runtime.map_or(0, |r| r.task_id_tp_offset),
            task_header_vtable: runtime.map_or(0, |r| r.header_vtable),
            task_vtable_id_offset: runtime.map_or(0, |r| r.vtable_id_offset),
        };
        self.pids
            .insert(pid, proc, 0)
            .map_err(|e| map_error(names::TRACE_PIDS, e))?;
        // After the entry, so a set bit always finds one.
        if let Err(e) = self.set_tgid_bit(pid, true) {
            let _ = self.pids.remove(&pid);
            return Err(e);
        }
        let mut go_links = Vec::new();
        if let Some(go) = go {
            let (program, sites) = if go.newproc_queued.is_empty() {
                (names::GO_NEWPROC_RETURN, go.newproc_returns.as_slice())
            } else {
                (names::GO_NEWPROC_QUEUED, go.newproc_queued.as_slice())
            };
            if go_curg.is_none() || sites.is_empty() {
                tracing::warn!(
                    pid,
                    "goroutines started by a traced request will not inherit its trace: \
                     runtime.newproc1 or the g.m.curg offsets are missing from the binary"
                );
            }
            let sites = go_curg.map(|_| sites).unwrap_or(&[]);
            for offset in sites {
                // Without these, children of a request's goroutine do not inherit its
                // trace; the request's own goroutine is still tracked.
                match attach_uprobe(ebpf, program, &go.path, *offset, pid) {
                    Ok(link) => go_links.push((program, link)),
                    Err(e) => tracing::warn!(pid, "goroutine trace inheritance is off: {e}"),
                }
            }
        }
        if let Some(t) = tokio {
            // With the thread-local task id only spawns need a hook (a child inherits its
            // parent's trace); else every poll and dealloc does too.
            let (polls, deallocs) = if runtime.is_some() {
                (&[][..], &[][..])
            } else {
                tracing::warn!(
                    pid,
                    "tokio tasks are followed with a uprobe on every task poll, which every \
                     request of this process pays for: its DWARF lacks tokio's types (build \
                     with `debug = 2` for the tokio package) or the kernel's BTF lacks \
                     task_struct.thread.fsbase"
                );
                (t.polls.as_slice(), t.deallocs.as_slice())
            };
            let hooks = polls.iter().map(|o| (names::TASK_POLL, *o));
            let hooks = hooks.chain(t.spawns.iter().map(|o| (names::TASK_SPAWN, *o)));
            let hooks = hooks.chain(deallocs.iter().map(|o| (names::TASK_DEALLOC, *o)));
            for (name, offset) in hooks {
                // Without these, a tokio worker's messages are tied to the last request
                // it parsed, which may be another task's.
                match attach_uprobe(ebpf, name, &t.path, offset, pid) {
                    Ok(link) => go_links.push((name, link)),
                    Err(e) => tracing::warn!(pid, "tokio task tracking is incomplete: {e}"),
                }
            }
        }
        self.tracked.insert(pid, Tracked { users: 1, go_links });
        Ok(())
    }

    /// The message events of traced requests since the last call.
    pub fn take_messages(&mut self) -> tracery_model::message::MessageBatch {
        self.messages.read()
    }

    /// Message events written and lost (ring full) since start.
    pub fn message_counters(&self) -> (u64, u64) {
        self.messages.counters()
    }

    /// Takes one more use of `pid` if it is tracked. Returns true if so.
    pub fn retain(&mut self, pid: u32) -> bool {
        self.tracked.get_mut(&pid).map(|t| t.users += 1).is_some()
    }

    /// Processes tracked now.
    pub fn tracked(&self) -> Vec<u32> {
        self.tracked.keys().copied().collect()
    }

    /// Drops one use of `pid`; the last one stops tracking it.
    pub fn untrack(&mut self, ebpf: &mut Ebpf, pid: u32) {
        let Some(t) = self.tracked.get_mut(&pid) else {
            return;
        };
        t.users -= 1;
        if t.users > 0 {
            return;
        }
        let t = self.tracked.remove(&pid).expect("present");
        // The bit first: a clear bit skips the entry, so no program reads it half-removed.
        if let Err(e) = self.set_tgid_bit(pid, false) {
            tracing::warn!(pid, "{e}");
        }
        let _ = self.pids.remove(&pid);
        for (name, link) in t.go_links {
            if let Some(Ok(p)) = ebpf.program_mut(name).map(<&mut UProbe>::try_from) {
                let _ = p.detach(link);
            }
        }
        if self.tracked.is_empty() {
            self.syscalls.detach(ebpf);
        }
    }

    /// Sets or clears process `pid`'s bit in `TRACKED_TGIDS` (the agent is its only
    /// writer, so read-modify-write is safe).
    fn set_tgid_bit(&mut self, pid: u32, on: bool) -> Result<(), AgentError> {
        let (word, bit) = tgid_bit(pid);
        let old = self
            .tgid_bits
            .get(&word, 0)
            .map_err(|e| map_error(names::TRACKED_TGIDS, e))?;
        let new = if on { old | bit } else { old & !bit };
        self.tgid_bits
            .set(word, new, 0)
            .map_err(|e| map_error(names::TRACKED_TGIDS, e))
    }

    /// The filter bit for a `--header NAME=VALUE` filter, registering it in the kernel on
    /// first use.
    pub fn header_bit(&mut self, name: &str, value: &str) -> Result<u32, AgentError> {
        let key = (name.to_ascii_lowercase(), value.to_string());
        if let Some((bit, users)) = self.filter_bits.get_mut(&key) {
            *users += 1;
            return Ok(*bit);
        }
        let bit = (0..MAX_HEADER_FILTERS)
            .find(|b| !self.filter_bits.values().any(|(used, _)| used == b))
            .ok_or(AgentError::TooManyHeaderFilters {
                max: MAX_HEADER_FILTERS,
            })?;
        self.filters
            .insert(header_filter_hash(name, value), bit, 0)
            .map_err(|e| map_error(names::HEADER_FILTERS, e))?;
        self.filter_bits.insert(key, (bit, 1));
        Ok(bit)
    }

    /// Drops one use of a header filter; the last one unregisters it.
    pub fn release_header(&mut self, name: &str, value: &str) {
        let key = (name.to_ascii_lowercase(), value.to_string());
        if let Some((_, users)) = self.filter_bits.get_mut(&key) {
            *users -= 1;
            if *users == 0 {
                self.filter_bits.remove(&key);
                let _ = self.filters.remove(&header_filter_hash(name, value));
            }
        }
    }

    /// Tells the kernel to watch system calls of Go processes for goroutines to stop
    /// (only while some `--freeze` breakpoint is armed in Go code).
    pub fn set_go_freeze_armed(&mut self, armed: bool) {
        let _ = self.go_freeze_armed.set(0, u64::from(armed), 0);
    }

    /// The thread the kernel trapped for goroutine `g` of `pid`, once it reached a system
    /// call; `None` while it is still pending (or was never asked for).
    pub fn go_trapped_thread(&self, pid: u32, g: u64) -> Option<u32> {
        let v = self.go_suspend.get(&go_key(pid, g), 0).ok()?;
        (v != GO_SUSPEND_PENDING).then_some(v as u32)
    }

    /// Forgets goroutine `g` of `pid` (released, or its deadline passed before it reached
    /// a system call).
    pub fn clear_go_suspend(&mut self, pid: u32, g: u64) {
        let _ = self.go_suspend.remove(&go_key(pid, g));
    }

    /// Lets the kernel trap threads of `pid` (the agent has ptrace-seized all of them and
    /// follows the threads they create).
    pub fn mark_seized(&mut self, pid: u32) -> Result<(), AgentError> {
        self.seized
            .insert(pid, 1, 0)
            .map_err(|e| map_error(names::SEIZED, e))
    }

    /// The kernel must not trap threads of `pid` any more (they are being detached).
    pub fn unmark_seized(&mut self, pid: u32) {
        let _ = self.seized.remove(&pid);
    }
}

fn go_key(tgid: u32, g: u64) -> GoKey {
    GoKey { tgid, _pad: 0, g }
}

fn map_error(map: &'static str, e: aya::maps::MapError) -> AgentError {
    AgentError::Map {
        map,
        source: Some(Box::new(e)),
    }
}

fn take_hash<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<BpfHashMap<MapData, K, V>, AgentError> {
    let map = ebpf.take_map(name).ok_or(AgentError::Map {
        map: name,
        source: None,
    })?;
    BpfHashMap::try_from(map).map_err(|e| map_error(name, e))
}

fn attach_uprobe(
    ebpf: &mut Ebpf,
    name: &'static str,
    path: &std::path::Path,
    offset: u64,
    pid: u32,
) -> Result<UProbeLinkId, AgentError> {
    let program_error = |e: aya::programs::ProgramError| AgentError::Program {
        program: name,
        source: Box::new(e),
    };
    let prog: &mut UProbe = ebpf
        .program_mut(name)
        .ok_or(AgentError::MissingProgram { program: name })?
        .try_into()
        .map_err(program_error)?;
    if prog.fd().is_err() {
        prog.load().map_err(program_error)?;
    }
    let pid = std::num::NonZeroU32::new(pid).ok_or(AgentError::NoSuchProcess { pid })?;
    prog.attach(
        UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(offset),
            cookie: None,
        },
        path,
        UProbeScope::OneProcess(pid),
    )
    .map_err(|e| AgentError::Attach {
        pid: Some(pid.get()),
        path: path.to_path_buf(),
        offset,
        source: Box::new(e),
    })
}
