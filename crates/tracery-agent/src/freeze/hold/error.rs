//! Why messages cannot be held on this node.

use std::path::PathBuf;

use crate::error::AgentError;

/// Something the message holder could not do; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// `/proc/PID/cgroup` could not be read (the process is gone, or /proc is hidden).
    #[error("cannot read /proc/{pid}/cgroup")]
    NoCgroupFile { pid: u32 },
    /// Watching the root cgroup would put every connection of the node under `sk_msg`.
    #[error(
        "process {pid} is in the root cgroup; run it in a cgroup of its own (a container, \
         a systemd service, or a directory under {})",
        root.display()
    )]
    RootCgroup { pid: u32, root: PathBuf },
    /// No cgroup v2 mount shows the process's cgroup.
    #[error("no cgroup v2 mount shows cgroup {cgroup} of process {pid}; mount cgroup v2")]
    NoCgroupMount { pid: u32, cgroup: String },
    /// The cgroup directory could not be opened for attaching the sockops program.
    #[error("cannot open cgroup {}", dir.display())]
    OpenCgroup {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A hold map could not be updated or its descriptor duplicated.
    #[error("hold map {map}")]
    Map {
        map: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The keeper executable was not found.
    #[error(
        "{exe_name} not found next to {}; install it beside the agent or set {env}",
        agent.display()
    )]
    KeeperNotFound {
        exe_name: &'static str,
        agent: PathBuf,
        env: &'static str,
    },
    /// The keeper could not be started.
    #[error("cannot start {}", path.display())]
    KeeperStart {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The keeper answered something other than `ready`.
    #[error("the hold keeper said {line:?}")]
    KeeperAnswer { line: String },
    /// The keeper did not say `ready` in time.
    #[error("the hold keeper did not start (see its log on the agent's stderr)")]
    KeeperSilent,
    /// A step of starting or talking to the keeper failed.
    #[error("{action}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl HoldError {
    /// Maps an I/O error of `action` (for `map_err`).
    pub(crate) fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> AgentError {
        move |source| HoldError::Io { action, source }.into()
    }

    /// Maps an error of hold map `map` (for `map_err`).
    pub(crate) fn map<E: std::error::Error + Send + Sync + 'static>(
        map: &'static str,
    ) -> impl FnOnce(E) -> AgentError {
        move |e| {
            HoldError::Map {
                map,
                source: Box::new(e),
            }
            .into()
        }
    }
}
