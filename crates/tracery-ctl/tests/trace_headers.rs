//! Trace headers tie snapshots to traces (issue 4, "Trace headers"): real servers receive
//! HTTP/1.1 requests carrying `traceparent`, B3 or `uber-trace-id`, sent whole or in
//! pieces, and each snapshot taken while serving one carries that request's trace and span.
//!
//! The C server (`tests/fixtures/c/httpd.c`) runs a thread per connection and reads with
//! `recv()`, `read()`, `readv()` or `recvmsg()` in chunks of at most 4 KiB; the Go server is
//! the demo's payments service, whose goroutines move between threads.

mod common;

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    io::{BufRead, BufReader, Read},
    process::{Child, Stdio},
    sync::mpsc::{self, Receiver},
    thread,
    time::Duration,
};

use common::*;
use serde_json::{json, Value};
use tracery_tests::{
    fixture,
    http::{offset_of, split_at, Connection, Request},
    FixtureProcess,
};

/// Between pieces of a split request: long enough that the server reads each one alone.
const PAUSE: Duration = Duration::from_millis(50);

/// How long `tracery-ctl probe` may take to attach.
const ARM_TIMEOUT: Duration = Duration::from_secs(30);

/// `count` random bytes as lowercase hex: ids differ per case and per run, so a stale
/// entry left by another test or an earlier run cannot pass for the right one.
fn random_hex(count: usize) -> String {
    let mut hex = String::new();
    while hex.len() < count * 2 {
        let word = RandomState::new().build_hasher().finish();
        hex.push_str(&format!("{word:016x}"));
    }
    hex.truncate(count * 2);
    hex
}

/// A fresh (trace id, span id): 32 and 16 hex digits.
fn ids() -> (String, String) {
    (random_hex(16), random_hex(8))
}

/// A 64-bit trace id as reported: left-padded with zeros to 32 hex digits.
fn padded(trace64: &str) -> String {
    format!("{trace64:0>32}")
}

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

/// A `tracery-ctl probe --output json` that has attached (it printed `waiting for`), so
/// what is sent from now on is seen. Killed on drop if still running.
struct Probe {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    count: u64,
}

impl Probe {
    fn arm(pid: u32, location: &str, count: u64) -> Self {
        let mut child = ctl()
            .args(["probe", "--pid", &pid.to_string(), "--at", location])
            .args(["--count", &count.to_string(), "--timeout", "30"])
            .args(["--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tracery-ctl");
        let stdout = lines_of(child.stdout.take().expect("stdout is piped"));
        let (armed_tx, armed) = mpsc::channel();
        let (stderr_tx, stderr) = mpsc::channel();
        let err = child.stderr.take().expect("stderr is piped");
        // Forwards stderr whole, and says when the probe is attached.
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("waiting for") {
                    let _ = armed_tx.send(());
                }
                let _ = stderr_tx.send(line);
            }
        });
        let mut probe = Self {
            child,
            stdout,
            stderr,
            count,
        };
        if armed.recv_timeout(ARM_TIMEOUT).is_err() {
            let _ = probe.child.kill();
            let _ = probe.child.wait();
            panic!(
                "tracery-ctl probe --at {location} did not attach to pid {pid} within \
                 {ARM_TIMEOUT:?}; stderr:\n{}",
                probe.stderr_text()
            );
        }
        probe
    }

    fn stderr_text(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// Waits for the probe to exit and returns its `count` hits.
    fn hits(mut self) -> Vec<Value> {
        let status = self.child.wait().expect("wait for tracery-ctl");
        // The reader threads end with the process's pipes.
        let out: Vec<String> = self.stdout.iter().collect();
        let err: Vec<String> = self.stderr.iter().collect();
        let err = err.join("\n");
        assert!(status.success(), "probe failed ({status}): {err}");
        let hits: Vec<Value> = out
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect();
        assert_eq!(
            hits.len() as u64,
            self.count,
            "expected {} hits; stderr: {err}",
            self.count
        );
        hits
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // Already reaped after `hits`; then both calls fail harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// What identifies a hit in a failure message: its trace fields and the request's path.
fn summary(hit: &Value) -> Value {
    json!({
        "trace_id": hit.get("trace_id"),
        "span_id": hit.get("span_id"),
        "tid": hit.get("tid"),
        "path": hit["variables"]
            .as_array()
            .and_then(|vars| vars.iter().find(|v| v["name"] == "path"))
            .map(|v| &v["value"]),
    })
}

/// The hit carries exactly this trace and span.
fn assert_trace(hit: &Value, trace: &str, span: &str) {
    let got = summary(hit);
    assert_eq!(hit.get("trace_id"), Some(&json!(trace)), "trace_id: {got}");
    assert_eq!(hit.get("span_id"), Some(&json!(span)), "span_id: {got}");
}

/// The hit carries no trace at all.
fn assert_no_trace(hit: &Value) {
    let got = summary(hit);
    assert!(hit.get("trace_id").is_none(), "expected no trace: {got}");
    assert!(hit.get("span_id").is_none(), "expected no span: {got}");
}

// ---- The C server ----------------------------------------------------------------------

/// `httpd` with the read-syscall flag of `mode` (`[]` is `recv()`).
fn httpd(mode: &[&str]) -> (FixtureProcess, String) {
    FixtureProcess::spawn_service(&fixture("c-httpd"), mode)
}

/// Starts `httpd`, arms a probe for `count` hits in `handle_request`, runs `client`
/// against the server's address, and returns the hits.
fn probe_httpd(mode: &[&str], count: u64, client: impl FnOnce(&str)) -> Vec<Value> {
    tracery_tests::require_root();
    let (server, addr) = httpd(mode);
    let probe = Probe::arm(server.pid(), &at("httpd_handle"), count);
    client(&addr);
    let hits = probe.hits();
    for hit in &hits {
        assert_eq!(hit["location"]["function"], "handle_request", "{hit:#}");
    }
    hits
}

/// Sends `request` on a new connection and expects 200.
fn send_whole(addr: &str, request: &Request) {
    let response = Connection::open(addr).request(request);
    assert_eq!(response.status, 200, "{response:?}");
}

/// Sends `request` on a new connection cut at `cuts`, pausing between pieces; expects 200.
fn send_cut(addr: &str, request: &Request, cuts: &[usize]) {
    let bytes = request.to_bytes();
    let mut conn = Connection::open(addr);
    conn.send_pieces(&split_at(&bytes, cuts), PAUSE);
    let response = conn.read_response();
    assert_eq!(response.status, 200, "{response:?}");
}

/// The path the probed `handle_request` was called with.
fn path_of(hit: &Value) -> &Value {
    var(hit, "path")
}

fn traceparent_in_one_send(mode: &[&str]) {
    let (trace, span) = ids();
    let hits = probe_httpd(mode, 1, |addr| {
        let req = Request::new("GET", "/tp").header("traceparent", &traceparent(&trace, &span));
        send_whole(addr, &req);
    });
    assert_eq!(path_of(&hits[0]), &json!("/tp"));
    assert_trace(&hits[0], &trace, &span);
}

fn b3_multi_header_128_bit(mode: &[&str]) {
    let (trace, span) = ids();
    let hits = probe_httpd(mode, 1, |addr| {
        let req = Request::new("GET", "/b3")
            .header("X-B3-TraceId", &trace)
            .header("X-B3-SpanId", &span)
            .header("X-B3-Sampled", "1");
        send_whole(addr, &req);
    });
    assert_trace(&hits[0], &trace, &span);
}

fn b3_multi_header_64_bit_is_left_padded(mode: &[&str]) {
    let (trace64, span) = (random_hex(8), random_hex(8));
    let hits = probe_httpd(mode, 1, |addr| {
        // Span first: the order of the two headers must not matter.
        let req = Request::new("GET", "/b3-64")
            .header("X-B3-SpanId", &span)
            .header("X-B3-TraceId", &trace64);
        send_whole(addr, &req);
    });
    assert_trace(&hits[0], &padded(&trace64), &span);
}

fn b3_single_header(mode: &[&str]) {
    let (trace, span) = ids();
    let hits = probe_httpd(mode, 1, |addr| {
        let req = Request::new("GET", "/b3-single").header("b3", &format!("{trace}-{span}-1"));
        send_whole(addr, &req);
    });
    assert_trace(&hits[0], &trace, &span);
}

fn uber_trace_id_128_bit(mode: &[&str]) {
    let (trace, span) = ids();
    let hits = probe_httpd(mode, 1, |addr| {
        let req =
            Request::new("GET", "/uber").header("uber-trace-id", &format!("{trace}:{span}:0:1"));
        send_whole(addr, &req);
    });
    assert_trace(&hits[0], &trace, &span);
}

fn uber_trace_id_64_bit_is_left_padded(mode: &[&str]) {
    let (trace64, span, parent) = (random_hex(8), random_hex(8), random_hex(8));
    let hits = probe_httpd(mode, 1, |addr| {
        let req = Request::new("GET", "/uber-64")
            .header("uber-trace-id", &format!("{trace64}:{span}:{parent}:1"));
        send_whole(addr, &req);
    });
    assert_trace(&hits[0], &padded(&trace64), &span);
}

/// Jaeger clients print ids without leading zeros (Go's `%x`), so ids may be shorter
/// than 16 hex digits.
fn uber_trace_id_without_leading_zeros(mode: &[&str]) {
    let trace = random_hex(8)[1..].trim_start_matches('0').to_string();
    let span = random_hex(8)[3..].trim_start_matches('0').to_string();
    let hits = probe_httpd(mode, 1, |addr| {
        let req = Request::new("GET", "/uber-short")
            .header("uber-trace-id", &format!("{trace}:{span}:0:1"));
        send_whole(addr, &req);
    });
    assert_trace(&hits[0], &padded(&trace), &format!("{span:0>16}"));
}

fn header_names_in_mixed_case(mode: &[&str]) {
    let (trace, span) = ids();
    let (trace64, span2) = (random_hex(8), random_hex(8));
    let hits = probe_httpd(mode, 2, |addr| {
        let mut conn = Connection::open(addr);
        let tp =
            Request::new("GET", "/TraceParent").header("TraceParent", &traceparent(&trace, &span));
        assert_eq!(conn.request(&tp).status, 200);
        let b3 = Request::new("GET", "/x-b3")
            .header("x-b3-traceid", &trace64)
            .header("X-B3-SPANID", &span2);
        assert_eq!(conn.request(&b3).status, 200);
    });
    assert_eq!(path_of(&hits[0]), &json!("/TraceParent"));
    assert_trace(&hits[0], &trace, &span);
    assert_eq!(path_of(&hits[1]), &json!("/x-b3"));
    assert_trace(&hits[1], &padded(&trace64), &span2);
}

/// Header name cut mid-word, value cut mid-id, body cut twice: five sends, 50 ms apart.
fn split_in_header_name_value_and_body(mode: &[&str]) {
    let (trace, span) = ids();
    let body = r#"{"order_id": 7, "amount_cents": 1250}"#;
    let hits = probe_httpd(mode, 1, |addr| {
        let req = Request::new("POST", "/split")
            .header("Accept", "*/*")
            .header("traceparent", &traceparent(&trace, &span))
            .header("Content-Type", "application/json")
            .body(body);
        let bytes = req.to_bytes();
        let name = offset_of(&bytes, "traceparent");
        let value = offset_of(&bytes, &trace);
        let body = offset_of(&bytes, "\r\n\r\n") + 4;
        send_cut(addr, &req, &[name + 5, value + 13, body + 3, body + 20]);
    });
    assert_eq!(path_of(&hits[0]), &json!("/split"));
    assert_eq!(var(&hits[0], "body_len"), &json!(body.len()));
    assert_trace(&hits[0], &trace, &span);
}

/// `count` headers of 500 bytes each.
fn filler(mut req: Request, count: usize) -> Request {
    for i in 0..count {
        req = req.header(&format!("X-Filler-{i:02}"), &"f".repeat(500));
    }
    req
}

/// ~6 KiB of headers before the traceparent, all in one send: the server's first 4 KiB
/// read ends before it.
fn traceparent_after_6k_of_headers(mode: &[&str]) {
    let (trace, span) = ids();
    let hits = probe_httpd(mode, 1, |addr| {
        let req = filler(Request::new("GET", "/late"), 12)
            .header("traceparent", &traceparent(&trace, &span));
        assert!(offset_of(&req.to_bytes(), "traceparent") > 6000);
        send_whole(addr, &req);
    });
    assert_trace(&hits[0], &trace, &span);
}

/// The filler goes out first, the traceparent in a later packet.
fn traceparent_beyond_the_first_packet(mode: &[&str]) {
    let (trace, span) = ids();
    let hits = probe_httpd(mode, 1, |addr| {
        let req = filler(Request::new("GET", "/later"), 12)
            .header("traceparent", &traceparent(&trace, &span));
        let at = offset_of(&req.to_bytes(), "traceparent");
        send_cut(addr, &req, &[at]);
    });
    assert_trace(&hits[0], &trace, &span);
}

/// The header name straddles the server's first 4096-byte read: `trace` ends one read,
/// `parent: ...` starts the next.
fn traceparent_across_the_4k_read_boundary(mode: &[&str]) {
    let (trace, span) = ids();
    let hits = probe_httpd(mode, 1, |addr| {
        let base = filler(Request::new("GET", "/edge"), 7);
        // Pad so that the name starts 5 bytes before offset 4096.
        let before = offset_of(
            &base.clone().header("traceparent", "x").to_bytes(),
            "traceparent",
        );
        // `X-Pad: ` + value + CRLF shifts it by 9 + len.
        let pad = 4096 - 5 - before - 9;
        let req = base
            .header("X-Pad", &"p".repeat(pad))
            .header("traceparent", &traceparent(&trace, &span));
        assert_eq!(offset_of(&req.to_bytes(), "traceparent"), 4096 - 5);
        send_whole(addr, &req);
    });
    assert_trace(&hits[0], &trace, &span);
}

/// Two requests on one connection, so on one server thread: each gets its own trace.
fn keep_alive_requests_get_their_own_trace(mode: &[&str]) {
    let (trace1, span1) = ids();
    let (trace2, span2) = ids();
    let hits = probe_httpd(mode, 2, |addr| {
        let mut conn = Connection::open(addr);
        for (path, trace, span) in [("/first", &trace1, &span1), ("/second", &trace2, &span2)] {
            let req = Request::new("GET", path).header("traceparent", &traceparent(trace, span));
            assert_eq!(conn.request(&req).status, 200);
        }
    });
    assert_eq!(path_of(&hits[0]), &json!("/first"));
    assert_trace(&hits[0], &trace1, &span1);
    assert_eq!(path_of(&hits[1]), &json!("/second"));
    assert_trace(&hits[1], &trace2, &span2);
    assert_eq!(hits[0]["tid"], hits[1]["tid"], "one thread per connection");
}

fn no_trace_header_no_trace(mode: &[&str]) {
    let hits = probe_httpd(mode, 1, |addr| {
        send_whole(
            addr,
            &Request::new("GET", "/plain").header("X-Request-Id", "42"),
        );
    });
    assert_no_trace(&hits[0]);
}

/// A request without a trace header after one with: the thread's old trace must not stick.
fn no_stale_trace_on_keep_alive(mode: &[&str]) {
    let (trace, span) = ids();
    let hits = probe_httpd(mode, 2, |addr| {
        let mut conn = Connection::open(addr);
        let traced =
            Request::new("GET", "/traced").header("traceparent", &traceparent(&trace, &span));
        assert_eq!(conn.request(&traced).status, 200);
        assert_eq!(conn.request(&Request::new("GET", "/untraced")).status, 200);
    });
    assert_trace(&hits[0], &trace, &span);
    assert_eq!(path_of(&hits[1]), &json!("/untraced"));
    assert_no_trace(&hits[1]);
}

/// A `traceparent:` line inside a body is data, not a header.
fn traceparent_in_the_body_is_not_a_header(mode: &[&str]) {
    let (trace, span) = ids();
    let hits = probe_httpd(mode, 1, |addr| {
        let body = format!(
            "note\r\ntraceparent: {}\r\n\r\n",
            traceparent(&trace, &span)
        );
        send_whole(addr, &Request::new("POST", "/body").body(body));
    });
    assert_no_trace(&hits[0]);
}

/// Two connections in flight at once, their sends interleaved: each request keeps its own
/// trace though both server threads parse at the same time.
fn interleaved_connections_keep_their_traces(mode: &[&str]) {
    let (trace1, span1) = ids();
    let (trace2, span2) = ids();
    let hits = probe_httpd(mode, 2, |addr| {
        let req1 = Request::new("GET", "/one").header("traceparent", &traceparent(&trace1, &span1));
        let req2 = Request::new("GET", "/two").header("traceparent", &traceparent(&trace2, &span2));
        let (b1, b2) = (req1.to_bytes(), req2.to_bytes());
        let cut1 = offset_of(&b1, &trace1) + 10;
        let cut2 = offset_of(&b2, &trace2) + 20;
        let (mut c1, mut c2) = (Connection::open(addr), Connection::open(addr));
        c1.send(&b1[..cut1]);
        thread::sleep(PAUSE);
        c2.send(&b2[..cut2]);
        thread::sleep(PAUSE);
        c1.send(&b1[cut1..]);
        assert_eq!(c1.read_response().status, 200);
        c2.send(&b2[cut2..]);
        assert_eq!(c2.read_response().status, 200);
    });
    assert_eq!(path_of(&hits[0]), &json!("/one"));
    assert_trace(&hits[0], &trace1, &span1);
    assert_eq!(path_of(&hits[1]), &json!("/two"));
    assert_trace(&hits[1], &trace2, &span2);
}

/// A keep-alive connection that served a request before the probe was armed (a proxy's
/// pooled connection): the next request on it, traced, is still seen.
fn connection_open_before_arming(mode: &[&str]) {
    tracery_tests::require_root();
    let (trace, span) = ids();
    let (server, addr) = httpd(mode);
    let mut conn = Connection::open(&addr);
    let early = Request::new("POST", "/early").body("x".repeat(100));
    assert_eq!(conn.request(&early).status, 200);
    let probe = Probe::arm(server.pid(), &at("httpd_handle"), 1);
    let req = Request::new("GET", "/armed").header("traceparent", &traceparent(&trace, &span));
    assert_eq!(conn.request(&req).status, 200);
    let hits = probe.hits();
    assert_eq!(path_of(&hits[0]), &json!("/armed"));
    assert_trace(&hits[0], &trace, &span);
}

/// Every case once per read syscall; `recvmsg` and `readv` get the cases whose reads differ.
macro_rules! cases {
    ($mode_mod:ident, $mode:expr, [$($case:ident),* $(,)?]) => {
        mod $mode_mod {
            $(
                #[test]
                fn $case() {
                    super::$case($mode);
                }
            )*
        }
    };
}

cases!(
    recv,
    &[],
    [
        traceparent_in_one_send,
        b3_multi_header_128_bit,
        b3_multi_header_64_bit_is_left_padded,
        b3_single_header,
        uber_trace_id_128_bit,
        uber_trace_id_64_bit_is_left_padded,
        uber_trace_id_without_leading_zeros,
        header_names_in_mixed_case,
        split_in_header_name_value_and_body,
        traceparent_after_6k_of_headers,
        traceparent_beyond_the_first_packet,
        traceparent_across_the_4k_read_boundary,
        keep_alive_requests_get_their_own_trace,
        no_trace_header_no_trace,
        no_stale_trace_on_keep_alive,
        traceparent_in_the_body_is_not_a_header,
        interleaved_connections_keep_their_traces,
        connection_open_before_arming,
    ]
);

cases!(
    read,
    &["--read"],
    [
        traceparent_in_one_send,
        b3_multi_header_128_bit,
        b3_multi_header_64_bit_is_left_padded,
        b3_single_header,
        uber_trace_id_128_bit,
        uber_trace_id_64_bit_is_left_padded,
        uber_trace_id_without_leading_zeros,
        header_names_in_mixed_case,
        split_in_header_name_value_and_body,
        traceparent_after_6k_of_headers,
        traceparent_beyond_the_first_packet,
        traceparent_across_the_4k_read_boundary,
        keep_alive_requests_get_their_own_trace,
        no_trace_header_no_trace,
        no_stale_trace_on_keep_alive,
        traceparent_in_the_body_is_not_a_header,
        interleaved_connections_keep_their_traces,
        connection_open_before_arming,
    ]
);

cases!(
    recvmsg,
    &["--recvmsg"],
    [
        traceparent_in_one_send,
        split_in_header_name_value_and_body,
        traceparent_across_the_4k_read_boundary,
        no_stale_trace_on_keep_alive,
    ]
);

cases!(
    readv,
    &["--readv"],
    [
        traceparent_in_one_send,
        split_in_header_name_value_and_body,
        traceparent_across_the_4k_read_boundary,
        no_stale_trace_on_keep_alive,
    ]
);

// ---- The Go server ---------------------------------------------------------------------

/// The demo's payments service, probed in `charge` for `count` hits while `client` runs.
fn probe_payments(count: u64, client: impl FnOnce(&str)) -> Vec<Value> {
    tracery_tests::require_root();
    let (server, addr) =
        FixtureProcess::spawn_service(&fixture("demo-payments"), &["-listen", "127.0.0.1:0"]);
    let probe = Probe::arm(server.pid(), "main.charge", count);
    client(&addr);
    let hits = probe.hits();
    for hit in &hits {
        assert_eq!(hit["location"]["function"], "main.charge", "{hit:#}");
    }
    hits
}

fn pay(order_id: u32) -> Request {
    Request::new("POST", "/pay")
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{"order_id": {order_id}, "amount_cents": 1250}}"#
        ))
}

#[test]
fn go_traceparent_in_one_send() {
    let (trace, span) = ids();
    let hits = probe_payments(1, |addr| {
        send_whole(
            addr,
            &pay(1).header("traceparent", &traceparent(&trace, &span)),
        );
    });
    assert_trace(&hits[0], &trace, &span);
}

/// Split sends park the connection's goroutine in the netpoller between reads; it may
/// resume on another thread, so only goroutine tracking finds the trace.
#[test]
fn go_traceparent_split_across_sends() {
    let (trace, span) = ids();
    let hits = probe_payments(1, |addr| {
        let req = pay(2).header("traceparent", &traceparent(&trace, &span));
        let bytes = req.to_bytes();
        let name = offset_of(&bytes, "traceparent");
        let value = offset_of(&bytes, &trace);
        let body = offset_of(&bytes, "\r\n\r\n") + 4;
        send_cut(addr, &req, &[name + 4, value + 9, body + 5]);
    });
    assert_trace(&hits[0], &trace, &span);
}

#[test]
fn go_b3_and_uber_headers() {
    let (trace64, span1) = (random_hex(8), random_hex(8));
    let (trace, span2) = ids();
    let hits = probe_payments(2, |addr| {
        let mut conn = Connection::open(addr);
        let b3 = pay(3)
            .header("X-B3-TraceId", &trace64)
            .header("X-B3-SpanId", &span1);
        assert_eq!(conn.request(&b3).status, 200);
        // See go_keep_alive_no_stale_trace.
        thread::sleep(PAUSE);
        let uber = pay(4).header("uber-trace-id", &format!("{trace}:{span2}:0:1"));
        assert_eq!(conn.request(&uber).status, 200);
    });
    assert_trace(&hits[0], &padded(&trace64), &span1);
    assert_trace(&hits[1], &trace, &span2);
}

/// Keep-alive on one connection, so one serving goroutine: traced, untraced, traced again.
///
/// The pauses matter: net/http flushes a response before it aborts the 1-byte background
/// read it runs during the handler, so a request sent at once may have its first byte read
/// by that other goroutine. That case is not what this test is about.
#[test]
fn go_keep_alive_no_stale_trace() {
    let (trace1, span1) = ids();
    let (trace2, span2) = ids();
    let hits = probe_payments(3, |addr| {
        let mut conn = Connection::open(addr);
        let first = pay(5).header("traceparent", &traceparent(&trace1, &span1));
        assert_eq!(conn.request(&first).status, 200);
        thread::sleep(PAUSE);
        assert_eq!(conn.request(&pay(6)).status, 200);
        thread::sleep(PAUSE);
        let third = pay(7).header("traceparent", &traceparent(&trace2, &span2));
        assert_eq!(conn.request(&third).status, 200);
    });
    assert_trace(&hits[0], &trace1, &span1);
    assert_no_trace(&hits[1]);
    assert_trace(&hits[2], &trace2, &span2);
}

/// A keep-alive connection that served a request before the probe was armed. Go reads
/// without blocking and parks the goroutine, so the read after arming is a new syscall.
#[test]
fn go_connection_open_before_arming() {
    tracery_tests::require_root();
    let (trace, span) = ids();
    let (server, addr) =
        FixtureProcess::spawn_service(&fixture("demo-payments"), &["-listen", "127.0.0.1:0"]);
    let mut conn = Connection::open(&addr);
    assert_eq!(conn.request(&pay(9)).status, 200);
    let probe = Probe::arm(server.pid(), "main.charge", 1);
    let req = pay(10).header("traceparent", &traceparent(&trace, &span));
    assert_eq!(conn.request(&req).status, 200);
    assert_trace(&probe.hits()[0], &trace, &span);
}

/// A goroutine started by a request's goroutine (payments writes each receipt on one)
/// serves that request's trace: concurrent requests keep theirs apart, and a goroutine of
/// an untraced request afterwards, which likely reuses a traced one's `g`, serves none.
#[test]
fn go_a_goroutine_started_by_a_request_inherits_its_trace() {
    tracery_tests::require_root();
    const N: u64 = 6;
    let traces: Vec<(String, String)> = (0..N).map(|_| ids()).collect();
    let (server, addr) =
        FixtureProcess::spawn_service(&fixture("demo-payments"), &["-listen", "127.0.0.1:0"]);
    let probe = Probe::arm(server.pid(), "main.receipt", N + 1);
    thread::scope(|s| {
        for (trace, span) in &traces {
            let addr = &addr;
            s.spawn(move || {
                send_whole(
                    addr,
                    &pay(11).header("traceparent", &traceparent(trace, span)),
                )
            });
        }
    });
    send_whole(&addr, &pay(12));
    let hits = probe.hits();
    for hit in &hits {
        assert_eq!(hit["location"]["function"], "main.receipt", "{hit:#}");
    }
    assert_eq!(
        sorted_traces(&hits[..N as usize]),
        sorted(traces),
        "each receipt goroutine serves its request's trace"
    );
    assert_no_trace(&hits[N as usize]);
}

/// Concurrent connections: each goroutine keeps its own trace while the runtime shares
/// threads between them.
#[test]
fn go_concurrent_requests_keep_their_traces() {
    const N: u64 = 8;
    let traces: Vec<(String, String)> = (0..N).map(|_| ids()).collect();
    let hits = probe_payments(N, |addr| {
        thread::scope(|s| {
            for (trace, span) in &traces {
                s.spawn(move || {
                    let req = pay(8).header("traceparent", &traceparent(trace, span));
                    let bytes = req.to_bytes();
                    let value = offset_of(&bytes, trace);
                    send_cut(addr, &req, &[value + 16]);
                });
            }
        });
    });
    assert_eq!(sorted_traces(&hits), sorted(traces));
}

/// The `(trace, span)` of each hit ("none" where it has none), sorted.
fn sorted_traces(hits: &[Value]) -> Vec<(String, String)> {
    sorted(
        hits.iter()
            .map(|h| {
                (
                    h["trace_id"].as_str().unwrap_or("none").to_string(),
                    h["span_id"].as_str().unwrap_or("none").to_string(),
                )
            })
            .collect(),
    )
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}
