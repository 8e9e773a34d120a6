//! Holding the messages of frozen traces: the agent's side of the sockops + `sk_msg`
//! programs (`tracery_common::hold` has the protocol), and of the keeper process that owns
//! the held bytes (`keeper`).

mod events;
mod keeper_process;
mod supervise;
mod watch;

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    path::PathBuf,
    sync::mpsc::RecvTimeoutError,
    time::{Duration, Instant, SystemTime},
};

use aya::{
    maps::{Array, HashMap as BpfHashMap, Map, MapData, Queue, RingBuf, SockHash},
    programs::{links::CgroupAttachMode, sock_ops::SockOpsLinkId, SkMsg, SockOps},
    Ebpf,
};
use tracery_common::{
    hold::{conf, stat, FrozenTrace, HoldEvent, SockKey, MAX_HOLD_SLOTS},
    names,
};

use self::keeper_process::{
    keeper_path, map_fd, parse_released, reason_word, spawn_keeper, KeeperKit, RunningKeeper,
};
pub use self::keeper_process::{KEEPER_ENV, KEEPER_EXE};
pub use self::watch::{cgroup2_root, cgroup_dir};
use crate::{
    error::{AgentError, HoldError},
    freeze::{FreezeEvent, HeldMessage, HoldRelease, ReleaseReason, TraceId},
    sys,
};

/// Most time a release waits for the keeper's answer.
const RELEASE_WAIT: Duration = Duration::from_secs(15);

/// Holds frozen traces' messages on this node.
pub struct Holder {
    frozen: BpfHashMap<MapData, [u8; 16], FrozenTrace>,
    conf: Array<MapData, u64>,
    stats: Array<MapData, u64>,
    socks: SockHash<MapData, SockKey>,
    events: RingBuf<MapData>,
    keeper: RunningKeeper,
    /// What a keeper is started with; kept to start another if one dies.
    kit: KeeperKit,
    last_spawn: Instant,
    /// Replies that were not the one being waited for (deadline releases by the keeper).
    stray: Vec<String>,
    /// Watched cgroup -> (sockops link, users).
    cgroups: BTreeMap<PathBuf, (SockOpsLinkId, usize)>,
    held: Vec<HeldMessage>,
    /// Traces frozen on another node, held here until this deadline.
    remote: BTreeMap<TraceId, SystemTime>,
    out: Vec<FreezeEvent>,
    /// Messages of frozen traces that went out unheld, per trace, with the reason.
    pub missed: HashMap<TraceId, (u64, &'static str)>,
    /// Maps only the keeper uses. Kept open: programs loaded later were relocated
    /// against these descriptors.
    _keeper_maps: Vec<Map>,
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, AgentError> {
    ebpf.take_map(name).ok_or(AgentError::Map {
        map: name,
        source: None,
    })
}

fn conv<T: TryFrom<Map, Error = aya::maps::MapError>>(
    m: Map,
    name: &'static str,
) -> Result<T, AgentError> {
    T::try_from(m).map_err(|e| AgentError::Map {
        map: name,
        source: Some(Box::new(e)),
    })
}

fn program_error(name: &'static str) -> impl Fn(aya::programs::ProgramError) -> AgentError {
    move |e| AgentError::Program {
        program: name,
        source: Box::new(e),
    }
}

impl Holder {
    /// Loads the hold programs, attaches `sk_msg` to the sockhash and starts the keeper.
    /// Every step that can fail runs while the maps are still in `ebpf`: programs loaded
    /// later are relocated against their descriptors, which must stay open.
    pub fn start(ebpf: &mut Ebpf) -> Result<Self, AgentError> {
        let keeper = keeper_path()?;
        for name in [names::HOLD_MSG, names::HOLD_SOCKOPS] {
            let p = ebpf
                .program_mut(name)
                .ok_or(AgentError::MissingProgram { program: name })?;
            match p {
                aya::programs::Program::SkMsg(p) => p.load(),
                aya::programs::Program::SockOps(p) => p.load(),
                _ => return Err(AgentError::WrongProgramType { program: name }),
            }
            .map_err(program_error(name))?;
        }
        let socks_fd = {
            let m = ebpf.map(names::SOCKS).ok_or(AgentError::Map {
                map: names::SOCKS,
                source: None,
            })?;
            let socks: SockHash<&MapData, SockKey> =
                SockHash::try_from(m).map_err(|e| AgentError::Map {
                    map: names::SOCKS,
                    source: Some(Box::new(e)),
                })?;
            socks
                .fd()
                .try_clone()
                .map_err(HoldError::map(names::SOCKS))?
        };
        let msg: &mut SkMsg = ebpf
            .program_mut(names::HOLD_MSG)
            .ok_or(AgentError::MissingProgram {
                program: names::HOLD_MSG,
            })?
            .try_into()
            .map_err(program_error(names::HOLD_MSG))?;
        msg.attach(&socks_fd)
            .map_err(program_error(names::HOLD_MSG))?;
        // The keeper gets these, at `Fds::SOCKS..=Fds::HOLD_STATS`.
        let mut passed = Vec::new();
        for name in [
            names::SOCKS,
            names::HELD,
            names::RELEASING,
            names::FREE_SLOTS,
            names::HOLD_CONF,
            names::FROZEN,
            names::HOLD_STATS,
        ] {
            let m = ebpf.map(name).ok_or(AgentError::Map {
                map: name,
                source: None,
            })?;
            passed.push(map_fd(m, name)?);
        }
        let kit = KeeperKit::new(keeper, passed, MAX_HOLD_SLOTS)?;
        add_slots(ebpf, &kit)?;
        let keeper = spawn_keeper(&kit)?;

        // Nothing below fails but a map of the wrong type, which the object rules out.
        let mut take = |name| take(ebpf, name);
        let socks = conv(take(names::SOCKS)?, names::SOCKS)?;
        let kept = vec![
            take(names::HELD)?,
            take(names::RELEASING)?,
            take(names::FREE_SLOTS)?,
        ];
        Ok(Self {
            frozen: conv(take(names::FROZEN)?, names::FROZEN)?,
            conf: conv(take(names::HOLD_CONF)?, names::HOLD_CONF)?,
            stats: conv(take(names::HOLD_STATS)?, names::HOLD_STATS)?,
            events: conv(take(names::HOLD_EVENTS)?, names::HOLD_EVENTS)?,
            socks,
            keeper,
            kit,
            last_spawn: Instant::now(),
            stray: Vec::new(),
            cgroups: BTreeMap::new(),
            held: Vec::new(),
            remote: BTreeMap::new(),
            out: Vec::new(),
            missed: HashMap::new(),
            _keeper_maps: kept,
        })
    }

    /// Watches the cgroup of `pid` (and so the sockets of every process in it), because a
    /// freezing breakpoint is armed there. Fails with the reason when it cannot be.
    pub fn watch_process(&mut self, ebpf: &mut Ebpf, pid: u32) -> Result<PathBuf, AgentError> {
        let dir = watch::cgroup_dir(pid)?;
        self.watch_cgroup(ebpf, &dir)?;
        Ok(dir)
    }

    /// Watches the cgroup directory `dir`: its connections join the sockhash.
    pub fn watch_cgroup(
        &mut self,
        ebpf: &mut Ebpf,
        dir: &std::path::Path,
    ) -> Result<(), AgentError> {
        if let Some((_, users)) = self.cgroups.get_mut(dir) {
            *users += 1;
            return Ok(());
        }
        let cg = watch::open_cgroup(dir)?;
        let ops: &mut SockOps = ebpf
            .program_mut(names::HOLD_SOCKOPS)
            .ok_or(AgentError::MissingProgram {
                program: names::HOLD_SOCKOPS,
            })?
            .try_into()
            .map_err(|e| AgentError::Program {
                program: names::HOLD_SOCKOPS,
                source: Box::new(e),
            })?;
        let link = ops
            // A cgroup link takes no flags (links always allow several programs).
            .attach(&cg, CgroupAttachMode::Single)
            .map_err(|e| AgentError::Program {
                program: names::HOLD_SOCKOPS,
                source: Box::new(e),
            })?;
        // After the attach, so a connection made meanwhile is caught by one or the other.
        let added: usize = watch::processes_in(dir)
            .into_iter()
            .map(|p| watch::add_open_sockets(&mut self.socks, p))
            .sum();
        tracing::info!(cgroup = %dir.display(), sockets = added, "watching for message holds");
        self.cgroups.insert(dir.to_path_buf(), (link, 1));
        Ok(())
    }

    /// Drops one use of the cgroup `dir`; the last one stops watching new connections.
    pub fn unwatch_cgroup(&mut self, ebpf: &mut Ebpf, dir: &std::path::Path) {
        let Some((_, users)) = self.cgroups.get_mut(dir) else {
            return;
        };
        *users -= 1;
        if *users > 0 {
            return;
        }
        let (link, _) = self.cgroups.remove(dir).expect("present");
        if let Some(Ok(ops)) = ebpf
            .program_mut(names::HOLD_SOCKOPS)
            .map(<&mut SockOps>::try_from)
        {
            let _ = ops.detach(link);
        }
        // Its connections leave the sockhash too: an unwatched process's messages must not
        // be held (nor pay for the verdict). Only called with nothing held here.
        let conns: Vec<SockKey> = watch::processes_in(dir)
            .into_iter()
            .flat_map(watch::open_connections)
            .collect();
        let stale: Vec<SockKey> = self
            .socks
            .keys()
            .filter_map(Result::ok)
            .filter(|k| conns.iter().any(|c| sys::same_conn(c, k)))
            .collect();
        for k in stale {
            let _ = self.socks.remove(&k);
        }
    }

    /// Holds are armed (`ANY_FROZEN`: every send of a watched process is checked against
    /// the frozen traces) only while a trace is frozen, here or elsewhere. A freezing
    /// breakpoint that is merely armed costs its process's messages one lookup each: the
    /// capture program turns holds on itself at the hit, before the thread stops.
    fn update_armed(&mut self) {
        let on = self.frozen.keys().next().is_some() || !self.remote.is_empty();
        let _ = self.conf.set(conf::ANY_FROZEN, u64::from(on), 0);
        // A hit may have frozen a trace since the map was read, its `1` overwritten by
        // this `0`: read again. (The kernel adds the trace before it sets the flag.)
        if !on && self.frozen.keys().next().is_some() {
            let _ = self.conf.set(conf::ANY_FROZEN, 1, 0);
        }
    }

    /// Holds `trace`'s messages here until `deadline` (it froze on another node).
    pub fn hold(&mut self, trace: TraceId, deadline: SystemTime) -> Result<(), AgentError> {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let v = FrozenTrace {
            deadline_ns: sys::monotonic_ns() + left.as_nanos() as u64,
        };
        self.frozen
            .insert(trace.0, v, 0)
            .map_err(HoldError::map(names::FROZEN))?;
        self.remote.insert(trace, deadline);
        self.update_armed();
        Ok(())
    }

    /// Lets `trace`'s held messages go, in order. `None` when nothing of it was frozen here.
    pub fn release(&mut self, trace: TraceId, reason: ReleaseReason) -> Option<HoldRelease> {
        self.read_events();
        let was_frozen =
            self.frozen.remove(&trace.0).is_ok() | self.remote.remove(&trace).is_some();
        let had_held = self.held.iter().any(|m| m.trace_id == trace);
        self.update_armed();
        if !was_frozen && !had_held {
            return None;
        }
        let r = self.ask_release(trace, reason);
        self.held.retain(|m| m.trace_id != trace);
        // Nothing was held here: the trace was only marked frozen (no message of it left).
        if r.messages == 0 && r.bytes == 0 && r.dropped_bytes == 0 {
            return None;
        }
        self.out.push(FreezeEvent::HoldReleased(r.clone()));
        Some(r)
    }

    fn ask_release(&mut self, trace: TraceId, reason: ReleaseReason) -> HoldRelease {
        let mut r = HoldRelease {
            trace_id: trace,
            messages: self.held.iter().filter(|m| m.trace_id == trace).count() as u64,
            bytes: 0,
            dropped_bytes: 0,
            reason,
            at: SystemTime::now(),
        };
        let want = format!("released {trace} ");
        // A keeper killed meanwhile is replaced once; the next one goes on where it stopped.
        'attempts: for attempt in 0..2 {
            if attempt > 0 && !self.replace_keeper() {
                break;
            }
            let line = format!("release {trace} {}", reason_word(reason));
            if writeln!(self.keeper.control, "{line}").is_err() {
                continue;
            }
            let until = Instant::now() + RELEASE_WAIT;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match self.keeper.replies.recv_timeout(left) {
                    Ok(line) if line.starts_with(&want) => {
                        if let Some((_, bytes, dropped)) = parse_released(&line) {
                            r.bytes = bytes;
                            r.dropped_bytes = dropped;
                        }
                        r.at = SystemTime::now();
                        return r;
                    }
                    Ok(line) => self.stray.push(line),
                    Err(RecvTimeoutError::Disconnected) => continue 'attempts,
                    Err(RecvTimeoutError::Timeout) => break 'attempts,
                }
            }
        }
        // The bytes are still in the sinks: a keeper lets them go by the hold's deadline.
        tracing::error!(%trace, "the hold keeper did not answer a release");
        r.at = SystemTime::now();
        r
    }

    /// Ends a freeze the kernel began on a hit that user space rejected (`when`, hit
    /// limit): whatever it held already goes out, and no event is reported if nothing was.
    pub fn discard(&mut self, trace: TraceId) {
        self.read_events();
        if self.holds(trace) {
            self.release(trace, ReleaseReason::Resumed);
            return;
        }
        let _ = self.frozen.remove(&trace.0);
        self.update_armed();
        // A message may be held with its event still in flight: ask the keeper anyway.
        let _ = self.ask_release(trace, ReleaseReason::Resumed);
    }

    /// Reads the kernel's hold events and the keeper's own releases; expires remote holds
    /// and forgets frozen traces past their deadline.
    pub fn poll(&mut self) {
        self.keeper_alive();
        self.read_events();
        self.keeper_releases();
        let now = SystemTime::now();
        let due: Vec<TraceId> = self
            .remote
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            self.release(t, ReleaseReason::Deadline);
        }
        let mono = sys::monotonic_ns();
        let stale: Vec<[u8; 16]> = self
            .frozen
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, f)| f.deadline_ns <= mono)
            .map(|(t, _)| t)
            .collect();
        if !stale.is_empty() {
            for t in stale {
                let _ = self.frozen.remove(&t);
            }
            self.update_armed();
        }
    }

    fn read_events(&mut self) {
        while let Some(item) = self.events.next() {
            let Some(ev) = sys::read_record::<HoldEvent>(&item) else {
                continue;
            };
            match events::decode(&ev) {
                Some(events::Observed::Held(m)) => {
                    self.out.push(FreezeEvent::Held((*m).clone()));
                    self.held.push(*m);
                }
                Some(events::Observed::Missed { trace, why }) => {
                    let e = self.missed.entry(trace).or_insert((0, why));
                    e.0 += 1;
                    tracing::warn!(%trace, "a message of a frozen trace went out unheld: {why}");
                }
                None => {}
            }
        }
    }

    /// Releases the keeper made by itself, at a deadline the agent had not acted on yet.
    fn keeper_releases(&mut self) {
        while let Ok(line) = self.keeper.replies.try_recv() {
            self.stray.push(line);
        }
        for line in std::mem::take(&mut self.stray) {
            // The keeper released by a deadline the agent had not acted on yet.
            let Some((trace, bytes, dropped)) = parse_released(&line) else {
                continue;
            };
            let messages = self.held.iter().filter(|m| m.trace_id == trace).count() as u64;
            if messages == 0 && bytes == 0 && dropped == 0 {
                // A late answer to a release that found nothing.
                continue;
            }
            self.held.retain(|m| m.trace_id != trace);
            self.out.push(FreezeEvent::HoldReleased(HoldRelease {
                trace_id: trace,
                messages,
                bytes,
                dropped_bytes: dropped,
                reason: ReleaseReason::Deadline,
                at: SystemTime::now(),
            }));
        }
    }

    /// Messages held here now, oldest first.
    pub fn held(&self) -> &[HeldMessage] {
        &self.held
    }

    /// Takes the hold events since the last call.
    pub fn take_events(&mut self) -> Vec<FreezeEvent> {
        std::mem::take(&mut self.out)
    }

    /// Messages held since start, and messages of frozen traces that went out unheld.
    pub fn counters(&self) -> (u64, u64) {
        let get = |i| self.stats.get(&i, 0).unwrap_or(0);
        (get(stat::HELD), get(stat::MISSED))
    }

    /// True when nothing is frozen or held here.
    pub fn idle(&self) -> bool {
        self.held.is_empty() && self.remote.is_empty() && self.frozen.keys().next().is_none()
    }

    /// True when `trace` has held messages here.
    pub fn holds(&self, trace: TraceId) -> bool {
        self.held.iter().any(|m| m.trace_id == trace)
    }

    /// Lets everything go (the agent is stopping) and stops the keeper.
    pub fn release_all(&mut self) {
        self.keeper_alive();
        let traces: Vec<TraceId> = self
            .held
            .iter()
            .map(|m| m.trace_id)
            .chain(self.remote.keys().copied())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for t in traces {
            self.release(t, ReleaseReason::AgentExit);
        }
        let _ = writeln!(self.keeper.control, "release-all agent-exited");
    }
}

/// Puts the kit's sinks in the sockhash and gives their slots to the kernel (once: a
/// keeper started later finds them there).
fn add_slots(ebpf: &mut Ebpf, kit: &KeeperKit) -> Result<(), AgentError> {
    let m = ebpf.map_mut(names::SOCKS).ok_or(AgentError::Map {
        map: names::SOCKS,
        source: None,
    })?;
    let mut socks: SockHash<&mut MapData, SockKey> =
        SockHash::try_from(m).map_err(HoldError::map(names::SOCKS))?;
    for (slot, fd) in kit.sinks() {
        socks
            .insert(SockKey::sink(slot), fd, 0)
            .map_err(HoldError::map(names::SOCKS))?;
    }
    let m = ebpf.map_mut(names::FREE_SLOTS).ok_or(AgentError::Map {
        map: names::FREE_SLOTS,
        source: None,
    })?;
    let mut free: Queue<&mut MapData, u32> =
        Queue::try_from(m).map_err(HoldError::map(names::FREE_SLOTS))?;
    for (slot, _) in kit.sinks() {
        free.push(slot, 0)
            .map_err(HoldError::map(names::FREE_SLOTS))?;
    }
    Ok(())
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.release_all();
        // Closing the control socket tells the keeper to release anything left and exit.
        let _ = self.keeper.control.shutdown(std::net::Shutdown::Both);
        let until = Instant::now() + RELEASE_WAIT;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.keeper.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!("the hold keeper did not exit; leaving it to finish");
    }
}
