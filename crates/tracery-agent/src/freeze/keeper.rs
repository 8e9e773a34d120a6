//! The hold keeper: a small process that owns the sink sockets held messages wait in.
//!
//! It is a process of its own so held bytes outlive the agent: if the agent dies (even by
//! SIGKILL), the keeper sees its control socket close, stops new holds, writes every held
//! byte out in order and exits. It also enforces each hold's deadline by itself.
//!
//! The agent starts it with these descriptors (see [`Fds`]) and talks to it in text lines:
//! - agent -> keeper: `release TRACE_HEX REASON`, `release-all REASON`;
//! - keeper -> agent: `ready SLOTS`, then for each release
//!   `released TRACE_HEX REASON SOCKETS BYTES DROPPED_BYTES`.

use std::{
    collections::{BTreeMap, HashSet},
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::{
        fd::{AsRawFd, RawFd},
        unix::net::UnixStream,
    },
    sync::mpsc::TryRecvError,
    time::{Duration, Instant},
};

use aya::maps::{Array, HashMap, Map, MapData, MapError, Queue, SockHash};
use tracery_common::hold::{conf, FrozenTrace, HeldSock, SockKey, MAX_HOLD_SLOTS};

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

/// Descriptor numbers the keeper finds its control socket and maps at.
pub struct Fds;

impl Fds {
    pub const CONTROL: RawFd = 3;
    pub const SOCKS: RawFd = 4;
    pub const HELD: RawFd = 5;
    pub const RELEASING: RawFd = 6;
    pub const FREE_SLOTS: RawFd = 7;
    pub const HOLD_CONF: RawFd = 8;
    pub const FROZEN: RawFd = 9;
    /// All of them, in order.
    pub const ALL: [RawFd; 7] = [
        Self::CONTROL,
        Self::SOCKS,
        Self::HELD,
        Self::RELEASING,
        Self::FREE_SLOTS,
        Self::HOLD_CONF,
        Self::FROZEN,
    ];
}

/// Past a hold's deadline, how long the keeper waits for the agent's release before it
/// releases by itself.
const DEADLINE_GRACE: Duration = Duration::from_millis(500);
/// Most time one socket's release may take (a peer that stops reading).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Every byte the sink showed went out, yet the kernel still counts the hold: after this
/// long with nothing new in the sink, the count is stale and the hold ends. The kernel
/// redirects into the sink synchronously, so held bytes never take this long to show.
const RELEASE_QUIET: Duration = Duration::from_millis(500);
/// Most bytes kept per slot; beyond it the slot is not read until released (the sender
/// then sees its socket buffer fill, as with a slow peer).
const SLOT_BUFFER_MAX: usize = 64 << 20;

struct Slot {
    sink: TcpStream,
    /// The other end of the sink connection, kept open so the connection stays up.
    _peer: TcpStream,
    buf: Vec<u8>,
}

struct Maps {
    socks: SockHash<MapData, SockKey>,
    held: HashMap<MapData, SockKey, HeldSock>,
    releasing: HashMap<MapData, SockKey, u32>,
    free: Queue<MapData, u32>,
    conf: Array<MapData, u64>,
    frozen: HashMap<MapData, [u8; 16], FrozenTrace>,
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
            socks: map(Fds::SOCKS, "SOCKS")?,
            held: map(Fds::HELD, "HELD")?,
            releasing: map(Fds::RELEASING, "RELEASING")?,
            free: map(Fds::FREE_SLOTS, "FREE_SLOTS")?,
            conf: map(Fds::HOLD_CONF, "HOLD_CONF")?,
            frozen: map(Fds::FROZEN, "FROZEN")?,
        })
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
    slots: Vec<Slot>,
    control: UnixStream,
}

/// The keeper's `main`: runs until the agent asks it to stop or goes away.
pub fn run(slots: u32) -> Result<(), KeeperError> {
    let slots = slots.clamp(1, MAX_HOLD_SLOTS);
    let control = UnixStream::from(sys::take_inherited_fd(Fds::CONTROL).ok_or(
        KeeperError::NotInherited {
            what: "control socket",
            fd: Fds::CONTROL,
        },
    )?);
    let mut maps = Maps::inherit()?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding the sink listener"))?;
    let sink_addr = listener
        .local_addr()
        .map_err(io("reading the sink address"))?;
    let mut sinks = Vec::new();
    for i in 0..slots {
        let peer = TcpStream::connect(sink_addr).map_err(io("connecting a sink"))?;
        let (sink, _) = listener.accept().map_err(io("accepting a sink"))?;
        sink.set_nonblocking(true)
            .map_err(io("making a sink non-blocking"))?;
        maps.socks
            .insert(SockKey::sink(i), sink.as_raw_fd(), 0)
            .map_err(map_update("SOCKS"))?;
        maps.free.push(i, 0).map_err(map_update("FREE_SLOTS"))?;
        sinks.push(Slot {
            sink,
            _peer: peer,
            buf: Vec::new(),
        });
    }
    maps.conf
        .set(conf::KEEPER_TGID, u64::from(std::process::id()), 0)
        .map_err(map_update("HOLD_CONF"))?;
    let mut k = Keeper {
        maps,
        slots: sinks,
        control,
    };
    writeln!(k.control, "ready {slots}").map_err(io("telling the agent it is ready"))?;
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
        // Commands are read on a thread so the main loop can poll sinks and deadlines.
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
            self.drain_sinks(Duration::from_millis(20));
            self.expire();
            match rx.try_recv() {
                Ok(Some(line)) => {
                    // Never exit over one bad line: held bytes would be lost with us.
                    if let Err(e) = self.command(line.trim()) {
                        eprintln!("tracery-hold-keeper: {}", tracery_model::error::chain(&e));
                    }
                }
                Ok(None) | Err(TryRecvError::Disconnected) => {
                    // The agent is gone: no new holds, and everything held goes out.
                    self.stop_holding();
                    self.release_where(|_| true, "agent-exited");
                    return Ok(());
                }
                Err(TryRecvError::Empty) => {}
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

    /// Waits up to `wait` for bytes the kernel redirected into a sink, and reads them. One
    /// poll for all sinks: an idle keeper costs a few wake-ups a second.
    fn drain_sinks(&mut self, wait: Duration) {
        let fds: Vec<RawFd> = self.slots.iter().map(|s| s.sink.as_raw_fd()).collect();
        let Ok(ready) = sys::readable_among(&fds, wait) else {
            return;
        };
        for (s, _) in self.slots.iter_mut().zip(ready).filter(|(_, r)| *r) {
            read_available(s);
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

    /// Writes a socket's held bytes back through a duplicate of the sender's descriptor,
    /// until the kernel ends the hold. Returns (bytes written, bytes dropped).
    fn release_socket(&mut self, conn: SockKey, h: &HeldSock) -> (u64, u64) {
        let slot = h.slot as usize;
        if slot >= self.slots.len() {
            return (0, 0);
        }
        let _ = self.maps.releasing.insert(conn, 1, 0);
        let target =
            crate::freeze::connections::sender_socket((h.pid_tgid >> 32) as u32, h.fd, &conn);
        let started = Instant::now();
        let mut progress = started;
        let (mut written, mut dropped) = (0u64, 0u64);
        loop {
            let before = self.slots[slot].buf.len();
            read_available(&mut self.slots[slot]);
            let s = &mut self.slots[slot];
            if s.buf.len() != before {
                progress = Instant::now();
            }
            let still_held = self.maps.held.get(&conn, 0).is_ok();
            if s.buf.is_empty() && !still_held {
                break;
            }
            if s.buf.is_empty() && progress.elapsed() > RELEASE_QUIET {
                // Seen when the agent dies mid-freeze: the kernel's count of pushed bytes
                // lags behind what went out. Nothing is left to send.
                let _ = self.maps.held.remove(&conn);
                break;
            }
            if started.elapsed() > RELEASE_TIMEOUT {
                // The peer stopped reading, or the socket went away under us: what is left
                // is reported as dropped, never silently lost.
                dropped += s.buf.len() as u64;
                s.buf.clear();
                let _ = self.maps.held.remove(&conn);
                break;
            }
            let Some(fd) = &target else {
                dropped += s.buf.len() as u64;
                s.buf.clear();
                // Nobody can send on the socket any more; end the hold here.
                let _ = self.maps.held.remove(&conn);
                continue;
            };
            if s.buf.is_empty() {
                // The kernel counted bytes the sink has not shown yet.
                let _ = sys::wait_readable(s.sink.as_raw_fd(), Duration::from_millis(5));
                continue;
            }
            match sys::send_nowait(fd.as_raw_fd(), &s.buf) {
                Ok(n) => {
                    s.buf.drain(..n);
                    written += n as u64;
                    progress = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let _ = sys::wait_writable(fd.as_raw_fd(), Duration::from_millis(50));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The connection is broken (reset, closed): its bytes cannot go out.
                    dropped += s.buf.len() as u64;
                    s.buf.clear();
                    let _ = self.maps.held.remove(&conn);
                }
            }
        }
        let _ = self.maps.releasing.remove(&conn);
        let _ = self.maps.free.push(h.slot, 0);
        (written, dropped)
    }
}

fn read_available(s: &mut Slot) {
    let mut chunk = [0u8; 16 << 10];
    while s.buf.len() < SLOT_BUFFER_MAX {
        match s.sink.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => s.buf.extend_from_slice(&chunk[..n]),
            Err(_) => return,
        }
    }
}
