//! Trace scoping and freezing: which requests a breakpoint fires for, and what the agent
//! does to the request's thread when it freezes it.
//!
//! [`tracking`] follows which request each thread, goroutine and task serves;
//! [`suspend`] stops a frozen request's thread; [`hold`] and [`keeper`] hold its messages;
//! [`eval`] reads a stopped thread's memory on demand.

pub mod eval;
pub(crate) mod freezer;
pub mod hold;
#[doc(hidden)]
pub mod keeper;
pub mod suspend;
pub mod tracking;

use std::{fmt, net::SocketAddr, time::SystemTime};

/// Most time a trace may stay frozen, whatever the user asks: a forgotten freeze must not
/// hold a production request for long.
pub const MAX_FREEZE: std::time::Duration = std::time::Duration::from_secs(600);

/// A W3C trace id (16 bytes; B3 64-bit ids are left-padded with zeros).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    /// Parses 32 (or 16, B3 short form) hex digits; all-zero ids are invalid (W3C).
    pub fn parse(s: &str) -> Result<Self, String> {
        tracery_proto::trace::parse_trace_id(s)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// The id as the kernel reports it, `None` when all zero (no trace known).
    pub fn from_kernel(raw: [u8; 16]) -> Option<Self> {
        (raw != [0; 16]).then_some(Self(raw))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// Which requests may trigger a breakpoint. Empty: every hit, traced or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceScope {
    /// Only hits of threads serving this trace.
    pub trace_id: Option<TraceId>,
    /// Only hits of threads serving a request that carried this header (`NAME`, `VALUE`);
    /// the name matches case-insensitively, the value exactly.
    pub header: Option<(String, String)>,
}

impl TraceScope {
    /// True when the scope lets every hit through.
    pub fn is_empty(&self) -> bool {
        self.trace_id.is_none() && self.header.is_none()
    }
}

/// What a breakpoint does to the request it hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreezeSpec {
    /// How long the request stays frozen unless resumed earlier; capped at [`MAX_FREEZE`].
    pub timeout: std::time::Duration,
}

/// Whether a frozen request's thread is stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Suspension {
    /// The thread is stopped at the breakpoint; `trace eval` can read it.
    Stopped,
    /// The thread runs on; why it could not be stopped.
    Running(String),
}

/// One frozen request on this node.
#[derive(Clone, Debug)]
pub struct FrozenThread {
    pub trace_id: TraceId,
    pub breakpoint_id: u64,
    /// The kernel's hit number of the breakpoint site (not the controller's snapshot
    /// sequence: find the snapshot by trace id).
    pub snapshot_seq: u64,
    pub pid: u32,
    pub tid: u32,
    /// `function (file:line)` of the breakpoint.
    pub location: String,
    pub frozen_at: SystemTime,
    /// When it is released by itself.
    pub deadline: SystemTime,
    pub suspension: Suspension,
}

/// Why a trace was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseReason {
    /// `trace resume`.
    Resumed,
    /// Its deadline passed.
    Deadline,
    /// The thread's process exited while frozen.
    ProcessExited,
    /// The agent is shutting down.
    AgentExit,
}

impl fmt::Display for ReleaseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Resumed => "resumed",
            Self::Deadline => "deadline passed",
            Self::ProcessExited => "process exited",
            Self::AgentExit => "agent exited",
        })
    }
}

/// A frozen thread that was let go.
#[derive(Clone, Debug)]
pub struct Released {
    pub thread: FrozenThread,
    pub reason: ReleaseReason,
    pub at: SystemTime,
}

/// One outbound message of a frozen trace held on this node (redirected by the `sk_msg`
/// program before it reached the network), as `trace list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldMessage {
    pub trace_id: TraceId,
    pub pid: u32,
    /// The sending thread.
    pub tid: u32,
    /// The kernel's socket cookie: the connection the message waits to go out on.
    pub socket: u64,
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    pub bytes: u64,
    /// The message's first line, printable, at most [`HeldMessage::FIRST_LINE_MAX`] chars.
    pub first_line: String,
    /// Held only to keep byte order: sent behind held bytes on the same connection by
    /// another request (or one whose trace is unknown).
    pub behind: bool,
    /// The connection also carried other requests' messages (a pooled database
    /// connection, a reused keep-alive connection).
    pub shared: bool,
    pub at: SystemTime,
}

impl HeldMessage {
    /// Longest `first_line` kept.
    pub const FIRST_LINE_MAX: usize = 120;
}

/// Held messages of a trace that were let go on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRelease {
    pub trace_id: TraceId,
    /// Messages and bytes written out, in order, to their connections.
    pub messages: u64,
    pub bytes: u64,
    /// Bytes whose connection was closed by its process meanwhile (reported, not resent).
    pub dropped_bytes: u64,
    pub reason: ReleaseReason,
    pub at: SystemTime,
}

/// What `resume` did.
#[derive(Clone, Debug)]
pub enum ResumeOutcome {
    /// These threads and held messages were let go now.
    Resumed {
        threads: Vec<Released>,
        held: Option<HoldRelease>,
    },
    /// Nothing of the trace is frozen on this node; when it was last released, if known.
    NotFrozen(Option<Released>),
}

/// A change to the frozen requests of this node, for the control plane.
#[derive(Clone, Debug)]
pub enum FreezeEvent {
    Frozen(FrozenThread),
    Released(Released),
    /// A message of a frozen trace is now held here.
    Held(HeldMessage),
    /// A trace's held messages here were let go.
    HoldReleased(HoldRelease),
}

/// Why `trace eval` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("trace {0} has no stopped thread on this node")]
    NotStopped(TraceId),
    #[error("{0}")]
    Expression(String),
    #[error("reading the stopped thread failed: {0}")]
    Read(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_parse_and_print() {
        let id = TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let short = TraceId::parse("a3ce929d0e0e4736").unwrap();
        assert_eq!(short.to_string(), "0000000000000000a3ce929d0e0e4736");
        assert!(TraceId::parse("xyz").is_err());
        assert!(TraceId::parse(&"0".repeat(32)).is_err());
        assert_eq!(TraceId::from_kernel([0; 16]), None);
    }
}
