//! Trace tracking: which request each thread (or Go goroutine) serves, learned from the
//! trace headers of inbound plaintext HTTP/1.x requests.
//!
//! Syscall tracepoints see every receive of a tracked process. A small per-connection
//! parser runs over the received bytes as a stream, so headers split across reads (or
//! beyond the first read) are found. At the end of a request's headers the trace the
//! request carries (or none) becomes the receiving thread's and goroutine's trace.

/// Bytes of one receive the parser reads per window (the per-CPU scratch size).
pub const TRACE_WINDOW: usize = 4096;
/// Most bytes of one receive the parser looks at. Header blocks are small; a receive that
/// is mostly body is skipped using `Content-Length`, not scanned.
pub const TRACE_SCAN_MAX: u32 = 16384;
/// Most `--header NAME=VALUE` filters active at once (bits of a `u32`).
pub const MAX_HEADER_FILTERS: u32 = 32;
/// Most tracked processes.
pub const MAX_TRACKED: u32 = 4096;
/// Most connections with parser state; least recently used ones are forgotten.
pub const MAX_CONNS: u32 = 16384;
/// Most threads and goroutines with a known trace; least recently used are forgotten.
pub const MAX_TRACED: u32 = 65536;

/// `TRACE_PIDS` flag: the process is Go; key traces by goroutine (`g` in R14) too.
pub const TRACK_GO: u32 = 1;
/// `TRACE_PIDS` flag: the process runs tokio tasks; key traces by task too (the task
/// being polled on the thread, from the uprobe on `tokio::runtime::task::raw::poll`).
/// A worker thread runs many requests' tasks, so its own last request says little.
pub const TRACK_TASKS: u32 = 2;

/// A tracked process (value of `TRACE_PIDS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackedProc {
    /// `TRACK_*` bits.
    pub flags: u32,
    /// Go: offset of `runtime.g.atomicstatus`, 0 when unknown (goroutines are then never
    /// stopped).
    pub g_status: u32,
}

/// `GO_SUSPEND` value of a goroutine waiting for its next system call to be stopped.
pub const GO_SUSPEND_PENDING: u64 = 0;
/// `runtime.g.atomicstatus` of a goroutine in a system call (`_Gsyscall`).
pub const G_SYSCALL: u32 = 3;

/// Where a trace id came from, in rising priority: a request carrying several trace
/// headers is tied to the W3C one.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceSource {
    None = 0,
    Uber = 1,
    B3 = 2,
    W3c = 3,
}

/// The request a thread or goroutine serves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// All zero when the request carried no trace header.
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Bit `i` set: the request carried the header of `--header` filter `i`.
    pub header_bits: u32,
    /// A [`TraceSource`] as `u8`.
    pub source: u8,
    pub _pad: [u8; 3],
    /// `bpf_ktime_get_ns` when the request's headers ended.
    pub ktime_ns: u64,
}

/// Connection phases of the parser.
pub mod phase {
    /// Expecting a request line; the first four bytes must be an HTTP method.
    pub const START: u8 = 0;
    /// Inside the request line or the headers.
    pub const HEADERS: u8 = 1;
    /// Skipping `body_left` bytes of body.
    pub const BODY: u8 = 2;
    /// Not an HTTP/1.x request stream (a database, a response stream, chunked body):
    /// ignored until a receive starts with an HTTP method again.
    pub const OTHER: u8 = 3;
}

/// Position in a header line.
pub mod line {
    /// At the start of a line.
    pub const START: u8 = 0;
    /// In the header name.
    pub const NAME: u8 = 1;
    /// After the colon, skipping blanks.
    pub const PRE_VALUE: u8 = 2;
    /// In the value.
    pub const VALUE: u8 = 3;
    /// Skipping to the end of the line (the request line).
    pub const SKIP: u8 = 4;
}

/// Parser state of one connection (keyed by `tgid << 32 | fd`). Trace ids are parsed as
/// the bytes stream by, so no loop runs over a header value.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnState {
    /// A [`phase`] constant.
    pub phase: u8,
    /// A [`line`] constant.
    pub line: u8,
    /// Bytes of the method prefix seen so far (phase START).
    pub prefix_len: u8,
    /// Index of the `-`/`:`-separated segment of the value being read.
    pub seg: u8,
    /// Segment that holds the trace id (1 for `traceparent`, 0 for the others); the span
    /// id is the next one. 0xff: the header is not a trace header.
    pub trace_seg: u8,
    /// Hex digits of the trace id and span id seen.
    pub trace_digits: u8,
    pub span_digits: u8,
    /// Non-zero when an id segment held a non-hex byte.
    pub bad: u8,
    /// The method prefix seen so far.
    pub prefix: [u8; 4],
    pub _pad: [u8; 4],
    /// FNV-1a of the lower-cased header name so far.
    pub name_hash: u64,
    /// FNV-1a of `name:value` so far (for `--header` filters).
    pub line_hash: u64,
    /// Body bytes still to skip.
    pub body_left: u64,
    /// `Content-Length` of the request being parsed; `u64::MAX` for a chunked body.
    pub content_length: u64,
    /// Trace id digits so far, as a 128-bit number (high, low).
    pub trace_hi: u64,
    pub trace_lo: u64,
    /// Span id digits so far.
    pub span: u64,
    /// What the request's headers said so far.
    pub pending: TraceContext,
}

impl ConnState {
    /// `trace_seg` of a header that carries no trace id.
    pub const NOT_TRACE: u8 = 0xff;

    /// A connection seen for the first time.
    pub const NEW: Self = Self {
        phase: phase::START,
        line: line::START,
        prefix_len: 0,
        seg: 0,
        trace_seg: Self::NOT_TRACE,
        trace_digits: 0,
        span_digits: 0,
        bad: 0,
        prefix: [0; 4],
        _pad: [0; 4],
        name_hash: 0,
        line_hash: 0,
        body_left: 0,
        content_length: 0,
        trace_hi: 0,
        trace_lo: 0,
        span: 0,
        pending: TraceContext {
            trace_id: [0; 16],
            span_id: [0; 8],
            header_bits: 0,
            source: 0,
            _pad: [0; 3],
            ktime_ns: 0,
        },
    };
}

/// Key of a goroutine's trace: the process and its `g` pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoKey {
    pub tgid: u32,
    pub _pad: u32,
    pub g: u64,
}

/// x86-64 syscall numbers the tracker follows.
pub mod nr {
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const CLOSE: u64 = 3;
    pub const READV: u64 = 19;
    pub const WRITEV: u64 = 20;
    pub const ACCEPT: u64 = 43;
    pub const SENDTO: u64 = 44;
    pub const RECVFROM: u64 = 45;
    pub const SENDMSG: u64 = 46;
    pub const RECVMSG: u64 = 47;
    pub const ACCEPT4: u64 = 288;
    pub const SENDMMSG: u64 = 307;
}

/// FNV-1a offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// One FNV-1a step.
#[inline(always)]
pub const fn fnv_step(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(FNV_PRIME)
}

/// FNV-1a of `bytes`.
pub const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        h = fnv_step(h, bytes[i]);
        i += 1;
    }
    h
}

/// Hashes of the lower-cased header names the parser acts on.
pub mod names {
    use super::fnv1a;
    pub const TRACEPARENT: u64 = fnv1a(b"traceparent");
    pub const B3_TRACE_ID: u64 = fnv1a(b"x-b3-traceid");
    pub const B3_SPAN_ID: u64 = fnv1a(b"x-b3-spanid");
    pub const B3: u64 = fnv1a(b"b3");
    pub const UBER: u64 = fnv1a(b"uber-trace-id");
    pub const CONTENT_LENGTH: u64 = fnv1a(b"content-length");
    pub const TRANSFER_ENCODING: u64 = fnv1a(b"transfer-encoding");
}

/// Hash a `--header NAME=VALUE` filter is registered under: FNV-1a of the lower-cased
/// name, a colon, and the value as sent (leading blanks dropped), as the parser computes it.
pub fn header_filter_hash(name: &str, value: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for b in name.bytes() {
        h = fnv_step(h, b.to_ascii_lowercase());
    }
    h = fnv_step(h, b':');
    for b in value.trim_start_matches([' ', '\t']).bytes() {
        h = fnv_step(h, b);
    }
    h
}

/// True for the first four bytes of an HTTP/1.x request line.
#[inline(always)]
pub fn is_method_prefix(p: [u8; 4]) -> bool {
    matches!(
        &p,
        b"GET " | b"POST" | b"PUT " | b"HEAD" | b"DELE" | b"PATC" | b"OPTI" | b"CONN" | b"TRAC"
    )
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), Copy, integers only, explicit padding.
    unsafe impl aya::Pod for super::TraceContext {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ConnState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::GoKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TrackedProc {}
}

const _: () = assert!(core::mem::size_of::<TraceContext>() == 40);
const _: () = assert!(core::mem::size_of::<ConnState>() == 16 + 7 * 8 + 40);
