//! What can go wrong with a Python breakpoint; each message says what to do next.

/// A Python breakpoint could not be set, or the interpreter could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    /// A `.py` location was given for a process that runs no CPython.
    #[error(
        "PID {pid} runs {exe}, which has no CPython interpreter (no _PyRuntime symbol in it or \
         in a libpython it maps): a .py location needs a python process"
    )]
    NotPython { pid: u32, exe: String },
    /// The interpreter's version has no offset table.
    #[error(
        "PID {pid} runs Python {version} ({path}); Tracery reads the frames of CPython {} only: \
         run the service with a supported python",
        super::interpreter::SUPPORTED.join(", ")
    )]
    UnsupportedVersion {
        pid: u32,
        version: String,
        path: String,
    },
    /// The live interpreter does not look the way the offset table says.
    #[error(
        "the offsets for Python {version} do not fit PID {pid}'s interpreter ({path}): \
         {check}; refusing to read its memory rather than show wrong values"
    )]
    OffsetMismatch {
        pid: u32,
        version: String,
        path: String,
        check: String,
    },
    /// No loaded code object comes from the file.
    #[error(
        "no code of Python process {pid} comes from {file} (matched as a path suffix of \
         co_filename); {}",
        if similar.is_empty() { "its modules name no similar file".to_owned() }
        else { format!("its files include: {}", similar.join(", ")) }
    )]
    NoFile {
        pid: u32,
        file: String,
        similar: Vec<String>,
    },
    /// The file is loaded, but no instruction starts the line.
    #[error(
        "{file}:{line} has no code in Python process {pid}; {}",
        if nearest.is_empty() { "no line near it has code either".to_owned() }
        else { format!("lines with code nearby: {}", nearest.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")) }
    )]
    NoCode {
        pid: u32,
        file: String,
        line: u32,
        nearest: Vec<u32>,
    },
    /// No function of that name is loaded.
    #[error(
        "no function {function} in Python process {pid} (give module.function or \
         module.Class.method, as Python's __qualname__ with its module)"
    )]
    NoFunction { pid: u32, function: String },
    /// More sites than a thread's debug registers hold.
    #[error(
        "{location} needs {wanted} hardware watchpoint{} in each thread of PID {pid}, and \
         {free} are free: a thread has 4 debug registers (x86-64), so the Python breakpoints \
         of one process watch at most 4 sites together; remove another Python breakpoint of \
         this process or choose a line with fewer code paths",
        if *wanted == 1 { "" } else { "s" }
    )]
    TooManySites {
        pid: u32,
        location: String,
        wanted: usize,
        free: usize,
    },
    /// Reading the process (its memory, its maps) failed.
    #[error("cannot {action} of PID {pid}")]
    Read {
        pid: u32,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The interpreter's file could not be parsed.
    #[error("cannot read the ELF symbols of {path}")]
    Elf {
        path: String,
        #[source]
        source: object::Error,
    },
    /// Loading the eBPF program or opening a watchpoint failed.
    #[error("cannot {action}")]
    Kernel {
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A condition that cannot be parsed.
    #[error("invalid --when {condition:?}: {reason}")]
    When { condition: String, reason: String },
    /// Something Python breakpoints do not do.
    #[error("{what} is not supported on Python breakpoints: {hint}")]
    Unsupported {
        what: &'static str,
        hint: &'static str,
    },
}
