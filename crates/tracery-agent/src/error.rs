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
    #[error("cannot read the executable of PID {pid} ({path})")]
    Executable {
        pid: u32,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the eBPF programs into the kernel")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the kernel rejected eBPF program {program}")]
    Program {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("eBPF map {map} is missing or has the wrong type")]
    Map {
        map: &'static str,
        #[source]
        source: Option<Box<aya::maps::MapError>>,
    },
    #[error("cannot attach a uprobe at {path}+{offset:#x} in PID {pid}")]
    Attach {
        pid: u32,
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
    #[error("messages cannot be held: {0}")]
    Hold(String),
    #[error("kernel feature check failed: {0}")]
    Feature(String),
    #[error("I/O error while {action}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}
