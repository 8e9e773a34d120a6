//! Starting the hold keeper and talking to it: its executable, the descriptors it gets,
//! and its text protocol (see `crate::freeze::keeper`).

use std::{
    io::{BufRead, BufReader},
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
use tracery_common::hold::MAX_HOLD_SLOTS;

use crate::{
    error::{AgentError, HoldError},
    freeze::keeper::Fds,
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

/// Starts the keeper with the control socket and the maps at [`Fds`], in a session of its
/// own (a Ctrl-C for the agent's process group must not reach it), and waits for `ready`.
pub(super) fn spawn_keeper(
    path: &std::path::Path,
    maps: &[OwnedFd],
) -> Result<(Child, UnixStream, mpsc::Receiver<String>), AgentError> {
    let (ours, theirs) =
        UnixStream::pair().map_err(HoldError::io("creating the keeper's control socket"))?;
    let theirs = sys::dup_above(theirs.as_raw_fd(), 100)
        .map_err(HoldError::io("duplicating the keeper's control socket"))?;
    let sources: Vec<RawFd> = std::iter::once(theirs.as_raw_fd())
        .chain(maps.iter().map(|f| f.as_raw_fd()))
        .collect();
    let mut cmd = Command::new(path);
    cmd.arg("--slots")
        .arg(MAX_HOLD_SLOTS.to_string())
        .stdin(Stdio::null());
    // The sources are all above 100, so placing them at 3.. never overwrites one not yet
    // placed.
    sys::place_fds_before_exec(&mut cmd, sources.into_iter().zip(Fds::ALL).collect())
        .map_err(HoldError::io("placing the keeper's descriptors"))?;
    let child = cmd.spawn().map_err(|source| HoldError::KeeperStart {
        path: path.to_path_buf(),
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
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) if line.starts_with("ready ") => Ok((child, ours, rx)),
        Ok(line) => Err(HoldError::KeeperAnswer { line }.into()),
        Err(_) => Err(HoldError::KeeperSilent.into()),
    }
}
