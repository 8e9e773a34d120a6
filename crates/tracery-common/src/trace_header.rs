//! The streaming HTTP/1.x trace-header parser the kernel runs over received (and, for
//! holds, sent) bytes: W3C `traceparent`, B3 (`b3`, `X-B3-TraceId`, `X-B3-SpanId`) and
//! Jaeger `uber-trace-id`; and the same contexts inside a Redis (RESP) stream, as a JSON
//! key or a bulk-string field followed by its value (see [`resp`]).
//!
//! The eBPF programs read the bytes and call [`start_read`] once per read and
//! [`feed_byte`] once per byte; all parser state lives in one [`ConnState`] per
//! connection, so a header split across reads, or beyond the first read, is found. Every
//! function here is loop-free (the verifier sees one byte at a time, driven by
//! `bpf_loop`) and `#[inline(always)]`, so it compiles into the caller's program.

use crate::trace::{TraceContext, TraceSource};

/// Bytes of one receive the parser reads per window (the per-CPU scratch size).
pub const TRACE_WINDOW: usize = 4096;
/// Most bytes of one receive the parser looks at. Header blocks are small; a receive that
/// is mostly body is skipped using `Content-Length`, not scanned.
pub const TRACE_SCAN_MAX: u32 = 16384;
/// Most `--header NAME=VALUE` filters active at once (bits of a `u32`).
pub const MAX_HEADER_FILTERS: u32 = 32;
/// Most bytes of one receive (or one outbound message) scanned in RESP mode. A job's
/// context sits near the start of a reply; a large `LRANGE` or `SCAN` reply is not worth a
/// byte-by-byte look past this, and the next read starts afresh at a token boundary.
pub const RESP_SCAN_MAX: u16 = 4096;
/// Largest `Content-Length` followed; beyond it the connection is given up until the next
/// request line (a body that large is not worth tracking byte by byte anyway).
pub const MAX_BODY: u64 = 1 << 40;

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
    /// A Redis (RESP) stream: the connection's first byte was a RESP type byte. Scanned
    /// for trace-context keys until the connection closes.
    pub const RESP: u8 = 4;
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
    /// RESP mode: bytes scanned in the current read (at most [`RESP_SCAN_MAX`]).
    pub resp_count: u16,
    /// RESP mode: non-zero when the last read was cut at [`RESP_SCAN_MAX`].
    pub resp_cut: u8,
    /// RESP mode: the B3 multi-key state ([`resp::b3`]).
    pub resp_b3: u8,
    /// FNV-1a of the lower-cased header name so far (RESP mode: of the key found).
    pub name_hash: u64,
    /// FNV-1a of `name:value` so far (for `--header` filters; RESP mode: of the current
    /// token).
    pub line_hash: u64,
    /// Body bytes still to skip.
    pub body_left: u64,
    /// `Content-Length` of the request being parsed; [`MAX_BODY`] for a chunked body.
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
        resp_count: 0,
        resp_cut: 0,
        resp_b3: 0,
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
            origin: 0,
            _pad: [0; 2],
            ktime_ns: 0,
        },
    };
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

/// The `--header` filters in force: which filter bit a complete `name:value` line sets.
pub trait HeaderFilters {
    /// The filter bit (0..32) registered for `line_hash` (see [`header_filter_hash`]).
    fn bit(&self, line_hash: u64) -> Option<u32>;
}

/// No `--header` filters (outbound messages, whose header bits nobody reads).
pub struct NoFilters;

impl HeaderFilters for NoFilters {
    #[inline(always)]
    fn bit(&self, _line_hash: u64) -> Option<u32> {
        None
    }
}

/// How many bytes of a receive of `received` bytes are parsed ([`TRACE_SCAN_MAX`] at most,
/// spread over all buffers of a vectored receive).
#[inline(always)]
pub fn scan_len(received: u64) -> u64 {
    received.min(u64::from(TRACE_SCAN_MAX))
}

/// Starts one read of `n` bytes on a connection. `head` reads the read's first four
/// bytes; it is called only when the connection must resynchronise on a request line.
/// Returns the offset of the first byte to feed (body bytes before it are skipped), or
/// `None` when nothing of this read is parsed.
#[inline(always)]
pub fn start_read(
    st: &mut ConnState,
    n: u64,
    head: impl FnOnce() -> Option<[u8; 4]>,
) -> Option<u64> {
    if n == 0 {
        return None;
    }
    if st.phase == phase::OTHER {
        // Resynchronise only where a receive starts with a request line.
        if n < 4 || !head().is_some_and(is_method_prefix) {
            return None;
        }
        *st = ConnState::NEW;
    }
    if st.phase == phase::RESP {
        resp::start_read(st);
        return Some(0);
    }
    let mut start = 0;
    if st.phase == phase::BODY {
        let skip = st.body_left.min(n);
        st.body_left -= skip;
        if st.body_left == 0 {
            st.phase = phase::START;
            st.prefix_len = 0;
        }
        start = skip;
    }
    (start < n).then_some(start)
}

/// What one byte did, and what the caller does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// Feed the next byte.
    More,
    /// A request's headers are complete: `st.pending` is the trace it carries (zero when
    /// none). The caller publishes it, then feeds the next byte (a body or the next
    /// request follows).
    Headers,
    /// As [`Fed::Headers`], but the rest of the stream is not followed (chunked or huge
    /// body): publish `st.pending`, then stop until a read starts with a request line.
    HeadersThenStop,
    /// A Redis payload carried a complete trace context: `st.pending` is it. The caller
    /// publishes it as the reader's trace, then feeds the next byte. (A reply without a
    /// context publishes nothing: the reader keeps serving its job's trace.)
    Context,
    /// Not an HTTP/1.x request stream, or the RESP scan bound of this read is reached:
    /// stop feeding this read.
    Stop,
}

/// Feeds one byte to the connection's parser.
#[inline(always)]
pub fn feed_byte(st: &mut ConnState, c: u8, filters: &impl HeaderFilters) -> Fed {
    match st.phase {
        phase::START => {
            if st.prefix_len == 0 && resp::is_type_byte(c) {
                resp::enter(st);
                return Fed::More;
            }
            let k = (st.prefix_len & 3) as usize;
            st.prefix[k] = c;
            st.prefix_len += 1;
            if st.prefix_len >= 4 {
                if is_method_prefix(st.prefix) {
                    st.phase = phase::HEADERS;
                    st.line = line::SKIP;
                    st.content_length = 0;
                    st.pending = ConnState::NEW.pending;
                } else {
                    st.phase = phase::OTHER;
                    return Fed::Stop;
                }
            }
            Fed::More
        }
        phase::HEADERS => header_byte(st, c, filters),
        phase::RESP => resp::byte(st, c),
        phase::BODY => {
            st.body_left = st.body_left.saturating_sub(1);
            if st.body_left == 0 {
                st.phase = phase::START;
                st.prefix_len = 0;
            }
            Fed::More
        }
        _ => Fed::Stop,
    }
}

#[inline(always)]
fn lower(c: u8) -> u8 {
    if c.is_ascii_uppercase() {
        c | 0x20
    } else {
        c
    }
}

#[inline(always)]
fn header_byte(st: &mut ConnState, c: u8, filters: &impl HeaderFilters) -> Fed {
    match st.line {
        line::SKIP => {
            if c == b'\n' {
                st.line = line::START;
            }
        }
        line::START => {
            if c == b'\n' {
                return end_of_headers(st);
            }
            if c != b'\r' {
                st.line = line::NAME;
                st.name_hash = fnv_step(FNV_OFFSET, lower(c));
            }
        }
        line::NAME => {
            if c == b':' {
                st.line = line::PRE_VALUE;
                st.line_hash = fnv_step(st.name_hash, b':');
                start_value(st);
            } else if c == b'\n' {
                st.line = line::START;
            } else {
                st.name_hash = fnv_step(st.name_hash, lower(c));
            }
        }
        _ => {
            // PRE_VALUE or VALUE.
            if c == b'\n' {
                end_of_header(st, filters);
                st.line = line::START;
            } else if c == b'\r' || (st.line == line::PRE_VALUE && (c == b' ' || c == b'\t')) {
            } else {
                st.line = line::VALUE;
                st.line_hash = fnv_step(st.line_hash, c);
                value_byte(st, c);
            }
        }
    }
    Fed::More
}

/// After a header name: is it one whose value is parsed?
#[inline(always)]
fn start_value(st: &mut ConnState) {
    let h = st.name_hash;
    st.trace_seg = if h == names::TRACEPARENT {
        1
    } else if h == names::B3_TRACE_ID
        || h == names::B3_SPAN_ID
        || h == names::B3
        || h == names::UBER
    {
        0
    } else {
        ConnState::NOT_TRACE
    };
    st.seg = 0;
    st.trace_digits = 0;
    st.span_digits = 0;
    st.bad = 0;
    st.trace_hi = 0;
    st.trace_lo = 0;
    st.span = 0;
}

#[inline(always)]
fn value_byte(st: &mut ConnState, c: u8) {
    if st.name_hash == names::CONTENT_LENGTH {
        if c.is_ascii_digit() {
            st.content_length = (st.content_length * 10 + u64::from(c - b'0')).min(MAX_BODY);
        }
        return;
    }
    id_byte(st, c);
}

/// One byte of a trace-header value: `-`/`:` separate segments, the id segments' hex
/// digits accumulate.
#[inline(always)]
fn id_byte(st: &mut ConnState, c: u8) {
    if st.trace_seg == ConnState::NOT_TRACE {
        return;
    }
    if c == b'-' || c == b':' {
        st.seg = st.seg.saturating_add(1);
        return;
    }
    let in_trace = st.seg == st.trace_seg;
    if !in_trace && st.seg != st.trace_seg + 1 {
        return;
    }
    let Some(v) = nibble(c) else {
        st.bad = 1;
        return;
    };
    let v = u64::from(v);
    if in_trace {
        st.trace_hi = (st.trace_hi << 4) | (st.trace_lo >> 60);
        st.trace_lo = (st.trace_lo << 4) | v;
        st.trace_digits = st.trace_digits.saturating_add(1);
    } else {
        st.span = (st.span << 4) | v;
        st.span_digits = st.span_digits.saturating_add(1);
    }
}

/// A blank line: the request's headers are complete. The connection moves on to the body
/// or the next request; `pending` keeps the request's trace for the caller.
#[inline(always)]
fn end_of_headers(st: &mut ConnState) -> Fed {
    st.line = line::START;
    st.prefix_len = 0;
    if st.content_length >= MAX_BODY {
        // A chunked or huge body is not followed; wait for the next request line.
        st.phase = phase::OTHER;
        return Fed::HeadersThenStop;
    }
    if st.content_length > 0 {
        st.phase = phase::BODY;
        st.body_left = st.content_length;
    } else {
        st.phase = phase::START;
    }
    Fed::Headers
}

/// The end of one header line: its filter bit, and its trace id if it is a trace header
/// that outranks what the request carried so far.
#[inline(always)]
fn end_of_header(st: &mut ConnState, filters: &impl HeaderFilters) {
    if let Some(bit) = filters.bit(st.line_hash) {
        st.pending.header_bits |= 1 << (bit & 31);
    }
    if st.name_hash == names::TRANSFER_ENCODING {
        st.content_length = MAX_BODY;
        return;
    }
    store_ids(st, true);
}

/// A trace-header value is complete: validates the ids read from it and stores them in
/// `st.pending`. `ranked`: a lower-ranked source does not replace a higher one (one HTTP
/// request's headers are merged). True when `pending` took a trace id.
#[inline(always)]
fn store_ids(st: &mut ConnState, ranked: bool) -> bool {
    let h = st.name_hash;
    if st.trace_seg == ConnState::NOT_TRACE || st.bad != 0 {
        return false;
    }
    let (t, s) = (st.trace_digits, st.span_digits);
    let (src, ok_trace, ok_span) = if h == names::TRACEPARENT {
        (TraceSource::W3c, t == 32, s == 16)
    } else if h == names::B3 {
        (TraceSource::B3, t == 32 || t == 16, s == 16)
    } else if h == names::UBER {
        (
            TraceSource::Uber,
            (1..=32).contains(&t),
            (1..=16).contains(&s),
        )
    } else if h == names::B3_TRACE_ID {
        (TraceSource::B3, t == 32 || t == 16, false)
    } else {
        // X-B3-SpanId (RESP mode handles it before calling this): its only segment was
        // read as a "trace id".
        if t == 16 && st.pending.source <= TraceSource::B3 as u8 {
            st.pending.span_id = st.trace_lo.to_be_bytes();
        }
        return false;
    };
    if (ranked && st.pending.source > src as u8) || !ok_trace || (st.trace_hi | st.trace_lo) == 0 {
        return false;
    }
    let (hi, lo) = (st.trace_hi.to_be_bytes(), st.trace_lo.to_be_bytes());
    st.pending.trace_id[..8].copy_from_slice(&hi);
    st.pending.trace_id[8..].copy_from_slice(&lo);
    if ok_span {
        st.pending.span_id = st.span.to_be_bytes();
    }
    st.pending.source = src as u8;
    true
}

#[inline(always)]
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), Copy, integers only, explicit padding.
    unsafe impl aya::Pod for super::ConnState {}
}

const _: () = assert!(core::mem::size_of::<ConnState>() == 16 + 7 * 8 + 40);

pub mod resp;

#[cfg(test)]
mod tests;
