//! Errors of the agent. Each message says what to do next.

use std::path::PathBuf;

/// Something the agent could not do.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "attaching probes needs root, or the CAP_BPF and CAP_PERFMON capabilities; run with sudo"
    )]
    NotPrivileged,
    #[error("no process with PID {pid}; check the PID with `ps -p {pid}`")]
    NoSuchProcess { pid: u32 },
    #[error(
        "breakpoint {id} targets Kubernetes pods, and this agent has no list of its node's \
         pods; run it in cluster mode (tracery-agent run --kubernetes-node NODE)"
    )]
    NotInCluster { id: u64 },
    #[error("cannot read the executable of PID {pid} ({path})")]
    Executable {
        pid: u32,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read executable {path}; check the path given to --exe or the service's `exe`")]
    ExecutableFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("in {path}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<AgentError>,
    },
    #[error("node cgroup {cgroup} is not found under any cgroup v2 mount; was it removed?")]
    NodeCgroupGone { cgroup: String },
    #[error("cannot load the eBPF programs into the kernel")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the kernel rejected eBPF program {program}")]
    Program {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot turn on the kernel's eBPF run-time statistics (BPF_ENABLE_STATS needs root or CAP_SYS_ADMIN)")]
    Stats(#[source] Box<aya::sys::SyscallError>),
    #[error("eBPF map {map} is missing or has the wrong type")]
    Map {
        map: &'static str,
        #[source]
        source: Option<Box<aya::maps::MapError>>,
    },
    #[error("cannot attach a uprobe at {path}+{offset:#x} in {}", scope_name(*pid))]
    Attach {
        /// The one process; `None` for every process of the file.
        pid: Option<u32>,
        path: PathBuf,
        offset: u64,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("PID {pid} has not mapped its executable {exe}; is it still starting?")]
    NotMapped { pid: u32, exe: PathBuf },
    #[error("process {pid} exited; start it again and re-run")]
    ProcessExited { pid: u32 },
    #[error(transparent)]
    Resolve(#[from] tracery_dwarf::ResolveError),
    #[error("cannot build a capture plan at {address}")]
    Plan {
        address: String,
        #[source]
        source: tracery_dwarf::PlanError,
    },
    #[error("all {max} probe slots are in use; delete some breakpoints")]
    NoFreeSlot { max: u32 },
    #[error("unknown probe {0}")]
    UnknownProbe(u32),
    #[error(transparent)]
    Condition(#[from] tracery_dwarf::condition::ConditionError),
    #[error(
        "--capture placeholder {{{path}}} names no variable in scope at {location}; \
         in scope there: {}",
        if in_scope.is_empty() { "none".to_owned() } else { in_scope.join(", ") }
    )]
    CaptureOutOfScope {
        path: String,
        location: String,
        in_scope: Vec<String>,
    },
    #[error(transparent)]
    Binary(#[from] tracery_dwarf::BinaryError),
    #[error("messages cannot be held")]
    Hold(#[from] HoldError),
    /// Message holds failed to start earlier, for this reason; they are not retried.
    #[error(transparent)]
    HoldsOff(std::sync::Arc<AgentError>),
    #[error("kernel feature check failed: {0}")]
    Feature(FeatureError),
    #[error("eBPF program {program} is missing from the agent's object; rebuild the agent")]
    MissingProgram { program: &'static str },
    #[error("eBPF program {program} in the agent's object has the wrong type; rebuild the agent")]
    WrongProgramType { program: &'static str },
    #[error("at most {max} different --header filters can be active at once")]
    TooManyHeaderFilters { max: u32 },
    #[error("I/O error while {action}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A Node.js breakpoint (`.js`/`.ts` location) failed.
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    /// A Python breakpoint (`.py` location, or a function in a python process) failed.
    #[error(transparent)]
    Python(#[from] crate::python::PythonError),
}

/// A kernel feature the capture path needs and this kernel lacks.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("the uprobe perf PMU is missing (kernel built without CONFIG_UPROBE_EVENTS)")]
    NoUprobePmu,
    #[error("BPF ring buffers are unavailable (Linux >= 5.8 needed)")]
    NoRingBuffer,
    #[error("uprobe attach cookies are unavailable (Linux >= 5.15 needed)")]
    NoAttachCookie,
    #[error("the kernel does not offer {helper} to uprobe programs")]
    NoHelper { helper: &'static str },
}

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

/// "PID 42", or what a probe shared by every process of its file covers.
fn scope_name(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("PID {pid}"),
        None => "every process of the file".to_owned(),
    }
}
