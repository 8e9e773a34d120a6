//! Message holds: the outbound messages of a frozen trace wait in a keeper process until
//! the trace is resumed or its deadline passes.
//!
//! A sockops program puts the TCP sockets of watched cgroups into a sockhash. The `sk_msg`
//! program on that sockhash sees every message sent on them. A message of a frozen trace
//! is redirected into one of the keeper's sink sockets (a hold slot); later messages on
//! the same socket follow it into the slot, so byte order is kept. On release the keeper
//! writes the slot's bytes back through a duplicate of the sender's own socket
//! (`pidfd_getfd`), which the program recognises by the keeper's tgid and lets through.
//! The kernel counts bytes held and written back on the sender's socket under its lock,
//! and ends the hold when they match, so nothing overtakes the released bytes.

/// Most hold slots (keeper sink sockets): sockets holding bytes at once, on this node.
pub const MAX_HOLD_SLOTS: u32 = 64;
/// Most traces frozen at once on this node.
pub const MAX_FROZEN: u32 = 256;
/// Most sockets of watched cgroups in the sockhash.
pub const MAX_WATCHED_SOCKS: u32 = 65536;
/// `SockKey::family` of the keeper's sink sockets (slot in `local_port`).
pub const SINK_FAMILY: u32 = 0xffff;

/// A TCP connection, as both the sockops and the `sk_msg` programs see it: the key of
/// `SOCKS`, `HELD` and `SOCK_LAST`. (`sk_msg` programs may not read socket cookies on
/// this kernel, so the 4-tuple names the connection.) Fields are as the kernel's context
/// structs give them: IPv4 addresses in `[0]`, network byte order; `remote_port` as
/// loaded from the context (network byte order, shifted left 16 on little-endian).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SockKey {
    /// `AF_INET`, `AF_INET6`, or `SINK_FAMILY`.
    pub family: u32,
    pub local_port: u32,
    pub remote_port: u32,
    pub _pad: u32,
    pub local_ip: [u32; 4],
    pub remote_ip: [u32; 4],
}

impl SockKey {
    /// The key of hold slot `slot`'s sink socket.
    pub const fn sink(slot: u32) -> Self {
        Self {
            family: SINK_FAMILY,
            local_port: slot,
            remote_port: 0,
            _pad: 0,
            local_ip: [0; 4],
            remote_ip: [0; 4],
        }
    }
}
/// Bytes of each held message copied into its event, for `trace list` and the decoded
/// pending work `trace view` shows. A power of two: the eBPF side masks lengths with it.
pub const HOLD_PREVIEW: usize = 1024;
/// Bytes of an outbound message searched for a trace header.
pub const HOLD_SCAN: u32 = 4096;

/// A frozen trace (value of `FROZEN`, keyed by the 16-byte trace id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrozenTrace {
    /// `bpf_ktime_get_ns` after which no new message of the trace is held.
    pub deadline_ns: u64,
}

/// `HeldSock::state`: messages go into the slot (a socket in `RELEASING` is being written
/// back; new messages still go into the slot until every held byte is out).
pub const HOLD_HOLDING: u32 = 0;

/// A socket with held bytes (value of `HELD`, keyed by socket cookie).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldSock {
    /// The frozen trace whose message started the hold.
    pub trace_id: [u8; 16],
    /// The trace's deadline when the hold began (the keeper releases by it).
    pub deadline_ns: u64,
    /// Bytes redirected into the slot, every message included.
    pub held_bytes: u64,
    /// Bytes the keeper has written back through the socket.
    pub pushed_bytes: u64,
    /// The sender of the first held message.
    pub pid_tgid: u64,
    pub slot: u32,
    /// `HOLD_HOLDING`.
    pub state: u32,
    /// The socket's descriptor in the sender, from its send system call; -1 when unknown.
    pub fd: i32,
    /// Messages redirected into the slot.
    pub messages: u32,
}

/// What the current thread is sending (value of `SEND_CTX`, keyed by pid_tgid), set at
/// the entry of a send system call of a tracked process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendCtx {
    /// The trace the sending thread or goroutine serves; zero when none.
    pub trace_id: [u8; 16],
    pub fd: i32,
    pub _pad: u32,
}

/// `HoldEvent::flags`: the message is held only because earlier bytes of its socket are.
pub const HELD_BEHIND: u32 = 1;
/// `HoldEvent::flags`: the socket carried another trace's messages before.
pub const HELD_SHARED: u32 = 2;
/// `HoldEvent::flags`: no hold slot was free; the message went out unheld.
pub const HELD_NO_SLOT: u32 = 4;
/// `HoldEvent::flags`: the redirect failed (no keeper sink); the message went out unheld.
pub const HELD_REDIRECT_FAILED: u32 = 8;

/// One message held (or that should have been), reported through `HOLD_EVENTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HoldEvent {
    pub sock: SockKey,
    pub pid_tgid: u64,
    pub ktime_ns: u64,
    /// The trace the socket is held for.
    pub trace_id: [u8; 16],
    /// The trace the message itself belongs to, when known (differs for `HELD_BEHIND`).
    pub msg_trace: [u8; 16],
    pub len: u32,
    pub slot: u32,
    pub fd: i32,
    /// `HELD_*` bits.
    pub flags: u32,
    pub preview_len: u32,
    pub preview: [u8; HOLD_PREVIEW],
}

/// `HOLD_STATS` indexes: counters the agent reports.
pub mod stat {
    /// Messages redirected into a hold slot.
    pub const HELD: u32 = 0;
    /// Messages of a frozen trace that went out unheld (no free slot, redirect failed).
    pub const MISSED: u32 = 1;
    /// Hold events lost because the ring buffer was full.
    pub const EVENTS_LOST: u32 = 2;
    /// Bytes the keeper wrote back.
    pub const PUSHED: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// `HOLD_CONF` indexes.
pub mod conf {
    /// The keeper's tgid: its sends are releases.
    pub const KEEPER_TGID: u32 = 0;
    /// Non-zero while holds are armed: a `--freeze` breakpoint is armed, or a trace is
    /// frozen. Set by the agent and by the capture probe on a freezing hit; while zero,
    /// send calls are not followed and no message is scanned for a trace header.
    pub const ANY_FROZEN: u32 = 1;
    pub const COUNT: u32 = 2;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), Copy, integers only, explicit padding.
    unsafe impl aya::Pod for super::FrozenTrace {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::HeldSock {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SendCtx {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::HoldEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockKey {}
}

const _: () = assert!(core::mem::size_of::<HeldSock>() == 16 + 8 * 4 + 4 * 4);
const _: () = assert!(core::mem::size_of::<SockKey>() == 48);
const _: () = assert!(core::mem::size_of::<HoldEvent>() == 48 + 2 * 8 + 32 + 6 * 4 + HOLD_PREVIEW);
