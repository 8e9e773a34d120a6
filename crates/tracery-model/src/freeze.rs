//! Frozen requests: how a breakpoint scopes and freezes them, and what an agent reports
//! of the threads it stopped and the messages it holds.

use std::{
    fmt,
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use crate::trace::{TraceId, MAX_FREEZE_SECONDS};

/// Most time a trace may stay frozen, whatever the user asks: a forgotten freeze must not
/// hold a production request for long.
pub const MAX_FREEZE: Duration = Duration::from_secs(MAX_FREEZE_SECONDS);

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
    pub timeout: Duration,
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
    /// The request's trace.
    pub trace_id: TraceId,
    /// The breakpoint that froze it.
    pub breakpoint_id: u64,
    /// The kernel's hit number of the breakpoint site (not the controller's snapshot
    /// sequence: find the snapshot by trace id).
    pub snapshot_seq: u64,
    /// The process of the stopped thread.
    pub pid: u32,
    /// The stopped (or, see `suspension`, running) thread.
    pub tid: u32,
    /// `function (file:line)` of the breakpoint.
    pub location: String,
    /// When it froze.
    pub frozen_at: SystemTime,
    /// When it is released by itself.
    pub deadline: SystemTime,
    /// Whether the thread is stopped.
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
    /// The thread as it was frozen.
    pub thread: FrozenThread,
    /// Why it was let go.
    pub reason: ReleaseReason,
    /// When.
    pub at: SystemTime,
}

/// One outbound message of a frozen trace held on this node (redirected by the `sk_msg`
/// program before it reached the network), as `trace list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldMessage {
    /// The frozen trace the message belongs to.
    pub trace_id: TraceId,
    /// The sending process.
    pub pid: u32,
    /// The sending thread.
    pub tid: u32,
    /// The kernel's socket cookie: the connection the message waits to go out on.
    pub socket: u64,
    /// The connection's local address, when known.
    pub local: Option<SocketAddr>,
    /// The connection's peer address, when known.
    pub peer: Option<SocketAddr>,
    /// Size of the held message.
    pub bytes: u64,
    /// The message's first line, printable, at most [`HeldMessage::FIRST_LINE_MAX`] chars.
    pub first_line: String,
    /// The message's first bytes decoded by protocol; `None` when none were seen.
    pub decoded: Option<crate::wire::DecodedMessage>,
    /// Held only to keep byte order: sent behind held bytes on the same connection by
    /// another request (or one whose trace is unknown).
    pub behind: bool,
    /// The connection also carried other requests' messages (a pooled database
    /// connection, a reused keep-alive connection).
    pub shared: bool,
    /// When it was held.
    pub at: SystemTime,
}

impl HeldMessage {
    /// Longest `first_line` kept.
    pub const FIRST_LINE_MAX: usize = 120;
}

/// Held messages of a trace that were let go on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRelease {
    /// The trace whose messages went out.
    pub trace_id: TraceId,
    /// Messages and bytes written out, in order, to their connections.
    pub messages: u64,
    /// Bytes written out.
    pub bytes: u64,
    /// Bytes whose connection was closed by its process meanwhile (reported, not resent).
    pub dropped_bytes: u64,
    /// Why they were let go.
    pub reason: ReleaseReason,
    /// When.
    pub at: SystemTime,
}

/// The controller's request to hold a trace's outbound messages on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldRequest {
    /// The frozen trace.
    pub trace_id: TraceId,
    /// When the node lets the messages go by itself.
    pub deadline: SystemTime,
}

impl HoldRequest {
    /// The deadline capped at [`MAX_FREEZE`] from `now`: a controller's mistake must not
    /// hold a node's requests for longer.
    pub fn capped_deadline(&self, now: SystemTime) -> SystemTime {
        self.deadline.min(now + MAX_FREEZE)
    }
}
