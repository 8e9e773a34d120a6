//! Message events: the sends and receives of traced requests on TCP connections, reported
//! so the controller can draw happens-before edges between services.
//!
//! The `sock/sock_send_length` and `sock/sock_recv_length` tracepoints give the socket of
//! every send and receive; the program reads the connection's addresses and the TCP
//! sequence numbers from it (offsets from the kernel's BTF, in `MESSAGE_OFFSETS`). A
//! send's bytes start at `write_seq - len`, a receive's at `copied_seq - len`: both ends
//! of a connection count in the sender's sequence space, so a send and its receive are
//! matched by byte range, never by clock.
//!
//! Only tracked processes, and only messages of a traced request, produce an event: an
//! untraced message costs one map lookup.

/// `MessageEvent::kind`: bytes sent.
pub const MSG_SEND: u32 = 1;
/// `MessageEvent::kind`: bytes received.
pub const MSG_RECV: u32 = 2;

/// `MessageEvent::flags`: `seq` is valid (the TCP offsets are known).
pub const MSG_SEQ: u32 = 1;
/// `MessageEvent::flags`: the send was held (redirected into a hold slot).
pub const MSG_HELD: u32 = 2;
/// `MessageEvent::flags`: the message is an HTTP request or Redis command whose own
/// header named the trace (else the trace is the sending or receiving thread's).
pub const MSG_OWN_CONTEXT: u32 = 4;

/// Bytes of the message ring buffer: about 2,700 events between two reads of the agent,
/// which reads every few milliseconds.
pub const MESSAGE_RING_BYTES: u32 = 256 << 10;

/// One send or receive of a traced request (record of `MESSAGE_EVENTS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageEvent {
    /// `MSG_SEND` or `MSG_RECV`.
    pub kind: u32,
    /// `MSG_*` bits.
    pub flags: u32,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Ports in host byte order.
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u16,
    /// Addresses in network byte order; IPv4 in `[0]`.
    pub local_ip: [u32; 4],
    pub remote_ip: [u32; 4],
    /// TCP sequence number of the first byte (in the sending side's sequence space).
    pub seq: u32,
    /// Bytes sent or received.
    pub len: u32,
    pub pid_tgid: u64,
    /// `bpf_ktime_get_ns` at the event.
    pub ktime_ns: u64,
    /// The Go goroutine (`g`) or tokio task id serving the request; 0 for a thread.
    pub task: u64,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// `MESSAGE_OFFSETS` indexes: byte offsets into `struct sock` (as `struct tcp_sock`),
/// from the kernel's BTF. `SEQ_KNOWN` is non-zero once the agent wrote them all.
pub mod offset {
    /// `sock_common.skc_daddr` (IPv4 remote address).
    pub const DADDR: u32 = 0;
    /// `sock_common.skc_rcv_saddr` (IPv4 local address).
    pub const SADDR: u32 = 1;
    /// `sock_common.skc_dport` (remote port, network byte order).
    pub const DPORT: u32 = 2;
    /// `sock_common.skc_num` (local port, host byte order).
    pub const NUM: u32 = 3;
    /// `sock_common.skc_v6_daddr`.
    pub const V6_DADDR: u32 = 4;
    /// `sock_common.skc_v6_rcv_saddr`.
    pub const V6_SADDR: u32 = 5;
    /// `tcp_sock.write_seq`.
    pub const WRITE_SEQ: u32 = 6;
    /// `tcp_sock.copied_seq`.
    pub const COPIED_SEQ: u32 = 7;
    /// `sock_common.skc_family`.
    pub const FAMILY: u32 = 8;
    /// `sock.sk_protocol`.
    pub const PROTOCOL: u32 = 9;
    /// Non-zero when every offset above was read from BTF; without it no event is made.
    pub const KNOWN: u32 = 10;
    pub const COUNT: u32 = 11;
}

/// `MESSAGE_STATS` indexes.
pub mod stat {
    /// Events written to the ring.
    pub const EMITTED: u32 = 0;
    /// Events lost because the ring was full.
    pub const LOST: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// A receive seen by `sock_recv_length`, kept until the receive path has parsed the bytes:
/// a request's own header names its trace only after the parse. Where the parse runs at
/// that tracepoint, in the same program run, it is this CPU's `RECV_NOW` slot; else the
/// value of `RECV_PENDING`, keyed by pid_tgid, until the system call's exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvPending {
    pub event: MessageEvent,
    /// The socket (`struct sock *`), to find the trace of the last send on it.
    pub sk: u64,
    /// Non-zero when the parse of this receive ended a request's headers.
    pub published: u32,
    pub _pad: u32,
    /// The trace those headers carried (zero: the request is untraced).
    pub trace: crate::trace::TraceContext,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), Copy, integers only, explicit padding.
    unsafe impl aya::Pod for super::MessageEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RecvPending {}
}

const _: () = assert!(core::mem::size_of::<MessageEvent>() == 4 * 2 + 2 * 4 + 32 + 8 + 3 * 8 + 24);
