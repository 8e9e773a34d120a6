//! The hold keeper: a small process that writes held messages back when they are let go.
//!
//! Held bytes wait in the queues of sink sockets (one per hold slot) that the agent made
//! and holds, as the keeper does. The keeper is a process of its own so held bytes
//! outlive the agent: if the agent dies (even by SIGKILL), the keeper sees its control
//! socket close, stops new holds, writes every held byte out in order and exits. It also
//! enforces each hold's deadline by itself.
//!
//! The keeper is not a single point of loss either: it only peeks at the sinks, and
//! journals per slot how many bytes it wrote (`journal`). If it is killed, the bytes
//! are still queued in the agent's sinks, and the keeper the agent starts next goes on
//! from the first unwritten byte (`release`).
//!
//! The agent starts it with these descriptors (see [`Fds`]) and talks to it in text lines:
//! - agent -> keeper: `release TRACE_HEX REASON`, `release-all REASON`;
//! - keeper -> agent: `ready SLOTS`, then for each release
//!   `released TRACE_HEX REASON SOCKETS BYTES DROPPED_BYTES` (also unasked, for deadline
//!   releases and for releases a killed keeper had begun, with reason `recovered`).

mod journal;
mod release;

use std::{
    collections::{BTreeMap, HashSet},
    fs::File,
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    os::{fd::RawFd, unix::net::UnixStream},
    sync::mpsc::RecvTimeoutError,
    time::Duration,
};

use aya::maps::{Array, HashMap, Map, MapData, MapError, Queue, SockHash};
use tracery_common::hold::{conf, stat, FrozenTrace, HeldSock, SockKey, MAX_HOLD_SLOTS};

pub use self::journal::Journal;
use self::journal::{SlotRecord, SlotState};
use crate::sys;

/// Why the keeper cannot start or serve the agent.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// An inherited map descriptor is not the map the agent should have placed there.
    #[error("map {what} (fd {fd}) is not usable; start the keeper from the agent only")]
    Map {
        what: &'static str,
        fd: RawFd,
        #[source]
        source: MapError,
    },
    /// A descriptor the agent should have placed is not open.
    #[error("no {what} at fd {fd}; start the keeper from the agent only")]
    NotInherited { what: &'static str, fd: RawFd },
    /// A map operation failed.
    #[error("updating map {what} failed")]
    MapUpdate {
        what: &'static str,
        #[source]
        source: MapError,
    },
    /// A socket or control-channel operation failed.
    #[error("{what} failed")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The agent sent a line the keeper does not know.
    #[error("unknown command {line:?} from the agent; agent and keeper versions differ?")]
    UnknownCommand { line: String },
    /// A `release` named no valid trace id.
    #[error("trace id {text:?} in a release")]
    TraceId {
        text: String,
        #[source]
        source: tracery_model::trace::ScopeError,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> KeeperError {
    move |source| KeeperError::Io { what, source }
}

fn map_update(what: &'static str) -> impl FnOnce(MapError) -> KeeperError {
    move |source| KeeperError::MapUpdate { what, source }
}

/// Descriptor numbers the keeper finds its control socket, maps, journal and sinks at.
pub struct Fds;

impl Fds {
    pub const CONTROL: RawFd = 3;
    pub const SOCKS: RawFd = 4;
    pub const HELD: RawFd = 5;
    pub const RELEASING: RawFd = 6;
    pub const FREE_SLOTS: RawFd = 7;
    pub const HOLD_CONF: RawFd = 8;
    pub const FROZEN: RawFd = 9;
    pub const HOLD_STATS: RawFd = 10;
    pub const JOURNAL: RawFd = 11;
    /// Slot `i`'s sink socket is at `SINK0 + i`.
    pub const SINK0: RawFd = 12;
    /// The control socket, the maps and the journal, in order (the sinks follow).
    pub const FIXED: [RawFd; 9] = [
        Self::CONTROL,
        Self::SOCKS,
        Self::HELD,
        Self::RELEASING,
        Self::FREE_SLOTS,
        Self::HOLD_CONF,
        Self::FROZEN,
        Self::HOLD_STATS,
        Self::JOURNAL,
    ];
}

/// Past a hold's deadline, how long the keeper waits for the agent's release before it
/// releases by itself.
const DEADLINE_GRACE: Duration = Duration::from_millis(500);

struct Maps {
    held: HashMap<MapData, SockKey, HeldSock>,
    releasing: HashMap<MapData, SockKey, u32>,
    free: Queue<MapData, u32>,
    conf: Array<MapData, u64>,
    frozen: HashMap<MapData, [u8; 16], FrozenTrace>,
    stats: Array<MapData, u64>,
    /// Not used here; taken so the agent's descriptor number is owned.
    _socks: SockHash<MapData, SockKey>,
}

fn map<T: TryFrom<Map, Error = MapError>>(fd: RawFd, what: &'static str) -> Result<T, KeeperError> {
    let owned = sys::take_inherited_fd(fd).ok_or(KeeperError::NotInherited { what, fd })?;
    let err = |source| KeeperError::Map { what, fd, source };
    let data = MapData::from_fd(owned).map_err(err)?;
    Map::from_map_data(data).and_then(T::try_from).map_err(err)
}

impl Maps {
    fn inherit() -> Result<Self, KeeperError> {
        Ok(Self {
            _socks: map(Fds::SOCKS, "SOCKS")?,
            held: map(Fds::HELD, "HELD")?,
            releasing: map(Fds::RELEASING, "RELEASING")?,
            free: map(Fds::FREE_SLOTS, "FREE_SLOTS")?,
            conf: map(Fds::HOLD_CONF, "HOLD_CONF")?,
            frozen: map(Fds::FROZEN, "FROZEN")?,
            stats: map(Fds::HOLD_STATS, "HOLD_STATS")?,
        })
    }

    /// The kernel's count of bytes keepers pushed back.
    fn pushed(&self) -> u64 {
        self.stats.get(&stat::PUSHED, 0).unwrap_or(0)
    }
}

/// What one release did.
#[derive(Default)]
struct Outcome {
    sockets: u64,
    bytes: u64,
    dropped: u64,
}

struct Keeper {
    maps: Maps,
    /// Slot `i`'s sink socket. The agent holds each one too, so the bytes queued in it
    /// outlive this process.
    sinks: Vec<TcpStream>,
    journal: Journal,
    control: UnixStream,
}

fn inherited(fd: RawFd, what: &'static str) -> Result<std::os::fd::OwnedFd, KeeperError> {
    sys::take_inherited_fd(fd).ok_or(KeeperError::NotInherited { what, fd })
}

/// The keeper's `main`: runs until the agent asks it to stop or goes away. The agent
/// made the sinks and the journal, and starts a new keeper with the same ones when one
/// dies; this one first finishes what the last one left half done.
pub fn run(slots: u32) -> Result<(), KeeperError> {
    let slots = slots.clamp(1, MAX_HOLD_SLOTS);
    let control = UnixStream::from(inherited(Fds::CONTROL, "control socket")?);
    let mut maps = Maps::inherit()?;
    let journal = Journal::new(File::from(inherited(Fds::JOURNAL, "journal")?), slots);
    let sinks = (0..slots as RawFd)
        .map(|i| inherited(Fds::SINK0 + i, "sink socket").map(TcpStream::from))
        .collect::<Result<Vec<_>, _>>()?;
    maps.conf
        .set(conf::KEEPER_TGID, u64::from(std::process::id()), 0)
        .map_err(map_update("HOLD_CONF"))?;
    let mut k = Keeper {
        maps,
        sinks,
        journal,
        control,
    };
    writeln!(k.control, "ready {slots}").map_err(io("telling the agent it is ready"))?;
    k.recover();
    k.serve()
}

impl Keeper {
    fn serve(&mut self) -> Result<(), KeeperError> {
        let mut lines = BufReader::new(
            self.control
                .try_clone()
                .map_err(io("cloning the control socket"))?,
        );
        self.control
            .set_nonblocking(false)
            .map_err(io("making the control socket blocking"))?;
        let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
        // Commands are read on a thread so the main loop can watch deadlines meanwhile.
        std::thread::spawn(move || loop {
            let mut line = String::new();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {
                    if tx.send(Some(line)).is_err() {
                        return;
                    }
                }
            }
        });
        loop {
            self.expire();
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(Some(line)) => {
                    // Never exit over one bad line: held bytes would be lost with us.
                    if let Err(e) = self.command(line.trim()) {
                        eprintln!("tracery-hold-keeper: {}", tracery_model::error::chain(&e));
                    }
                }
                Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                    // The agent is gone: no new holds, and everything held goes out.
                    self.stop_holding();
                    self.release_where(|_| true, "agent-exited");
                    return Ok(());
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn command(&mut self, line: &str) -> Result<(), KeeperError> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("release"), Some(trace), Some(reason)) => {
                let id = tracery_model::trace::parse_trace_id(trace).map_err(|source| {
                    KeeperError::TraceId {
                        text: trace.to_owned(),
                        source,
                    }
                })?;
                if !self
                    .release_where(|h| h.trace_id == id, reason)
                    .contains(&id)
                {
                    // Nothing of it was held: the agent still waits for an answer.
                    writeln!(self.control, "released {trace} {reason} 0 0 0")
                        .map_err(io("answering a release"))?;
                }
            }
            (Some("release-all"), Some(reason), None) => {
                self.stop_holding();
                self.release_where(|_| true, reason);
            }
            _ => {
                return Err(KeeperError::UnknownCommand {
                    line: line.to_owned(),
                })
            }
        }
        Ok(())
    }

    /// Forgets every frozen trace, so the kernel starts no new hold.
    fn stop_holding(&mut self) {
        let keys: Vec<[u8; 16]> = self.maps.frozen.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = self.maps.frozen.remove(&k);
        }
    }

    /// Releases holds whose deadline passed (the agent normally does it first).
    fn expire(&mut self) {
        let now = sys::monotonic_ns();
        let grace = DEADLINE_GRACE.as_nanos() as u64;
        let late: HashSet<[u8; 16]> = self
            .held()
            .into_iter()
            .filter(|(_, h)| now > h.deadline_ns.saturating_add(grace))
            .map(|(_, h)| h.trace_id)
            .collect();
        for t in late {
            let _ = self.maps.frozen.remove(&t);
            self.release_where(|h| h.trace_id == t, "deadline");
        }
    }

    fn held(&self) -> Vec<(SockKey, HeldSock)> {
        self.maps.held.iter().filter_map(Result::ok).collect()
    }

    /// Releases every held socket matching `pick`, grouped per trace, and reports each
    /// trace's totals to the agent. Returns the traces reported.
    fn release_where(&mut self, pick: impl Fn(&HeldSock) -> bool, reason: &str) -> Vec<[u8; 16]> {
        let mut per_trace: BTreeMap<[u8; 16], Outcome> = BTreeMap::new();
        let socks: Vec<(SockKey, HeldSock)> =
            self.held().into_iter().filter(|(_, h)| pick(h)).collect();
        for (conn, h) in socks {
            let (bytes, dropped) = self.release_socket(conn, &h);
            let o = per_trace.entry(h.trace_id).or_default();
            o.sockets += 1;
            o.bytes += bytes;
            o.dropped += dropped;
        }
        self.report(per_trace, reason)
    }

    fn report(&mut self, per_trace: BTreeMap<[u8; 16], Outcome>, reason: &str) -> Vec<[u8; 16]> {
        let reported = per_trace.keys().copied().collect();
        for (trace, o) in per_trace {
            let _ = writeln!(
                self.control,
                "released {} {reason} {} {} {}",
                tracery_model::trace::hex(&trace),
                o.sockets,
                o.bytes,
                o.dropped
            );
        }
        reported
    }

    /// Finishes what a keeper killed before this one left half done, from the journal:
    /// releases it had begun go on from the first unwritten byte, and slots it was
    /// recycling are drained and freed. Holds it had not begun to release stay held.
    fn recover(&mut self) {
        let mut per_trace: BTreeMap<[u8; 16], Outcome> = BTreeMap::new();
        for slot in 0..self.sinks.len() as u32 {
            let r = self.journal.read(slot);
            match r.state {
                SlotState::Free => {}
                SlotState::Releasing => {
                    let h = self
                        .maps
                        .held
                        .get(&r.conn, 0)
                        .ok()
                        .filter(|h| h.slot == slot);
                    // Its hold may have ended with the last send: the rest is recycling.
                    let h = h.unwrap_or(HeldSock {
                        trace_id: r.trace,
                        pid_tgid: r.pid_tgid,
                        fd: r.fd,
                        slot,
                        ..HeldSock::default()
                    });
                    let (bytes, dropped) = self.release_socket(r.conn, &h);
                    let o = per_trace.entry(h.trace_id).or_default();
                    o.sockets += 1;
                    o.bytes += bytes;
                    o.dropped += dropped;
                }
                SlotState::Draining => self.recycle(slot),
                SlotState::Pushing => {
                    // Pushing it again could give one slot to two holds.
                    eprintln!(
                        "tracery-hold-keeper: hold slot {slot} was being freed when the last \
                         keeper died; it stays out of use"
                    );
                    let _ = self.journal.write(slot, &SlotRecord::default());
                }
            }
        }
        self.report(per_trace, "recovered");
    }
}
