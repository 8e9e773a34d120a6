//! Message events: a send or receive of a traced request on a TCP connection, as an agent
//! saw it in the kernel. The controller matches each send to its receive by connection
//! and byte range to draw happens-before edges between services.

use std::{net::SocketAddr, time::SystemTime};

use crate::TraceId;

/// Which way the bytes went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    Send,
    Recv,
}

impl MessageKind {
    /// `send` or `recv`, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Send => "send",
            MessageKind::Recv => "recv",
        }
    }

    /// The kind named `s` (`send` or `recv`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "send" => Some(MessageKind::Send),
            "recv" => Some(MessageKind::Recv),
            _ => None,
        }
    }
}

/// One send or receive of a traced request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageEvent {
    pub trace_id: TraceId,
    pub kind: MessageKind,
    /// This process's end of the connection.
    pub local: SocketAddr,
    /// The other end.
    pub remote: SocketAddr,
    /// TCP sequence number of the first byte, in the sending side's sequence space (the
    /// same number at both ends); `None` when unknown (a held send).
    pub seq: Option<u32>,
    pub bytes: u32,
    pub pid: u32,
    pub tid: u32,
    /// The Go goroutine (`g` address) or tokio task id that served the request; 0 for a
    /// plain thread.
    pub task: u64,
    /// Wall-clock time of the event on the agent's node (clocks of nodes differ).
    pub time: SystemTime,
    /// The send was held by a freeze (it left later, on release).
    pub held: bool,
    /// The process's name (`/proc/PID/comm`), naming its lane.
    pub process_name: String,
}

/// A batch of message events from one agent, with the events its kernel lost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageBatch {
    pub events: Vec<MessageEvent>,
    /// Events lost since the agent started because the kernel's ring was full.
    pub lost_total: u64,
}
