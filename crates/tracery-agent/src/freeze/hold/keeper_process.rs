//! Starting the hold keeper and talking to it: its executable, the descriptors it gets
//! (kept by the agent for the next keeper, should one die), and its text protocol (see
//! `crate::freeze::keeper`).

use std::{
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    os::{
        fd::{AsFd, AsRawFd, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use aya::maps::Map;

use crate::{
    error::{AgentError, HoldError},
    freeze::keeper::{Fds, Journal},
    freeze::{ReleaseReason, TraceId},
    sys,
};

/// Name of the keeper's executable, looked for next to the agent's.
pub const KEEPER_EXE: &str = "tracery-hold-keeper";
/// Set to the keeper's path to use another one.
pub const KEEPER_ENV: &str = "TRACERY_HOLD_KEEPER";

/// A duplicate of a map's descriptor, above the numbers the keeper expects, for passing.
pub(super) fn map_fd(m: &Map, name: &'static str) -> Result<OwnedFd, AgentError> {
    let data = match m {
        Map::HashMap(d) | Map::Array(d) | Map::Queue(d) | Map::SockHash(d) => d,
        _ => {
            return Err(AgentError::Map {
                map: name,
                source: None,
            })
        }
    };
    sys::dup_above(data.fd().as_fd().as_raw_fd(), 100).map_err(HoldError::map(name))
}

pub(super) fn reason_word(r: ReleaseReason) -> &'static str {
    match r {
        ReleaseReason::Resumed => "resumed",
        ReleaseReason::Deadline => "deadline",
        ReleaseReason::ProcessExited => "process-exited",
        ReleaseReason::AgentExit => "agent-exited",
    }
}

/// `released TRACE REASON SOCKETS BYTES DROPPED` -> (trace, bytes, dropped).
pub(super) fn parse_released(line: &str) -> Option<(TraceId, u64, u64)> {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w.as_slice() {
        ["released", trace, _reason, _sockets, bytes, dropped] => Some((
            TraceId::parse(trace).ok()?,
            bytes.parse().ok()?,
            dropped.parse().ok()?,
        )),
        _ => None,
    }
}

/// The keeper's executable: `$TRACERY_HOLD_KEEPER`, or next to this executable (or one
/// directory up, where cargo puts binaries for tests in `deps/`).
pub(super) fn keeper_path() -> Result<PathBuf, AgentError> {
    if let Some(p) = std::env::var_os(KEEPER_ENV) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(HoldError::io("finding the agent's executable"))?;
    let dir = exe.parent().unwrap_or(std::path::Path::new("/"));
    [dir.join(KEEPER_EXE), dir.join("..").join(KEEPER_EXE)]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            HoldError::KeeperNotFound {
                exe_name: KEEPER_EXE,
                agent: exe.clone(),
                env: KEEPER_ENV,
            }
            .into()
        })
}

/// What every keeper gets, kept by the agent for the next one: the maps, the journal and
/// the sinks held bytes wait in. Because the agent holds the sinks (and their peers), a
/// killed keeper takes none of those bytes with it.
pub(super) struct KeeperKit {
    pub path: PathBuf,
    /// Duplicates above 100, in the order of `Fds::SOCKS..=Fds::HOLD_STATS`.
    pub maps: Vec<OwnedFd>,
    journal: OwnedFd,
    /// Slot `i`'s sink, above 100 (placed at `Fds::SINK0 + i`).
    sinks: Vec<OwnedFd>,
    /// The other ends, so the sink connections stay up.
    _peers: Vec<TcpStream>,
}

impl KeeperKit {
    /// Makes `slots` sink connections on loopback and a journal all of whose slots are free.
    pub fn new(path: PathBuf, maps: Vec<OwnedFd>, slots: u32) -> Result<Self, AgentError> {
        let journal = sys::memfd(c"tracery-hold-journal")
            .map_err(HoldError::io("creating the keeper's journal"))?;
        let file = std::fs::File::from(journal);
        file.set_len(Journal::size(slots))
            .map_err(HoldError::io("sizing the keeper's journal"))?;
        let journal = sys::dup_above(file.as_raw_fd(), 100)
            .map_err(HoldError::io("duplicating the keeper's journal"))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(HoldError::io("binding the hold sinks' listener"))?;
        let addr = listener
            .local_addr()
            .map_err(HoldError::io("reading the hold sinks' address"))?;
        let mut sinks = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..slots {
            let peer = TcpStream::connect(addr).map_err(HoldError::io("connecting a hold sink"))?;
            let (sink, _) = listener
                .accept()
                .map_err(HoldError::io("accepting a hold sink"))?;
            sink.set_nonblocking(true)
                .map_err(HoldError::io("making a hold sink non-blocking"))?;
            sinks.push(
                sys::dup_above(sink.as_raw_fd(), 100)
                    .map_err(HoldError::io("duplicating a hold sink"))?,
            );
            peers.push(peer);
        }
        Ok(Self {
            path,
            maps,
            journal,
            sinks,
            _peers: peers,
        })
    }

    /// Slot `i`'s sink, for the sockhash.
    pub fn sinks(&self) -> impl Iterator<Item = (u32, RawFd)> + '_ {
        (0u32..).zip(self.sinks.iter().map(|s| s.as_raw_fd()))
    }

    pub fn slots(&self) -> u32 {
        self.sinks.len() as u32
    }
}

/// A running keeper: its process, its control socket, and the lines it sent.
pub(super) struct RunningKeeper {
    pub child: Child,
    pub control: UnixStream,
    pub replies: mpsc::Receiver<String>,
}

/// Starts a keeper with the control socket, maps, journal and sinks at [`Fds`], in a
/// session of its own (a Ctrl-C for the agent's process group must not reach it), and
/// waits for `ready`.
pub(super) fn spawn_keeper(kit: &KeeperKit) -> Result<RunningKeeper, AgentError> {
    let (ours, theirs) =
        UnixStream::pair().map_err(HoldError::io("creating the keeper's control socket"))?;
    let theirs = sys::dup_above(theirs.as_raw_fd(), 100)
        .map_err(HoldError::io("duplicating the keeper's control socket"))?;
    let sources: Vec<RawFd> = std::iter::once(&theirs)
        .chain(&kit.maps)
        .chain(std::iter::once(&kit.journal))
        .chain(&kit.sinks)
        .map(|f| f.as_raw_fd())
        .collect();
    let targets = Fds::FIXED
        .into_iter()
        .chain((0..kit.sinks.len() as RawFd).map(|i| Fds::SINK0 + i));
    let mut cmd = Command::new(&kit.path);
    cmd.arg("--slots")
        .arg(kit.slots().to_string())
        .stdin(Stdio::null());
    // The sources are all above 100 and the targets below, so placing them in order
    // never overwrites one not yet placed.
    sys::place_fds_before_exec(&mut cmd, sources.into_iter().zip(targets).collect())
        .map_err(HoldError::io("placing the keeper's descriptors"))?;
    let mut child = cmd.spawn().map_err(|source| HoldError::KeeperStart {
        path: kit.path.clone(),
        source,
    })?;
    drop(theirs);
    let (tx, rx) = mpsc::channel();
    let reader = ours
        .try_clone()
        .map_err(HoldError::io("duplicating the keeper's control socket"))?;
    std::thread::Builder::new()
        .name("hold-keeper".into())
        .spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        })
        .map_err(HoldError::io("starting the keeper's reader thread"))?;
    let failed = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) if line.starts_with("ready ") => {
            return Ok(RunningKeeper {
                child,
                control: ours,
                replies: rx,
            })
        }
        Ok(line) => HoldError::KeeperAnswer { line },
        Err(_) => HoldError::KeeperSilent,
    };
    let _ = child.kill();
    let _ = child.wait();
    Err(failed.into())
}
