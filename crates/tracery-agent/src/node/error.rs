//! What can go wrong with a Node.js breakpoint; each message says what to do next.

use std::time::Duration;

/// A Node breakpoint could not be set, or the inspector failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A `.js`/`.ts` location was given for a process that is not Node.
    #[error(
        "PID {pid} runs {exe}, not Node.js: a .js or .ts location needs a Node process; give \
         the PID of the `node` process, or a native FILE:LINE for this one"
    )]
    NotNode { pid: u32, exe: String },
    /// SIGUSR1 would not open the inspector (or would kill the process).
    #[error(
        "cannot open the inspector of Node process {pid}: {reason}; restart it without \
         --disable-sigusr1, or with --inspect=127.0.0.1:0, so Tracery can attach"
    )]
    SignalDisabled { pid: u32, reason: String },
    /// SIGUSR1 was sent and no inspector started listening.
    #[error(
        "Node process {pid} did not open its inspector within {after:?} of SIGUSR1: it handles \
         SIGUSR1 itself (process.on('SIGUSR1')) or runs with --disable-sigusr1; start it with \
         --inspect=127.0.0.1:0 to allow breakpoints"
    )]
    NotOpened { pid: u32, after: Duration },
    /// The inspector's port is in use by another socket.
    #[error(
        "Node process {pid} cannot open its inspector: port {port} is taken{}; free the port, \
         or start Node with --inspect-port=0",
        if *owner == 0 { String::new() } else { format!(" by PID {owner}") }
    )]
    PortTaken { pid: u32, port: u16, owner: u32 },
    /// No loaded script has the file's path (and no source map names it).
    #[error(
        "no script of Node process {pid} matches {file} (matched as a path suffix of the \
         script URLs); {}",
        if similar.is_empty() { "it has loaded no application script yet".to_owned() }
        else { format!("its scripts include: {}", similar.join(", ")) }
    )]
    NoScript {
        pid: u32,
        file: String,
        similar: Vec<String>,
    },
    /// The line has no code V8 can break on.
    #[error(
        "{file}:{line} has no code in Node process {pid}; {}",
        if nearest.is_empty() { "no line near it has code either".to_owned() }
        else { format!("lines with code nearby: {}", nearest.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")) }
    )]
    NoCode {
        pid: u32,
        file: String,
        line: u32,
        nearest: Vec<u32>,
    },
    /// `--when` has a part JavaScript cannot evaluate the same way.
    #[error("--when `{condition}` cannot be evaluated in JavaScript: {reason}")]
    When { condition: String, reason: String },
    /// An option that Node breakpoints do not offer.
    #[error("{what} is not available for Node.js breakpoints; {hint}")]
    Unsupported {
        what: &'static str,
        hint: &'static str,
    },
    /// A `--capture` placeholder names no variable in scope.
    #[error(
        "--capture placeholder {{{path}}} names no variable in scope at {location}; in scope there: {}",
        if in_scope.is_empty() { "none".to_owned() } else { in_scope.join(", ") }
    )]
    CaptureOutOfScope {
        path: String,
        location: String,
        in_scope: Vec<String>,
    },
    /// The WebSocket handshake failed.
    #[error("cannot open a session on the inspector of Node process {pid}: {reason}")]
    WebSocket { pid: u32, reason: String },
    /// The inspector answered a command with an error.
    #[error("the Node inspector refused {method}: {reason}")]
    Protocol { method: String, reason: String },
    /// The inspector did not answer in time.
    #[error("the Node inspector did not answer {method} within {after:?}; is the process busy or stopped?")]
    Timeout { method: String, after: Duration },
    /// The connection closed under a command.
    #[error("the Node inspector closed the connection during {method}; did the process exit?")]
    Closed { method: String },
    /// A system call failed.
    #[error("I/O error while {action}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}
