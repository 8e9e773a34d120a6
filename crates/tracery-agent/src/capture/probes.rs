//! The probe table: which uprobe slots are armed, with which config, and their counters.
//!
//! A slot is the attach cookie the kernel program uses to find its [`ProbeConfig`]. Arming
//! writes the config before attaching, so the first hit already sees it; disarming detaches
//! first and clears the config after, so no hit reads a half-written plan.

use std::{
    collections::BTreeMap,
    num::NonZeroU32,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
        TracePoint, UProbe,
    },
    Ebpf,
};
use tracery_common::{names, CgroupSetKey, ProbeConfig, ProbeState, MAX_PROBES};
use tracery_model::error::chain;

use crate::{
    capture::loader,
    capture::ring::HitReader,
    error::AgentError,
    exec_watch::ExecWatcher,
    freeze::tracking::{GoProcess, TokioProcess, Tracker},
};

/// Identifies one armed uprobe (its slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId(pub u32);

/// Which of the two programs to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    /// The capture program that runs fetch plans.
    Capture,
    /// The empty program (benchmark baseline).
    Empty,
}

/// Where to attach: a file (as the kernel will resolve it), an offset in it, and one
/// process or all of them.
#[derive(Clone, Debug)]
pub struct AttachTarget {
    /// Path the kernel opens to find the inode, e.g. `/proc/PID/exe`.
    pub path: PathBuf,
    /// File offset of the instruction.
    pub offset: u64,
    /// Only this process fires the probe; `None`: every process that runs the file, now
    /// and later (uprobes bind to the inode), so a process is caught from its first
    /// instruction.
    pub pid: Option<u32>,
}

struct Armed {
    link: UProbeLinkId,
    program: ProgramKind,
    target: AttachTarget,
}

/// The loaded eBPF programs, their maps and the armed slots.
pub struct ProbeTable {
    /// Started with the first freezing breakpoint. Declared before `ebpf` so it is dropped
    /// (its held messages released) while the hold programs are still attached.
    holder: Option<crate::freeze::hold::Holder>,
    /// Why the holder could not start; not retried (its program may be attached already).
    holder_error: Option<std::sync::Arc<AgentError>>,
    ebpf: Ebpf,
    configs: Array<MapData, ProbeConfig>,
    states: Array<MapData, ProbeState>,
    cgroup_sets: BpfHashMap<MapData, CgroupSetKey, u8>,
    armed: BTreeMap<u32, Armed>,
    tracker: Tracker,
}

impl ProbeTable {
    /// Loads the programs into the kernel. Needs root or CAP_BPF + CAP_PERFMON.
    pub fn load() -> Result<Self, AgentError> {
        crate::privilege::check()?;
        let mut ebpf = loader::load()?;
        let configs = take_array(&mut ebpf, names::PROBES)?;
        let states = take_array(&mut ebpf, names::PROBE_STATE)?;
        let cgroup_sets = ebpf
            .take_map(names::CGROUP_SETS)
            .ok_or(AgentError::Map {
                map: names::CGROUP_SETS,
                source: None,
            })
            .and_then(|m| {
                BpfHashMap::try_from(m).map_err(|e| AgentError::Map {
                    map: names::CGROUP_SETS,
                    source: Some(Box::new(e)),
                })
            })?;
        let tracker = Tracker::new(&mut ebpf)?;
        Ok(Self {
            holder: None,
            holder_error: None,
            ebpf,
            configs,
            states,
            cgroup_sets,
            armed: BTreeMap::new(),
            tracker,
        })
    }

    /// Run counts and run times of every loaded program (see [`super::program_stats`]).
    pub fn program_stats(&self) -> Vec<super::program_stats::ProgramStats> {
        super::program_stats::read(&self.ebpf)
    }

    /// Takes the ring buffer of hits and the reader's idle flag; call once.
    pub fn take_reader(&mut self) -> Result<HitReader, AgentError> {
        let map = self.ebpf.take_map(names::HITS).ok_or(AgentError::Map {
            map: names::HITS,
            source: None,
        })?;
        let ring = RingBuf::try_from(map).map_err(|e| AgentError::Map {
            map: names::HITS,
            source: Some(Box::new(e)),
        })?;
        let idle = take_array(&mut self.ebpf, names::READER_IDLE)?;
        Ok(HitReader::new(ring, idle))
    }

    /// Attaches the exec tracepoint and returns the reader of its events. Call once.
    pub fn watch_execs(&mut self) -> Result<ExecWatcher, AgentError> {
        let prog: &mut TracePoint = self
            .ebpf
            .program_mut(names::EXEC)
            .ok_or(AgentError::MissingProgram {
                program: names::EXEC,
            })?
            .try_into()
            .map_err(|e| AgentError::Program {
                program: names::EXEC,
                source: Box::new(e),
            })?;
        let attach = |prog: &mut TracePoint| -> Result<(), aya::programs::ProgramError> {
            prog.load()?;
            prog.attach("sched", "sched_process_exec")?;
            Ok(())
        };
        attach(prog).map_err(|e| AgentError::Program {
            program: names::EXEC,
            source: Box::new(e),
        })?;
        let map = self.ebpf.take_map(names::EXECS).ok_or(AgentError::Map {
            map: names::EXECS,
            source: None,
        })?;
        let ring = RingBuf::try_from(map).map_err(|e| AgentError::Map {
            map: names::EXECS,
            source: Some(Box::new(e)),
        })?;
        Ok(ExecWatcher::new(ring))
    }

    /// Writes `config` into a free slot and attaches `program` at `target`.
    pub fn arm(
        &mut self,
        program: ProgramKind,
        target: AttachTarget,
        config: &ProbeConfig,
    ) -> Result<SlotId, AgentError> {
        let slot = (0..MAX_PROBES)
            .find(|s| !self.armed.contains_key(s))
            .ok_or(AgentError::NoFreeSlot { max: MAX_PROBES })?;
        let map_err = |map, e| AgentError::Map {
            map,
            source: Some(Box::new(e)),
        };
        self.configs
            .set(slot, config, 0)
            .map_err(|e| map_err(names::PROBES, e))?;
        self.states
            .set(slot, ProbeState::default(), 0)
            .map_err(|e| map_err(names::PROBE_STATE, e))?;
        let scope = match target.pid {
            Some(pid) => UProbeScope::OneProcess(
                NonZeroU32::new(pid).ok_or(AgentError::NoSuchProcess { pid: 0 })?,
            ),
            None => UProbeScope::AllProcesses,
        };
        let prog = self.program(program)?;
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(target.offset),
            cookie: Some(u64::from(slot)),
        };
        let link = prog
            .attach(point, &target.path, scope)
            .map_err(|e| AgentError::Attach {
                pid: target.pid,
                path: target.path.clone(),
                offset: target.offset,
                source: Box::new(e),
            })?;
        self.armed.insert(
            slot,
            Armed {
                link,
                program,
                target,
            },
        );
        Ok(SlotId(slot))
    }

    /// Detaches the uprobe of `slot` and frees the slot. Its counters stay readable until
    /// the slot is reused.
    pub fn disarm(&mut self, slot: SlotId) -> Result<(), AgentError> {
        let armed = self
            .armed
            .remove(&slot.0)
            .ok_or(AgentError::UnknownProbe(slot.0))?;
        let prog = self.program(armed.program)?;
        prog.detach(armed.link).map_err(|e| AgentError::Program {
            program: names::CAPTURE,
            source: Box::new(e),
        })?;
        // Detached above, so no hit can read this config any more.
        let _ = self.configs.set(slot.0, ProbeConfig::EMPTY, 0);
        Ok(())
    }

    /// Puts cgroup `cgroup` (its id) into set `set`, or takes it out: shared sites filtered
    /// by the set admit tasks in it, or below it, from the next hit on.
    pub fn set_cgroup(&mut self, set: u64, cgroup: u64, member: bool) -> Result<(), AgentError> {
        let key = CgroupSetKey { set, cgroup };
        let done = if member {
            self.cgroup_sets.insert(key, 1, 0)
        } else {
            match self.cgroup_sets.remove(&key) {
                // Not there: nothing to take out.
                Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                other => other,
            }
        };
        done.map_err(|e| AgentError::Map {
            map: names::CGROUP_SETS,
            source: Some(Box::new(e)),
        })
    }

    /// Starts (or keeps) tracking which trace each thread of `pid` serves.
    pub fn track(
        &mut self,
        pid: u32,
        go: Option<&GoProcess>,
        tokio: Option<&TokioProcess>,
    ) -> Result<(), AgentError> {
        self.tracker.track(&mut self.ebpf, pid, go, tokio)
    }

    /// Takes one more use of the tracking of `pid`, if it is tracked. Returns true if so.
    pub fn retain_tracking(&mut self, pid: u32) -> bool {
        self.tracker.retain(pid)
    }

    /// Processes whose requests the kernel follows now.
    pub fn tracked(&self) -> Vec<u32> {
        self.tracker.tracked()
    }

    /// Drops one use of the tracking of `pid`.
    pub fn untrack(&mut self, pid: u32) {
        self.tracker.untrack(&mut self.ebpf, pid);
    }

    /// The loaded eBPF object, for programs loaded on demand into it (Python watchpoints)
    /// so they share its maps.
    pub(crate) fn ebpf(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Header filters and trappable threads.
    pub fn tracker(&mut self) -> &mut Tracker {
        &mut self.tracker
    }

    /// The message holder, started (hold programs loaded, keeper running) on first use.
    pub fn holder(&mut self) -> Result<&mut crate::freeze::hold::Holder, AgentError> {
        if let Some(e) = &self.holder_error {
            return Err(AgentError::HoldsOff(e.clone()));
        }
        if self.holder.is_none() {
            match crate::freeze::hold::Holder::start(&mut self.ebpf) {
                Ok(h) => self.holder = Some(h),
                Err(e) => {
                    tracing::error!("message holds are off: {}", chain(&e));
                    let e = std::sync::Arc::new(e);
                    self.holder_error = Some(e.clone());
                    return Err(AgentError::HoldsOff(e));
                }
            }
        }
        Ok(self.holder.as_mut().expect("started above"))
    }

    /// The message holder, if it was started.
    pub fn holder_if_started(&mut self) -> Option<&mut crate::freeze::hold::Holder> {
        self.holder.as_mut()
    }

    /// Watches the cgroup of `pid` for message holds. Returns the cgroup directory.
    pub fn hold_watch(&mut self, pid: u32) -> Result<std::path::PathBuf, AgentError> {
        self.holder()?;
        let holder = self.holder.as_mut().expect("started above");
        holder.watch_process(&mut self.ebpf, pid)
    }

    /// Watches the cgroup directory `dir` for message holds.
    pub fn hold_watch_cgroup(&mut self, dir: &std::path::Path) -> Result<(), AgentError> {
        self.holder()?;
        let holder = self.holder.as_mut().expect("started above");
        holder.watch_cgroup(&mut self.ebpf, dir)
    }

    /// Drops one use of the watched cgroup `dir`.
    pub fn hold_unwatch(&mut self, dir: &std::path::Path) {
        if let Some(h) = self.holder.as_mut() {
            h.unwatch_cgroup(&mut self.ebpf, dir);
        }
    }

    /// Kernel counters of `slot`.
    pub fn state(&self, slot: SlotId) -> Result<ProbeState, AgentError> {
        self.states.get(&slot.0, 0).map_err(|e| AgentError::Map {
            map: names::PROBE_STATE,
            source: Some(Box::new(e)),
        })
    }

    /// The target a slot is attached to.
    pub fn target(&self, slot: SlotId) -> Option<&AttachTarget> {
        self.armed.get(&slot.0).map(|a| &a.target)
    }

    /// Slots currently armed.
    pub fn armed(&self) -> impl Iterator<Item = SlotId> + '_ {
        self.armed.keys().map(|s| SlotId(*s))
    }

    fn program(&mut self, kind: ProgramKind) -> Result<&mut UProbe, AgentError> {
        let name = match kind {
            ProgramKind::Capture => names::CAPTURE,
            ProgramKind::Empty => names::EMPTY,
        };
        self.ebpf
            .program_mut(name)
            .ok_or(AgentError::MissingProgram { program: name })?
            .try_into()
            .map_err(|e| AgentError::Program {
                program: names::CAPTURE,
                source: Box::new(e),
            })
    }
}

impl Drop for ProbeTable {
    fn drop(&mut self) {
        // Closing the link fds detaches too; doing it explicitly restores the original
        // instructions before the process moves on, and logs failures.
        let slots: Vec<u32> = self.armed.keys().copied().collect();
        for s in slots {
            if let Err(e) = self.disarm(SlotId(s)) {
                tracing::warn!("detaching probe slot {s}: {e}");
            }
        }
    }
}

fn take_array<V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<Array<MapData, V>, AgentError> {
    let map = ebpf.take_map(name).ok_or(AgentError::Map {
        map: name,
        source: None,
    })?;
    Array::try_from(map).map_err(|e| AgentError::Map {
        map: name,
        source: Some(Box::new(e)),
    })
}

/// The path a uprobe should name to reach the executable of `pid`, even inside a
/// container or after the file was replaced on disk.
pub fn exe_attach_path(pid: u32) -> PathBuf {
    Path::new("/proc").join(pid.to_string()).join("exe")
}
