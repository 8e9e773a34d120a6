//! Host tests of the kernel's trace-header parser. `Conn` drives it the way the
//! `sys_exit` program does (scan bound, `start_read`, then `feed_byte` per byte until it
//! says stop), and `outbound` the way the hold program does.

extern crate std;

use std::{format, string::String, vec::Vec};

use super::*;

mod resp;
mod values;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

/// Test filters: (name, value, bit).
struct Filters(Vec<(u64, u32)>);

impl HeaderFilters for Filters {
    fn bit(&self, line_hash: u64) -> Option<u32> {
        self.0
            .iter()
            .find(|(h, _)| *h == line_hash)
            .map(|(_, b)| *b)
    }
}

/// One connection as the receive path sees it.
struct Conn {
    st: ConnState,
    filters: Filters,
    /// Every trace published at the end of a request's headers, in order.
    published: Vec<TraceContext>,
    /// Highest offset within a read that was fed to the parser.
    max_offset: Option<usize>,
}

impl Conn {
    fn new() -> Self {
        Self::with_filters(Vec::new())
    }

    fn with_filters(filters: Vec<(u64, u32)>) -> Self {
        Self {
            st: ConnState::NEW,
            filters: Filters(filters),
            published: Vec::new(),
            max_offset: None,
        }
    }

    /// One receive of `bytes`, as `sys_exit` and `scan` handle it.
    fn recv(&mut self, bytes: &[u8]) {
        self.recv_into(bytes, bytes.len());
    }

    /// A receive of `len` bytes into the buffer `bytes` (which may hold more: the kernel's
    /// four-byte read of its start does not stop at `len`).
    fn recv_into(&mut self, bytes: &[u8], len: usize) {
        let n = scan_len(len as u64);
        let head = || bytes.get(..4).map(|h| [h[0], h[1], h[2], h[3]]);
        let Some(start) = start_read(&mut self.st, n, head) else {
            return;
        };
        let fed = bytes[..n as usize].iter().enumerate().skip(start as usize);
        for (i, &c) in fed {
            self.max_offset = Some(self.max_offset.map_or(i, |m| m.max(i)));
            match feed_byte(&mut self.st, c, &self.filters) {
                Fed::More => {}
                Fed::Headers | Fed::Context => self.published.push(self.st.pending),
                Fed::HeadersThenStop => {
                    self.published.push(self.st.pending);
                    return;
                }
                Fed::Stop => return,
            }
        }
    }

    /// The one request's trace; fails unless exactly one request ended.
    fn only(&self) -> TraceContext {
        assert_eq!(self.published.len(), 1, "published: {:?}", self.published);
        self.published[0]
    }
}

/// The trace an outbound message carries, as the hold program finds it.
fn outbound(bytes: &[u8]) -> TraceContext {
    let mut st = ConnState::NEW;
    for &c in bytes.iter().take(TRACE_WINDOW) {
        match feed_byte(&mut st, c, &NoFilters) {
            Fed::More => {}
            Fed::Headers | Fed::HeadersThenStop | Fed::Context => return st.pending,
            Fed::Stop => break,
        }
    }
    TraceContext::default()
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    assert_eq!(s.len(), 2 * N, "{s}");
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// Asserts the exact ids and source of a request's trace.
fn assert_ids(t: &TraceContext, trace: &str, span: &str, source: TraceSource) {
    assert_eq!(t.trace_id, unhex::<16>(trace), "trace id of {t:?}");
    assert_eq!(t.span_id, unhex::<8>(span), "span id of {t:?}");
    assert_eq!(t.source, source as u8, "source of {t:?}");
}

fn assert_none(t: &TraceContext) {
    assert_eq!(t.trace_id, [0; 16], "{t:?}");
    assert_eq!(t.source, TraceSource::None as u8, "{t:?}");
}

fn request(headers: &[&str]) -> String {
    let mut r = String::from("GET /orders/7 HTTP/1.1\r\nHost: orders\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

fn traceparent() -> String {
    format!("traceparent: 00-{TRACE}-{SPAN}-01")
}

fn one(headers: &[&str]) -> TraceContext {
    let mut c = Conn::new();
    c.recv(request(headers).as_bytes());
    c.only()
}

#[test]
fn traceparent_in_one_read() {
    assert_ids(&one(&[&traceparent()]), TRACE, SPAN, TraceSource::W3c);
}

#[test]
fn split_across_two_reads_at_every_byte() {
    let cases = [
        (traceparent(), TRACE, SPAN, TraceSource::W3c),
        (
            format!("b3: {TRACE}-{SPAN}-1"),
            TRACE,
            SPAN,
            TraceSource::B3,
        ),
        (
            format!("uber-trace-id: {TRACE}:{SPAN}:0:1"),
            TRACE,
            SPAN,
            TraceSource::Uber,
        ),
    ];
    for (header, trace, span, source) in cases {
        let req = request(&["Accept: */*", &header, "Content-Length: 0"]);
        let bytes = req.as_bytes();
        for cut in 1..bytes.len() {
            let mut c = Conn::new();
            c.recv(&bytes[..cut]);
            assert!(c.published.is_empty(), "ended early at cut {cut}");
            c.recv(&bytes[cut..]);
            assert_eq!(c.published.len(), 1, "cut {cut} of {header}");
            assert_ids(&c.published[0], trace, span, source);
        }
    }
}

#[test]
fn b3_multi_split_across_two_reads_at_every_byte() {
    let req = request(&[
        &format!("X-B3-TraceId: {TRACE}"),
        &format!("X-B3-SpanId: {SPAN}"),
        "X-B3-Sampled: 1",
    ]);
    let bytes = req.as_bytes();
    for cut in 1..bytes.len() {
        let mut c = Conn::new();
        c.recv(&bytes[..cut]);
        c.recv(&bytes[cut..]);
        assert_ids(&c.only(), TRACE, SPAN, TraceSource::B3);
    }
}

#[test]
fn one_byte_per_read() {
    let req = request(&[&traceparent()]);
    let mut c = Conn::new();
    for b in req.as_bytes() {
        c.recv(core::slice::from_ref(b));
    }
    assert_ids(&c.only(), TRACE, SPAN, TraceSource::W3c);
}

fn filler(count: usize) -> String {
    format!("X-Filler: {}", "f".repeat(count))
}

#[test]
fn header_beyond_the_first_read() {
    let head = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", filler(3000));
    let tail = format!("{}\r\n\r\n", traceparent());
    let mut c = Conn::new();
    c.recv(head.as_bytes());
    assert!(c.published.is_empty());
    c.recv(tail.as_bytes());
    assert_ids(&c.only(), TRACE, SPAN, TraceSource::W3c);
}

#[test]
fn header_after_6k_of_headers_in_one_read() {
    let f = filler(6000);
    assert_ids(&one(&[&f, &traceparent()]), TRACE, SPAN, TraceSource::W3c);
}

#[test]
fn no_trace_header_publishes_an_empty_trace() {
    let t = one(&["Accept: */*"]);
    assert_none(&t);
    assert_eq!(t.span_id, [0; 8]);
}

#[test]
fn keep_alive_requests_get_their_own_trace() {
    let second = "5bf92f3577b34da6a3ce929d0e0e4737";
    let a = request(&[&traceparent()]);
    let b = request(&[&format!("traceparent: 00-{second}-{SPAN}-01")]);
    let plain = request(&[]);
    let mut c = Conn::new();
    c.recv(format!("{a}{b}").as_bytes());
    c.recv(plain.as_bytes());
    assert_eq!(c.published.len(), 3);
    assert_ids(&c.published[0], TRACE, SPAN, TraceSource::W3c);
    assert_ids(&c.published[1], second, SPAN, TraceSource::W3c);
    // No stale trace from the request before.
    assert_none(&c.published[2]);
}

#[test]
fn a_trace_header_in_the_body_is_not_a_header() {
    let body = format!("{}\r\n\r\n", traceparent());
    let post = format!(
        "POST /pay HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let next = request(&[]);
    // Body in the same read, in the next read, and split across reads.
    for cut in [post.len(), post.len() - body.len(), post.len() - 7] {
        let mut c = Conn::new();
        c.recv(&post.as_bytes()[..cut]);
        c.recv(&post.as_bytes()[cut..]);
        c.recv(next.as_bytes());
        assert_eq!(c.published.len(), 2, "cut {cut}");
        assert_none(&c.published[0]);
        assert_none(&c.published[1]);
        assert_eq!(c.st.phase, phase::START);
    }
}

#[test]
fn a_body_is_skipped_without_feeding_its_bytes() {
    let post = "POST /pay HTTP/1.1\r\nContent-Length: 10000\r\n\r\n";
    let mut c = Conn::new();
    c.recv(post.as_bytes());
    assert_eq!(c.st.body_left, 10000);
    // A read that is all body: `start_read` skips it whole.
    c.max_offset = None;
    c.recv(&[b'x'; 9990]);
    assert_eq!(c.max_offset, None);
    assert_eq!(c.st.body_left, 10);
    // The body's last bytes and the next request in one read.
    let next = request(&[&traceparent()]);
    c.recv(format!("0123456789{next}").as_bytes());
    assert_eq!(c.published.len(), 2);
    assert_ids(&c.published[1], TRACE, SPAN, TraceSource::W3c);
}

#[test]
fn chunked_bodies_are_given_up_until_the_next_request_line() {
    let post = "POST /pay HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut c = Conn::new();
    c.recv(post.as_bytes());
    assert_eq!(c.published.len(), 1);
    // Given up at the end of the headers, before any chunk is seen.
    assert_eq!(c.st.phase, phase::OTHER);
    c.recv(b"5\r\nhello\r\n");
    // A read that does not start with a request line is not parsed, even if one follows.
    let hidden = format!("0\r\n\r\n{}", request(&[&traceparent()]));
    c.recv(hidden.as_bytes());
    assert_eq!(c.published.len(), 1);
    c.recv(request(&[&traceparent()]).as_bytes());
    assert_eq!(c.published.len(), 2);
    assert_ids(&c.published[1], TRACE, SPAN, TraceSource::W3c);
}

#[test]
fn huge_content_length_is_given_up() {
    let post = "POST /up HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n";
    let mut c = Conn::new();
    c.recv(post.as_bytes());
    assert_eq!(c.published.len(), 1);
    assert_eq!(c.st.phase, phase::OTHER);
}

#[test]
fn non_http_streams_are_ignored() {
    // A PostgreSQL SSLRequest (Redis streams have a mode of their own: see `resp`).
    let mut c = Conn::new();
    c.recv(b"\x00\x00\x00\x08\x04\xd2\x16\x2f");
    assert_eq!(c.st.phase, phase::OTHER);
    assert_eq!(c.max_offset, Some(3), "stops after the first four bytes");
    c.recv(format!("{}\r\n\r\n", traceparent()).as_bytes());
    assert!(c.published.is_empty());
    // Reads shorter than a method prefix cannot resynchronise, even where the buffer
    // holds a request line from before.
    c.recv(b"GET");
    c.recv_into(b"GET / HTTP/1.1\r\n\r\n", 3);
    assert_eq!(c.st.phase, phase::OTHER);
    assert!(c.published.is_empty());
    for method in ["GET ", "POST", "PUT ", "HEAD", "DELETE", "PATCH", "OPTIONS"] {
        let req = format!("{method} / HTTP/1.1\r\n{}\r\n\r\n", traceparent());
        let mut c = Conn::new();
        c.recv(b"\x16\x03\x01\x02\x00");
        c.recv(req.as_bytes());
        assert_ids(&c.only(), TRACE, SPAN, TraceSource::W3c);
    }
}

#[test]
fn lowercase_methods_are_not_requests() {
    let mut c = Conn::new();
    c.recv(format!("get / HTTP/1.1\r\n{}\r\n\r\n", traceparent()).as_bytes());
    assert!(c.published.is_empty());
    assert_eq!(c.st.phase, phase::OTHER);
}

/// A request whose blank line's final `\n` is at offset `end - 1` of the read.
fn request_ending_at(end: usize) -> String {
    let tail = format!("{}\r\n\r\n", traceparent());
    let head = "GET / HTTP/1.1\r\n";
    let pad = end - head.len() - tail.len() - "X-Filler: \r\n".len();
    let r = format!("{head}{}\r\n{tail}", filler(pad));
    assert_eq!(r.len(), end);
    r
}

#[test]
fn the_scan_bound_is_trace_scan_max_bytes_per_read() {
    let max = TRACE_SCAN_MAX as usize;
    assert_eq!(scan_len(0), 0);
    assert_eq!(scan_len(100), 100);
    assert_eq!(scan_len(max as u64), max as u64);
    assert_eq!(scan_len(u64::MAX), max as u64);

    // The request ends exactly at the bound: found.
    let mut c = Conn::new();
    c.recv(request_ending_at(max).as_bytes());
    assert_ids(&c.only(), TRACE, SPAN, TraceSource::W3c);
    assert_eq!(c.max_offset, Some(max - 1));

    // One byte later: the blank line's last byte is past the bound and never read, so the
    // headers never end in this read, however much follows in it.
    let mut c = Conn::new();
    let mut read = request_ending_at(max + 1);
    read.push_str(&request(&[&traceparent()]));
    c.recv(read.as_bytes());
    assert!(c.published.is_empty(), "{:?}", c.published);
    assert_eq!(c.max_offset, Some(max - 1));
}

#[test]
fn outbound_messages() {
    let req = request(&["Accept: */*", &format!("b3: {TRACE}-{SPAN}-1")]);
    assert_ids(&outbound(req.as_bytes()), TRACE, SPAN, TraceSource::B3);
    // Only the first request's headers count; a body is not read.
    let post = format!(
        "POST /pay HTTP/1.1\r\nContent-Length: 80\r\n\r\n{}\r\n",
        traceparent()
    );
    assert_none(&outbound(post.as_bytes()));
    // Headers cut short by the window: no trace.
    let cut = &req.as_bytes()[..req.len() - 1];
    assert_none(&outbound(cut));
}
