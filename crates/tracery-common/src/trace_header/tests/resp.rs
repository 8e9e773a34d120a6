//! RESP mode: trace contexts inside Redis replies (receive path) and commands (hold path).

use std::{string::ToString, vec};

use super::*;

const TRACE2: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN2: &str = "b7ad6b7169203331";

/// A RESP bulk string.
fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

/// A RESP command array, as a client sends it.
fn command(args: &[&str]) -> String {
    let mut c = format!("*{}\r\n", args.len());
    for a in args {
        c.push_str(&bulk(a));
    }
    c
}

/// The job JSON of the seed example: an OpenTracing TEXT_MAP carrier.
fn uber_job() -> String {
    format!(r#"{{"uber-trace-id":"{TRACE}:{SPAN}:0:1","order":7}}"#)
}

fn traceparent_job() -> String {
    format!(r#"{{"id": 42, "traceparent": "00-{TRACE}-{SPAN}-01"}}"#)
}

/// The contexts one connection publishes for `reads`.
fn received(reads: &[&[u8]]) -> Vec<TraceContext> {
    let mut c = Conn::new();
    for r in reads {
        c.recv(r);
    }
    c.published
}

/// Every RESP shape a context arrives in, with its expected ids and source.
fn formats() -> Vec<(String, &'static str, &'static str, TraceSource)> {
    vec![
        // GET job:42 -> bulk string of JSON with uber-trace-id.
        (bulk(&uber_job()), TRACE, SPAN, TraceSource::Uber),
        // BRPOP jobs -> [list, element] with traceparent.
        (
            format!("*2\r\n{}{}", bulk("jobs"), bulk(&traceparent_job())),
            TRACE,
            SPAN,
            TraceSource::W3c,
        ),
        // JSON stored inside a JSON string: escaped quotes.
        (
            bulk(&format!(
                r#"{{"carrier":"{{\"uber-trace-id\":\"{TRACE}:{SPAN}:0:1\"}}"}}"#
            )),
            TRACE,
            SPAN,
            TraceSource::Uber,
        ),
        // HGETALL job:42 -> field/value bulk strings.
        (
            format!(
                "*4\r\n{}{}{}{}",
                bulk("order"),
                bulk("7"),
                bulk("traceparent"),
                bulk(&format!("00-{TRACE}-{SPAN}-01"))
            ),
            TRACE,
            SPAN,
            TraceSource::W3c,
        ),
        // RESP3 map reply with a single-header B3 value.
        (
            format!("%1\r\n{}{}", bulk("b3"), bulk(&format!("{TRACE}-{SPAN}-1"))),
            TRACE,
            SPAN,
            TraceSource::B3,
        ),
        // B3 multi keys in JSON, span first.
        (
            bulk(&format!(
                r#"{{"X-B3-SpanId":"{SPAN}","X-B3-TraceId":"{TRACE}"}}"#
            )),
            TRACE,
            SPAN,
            TraceSource::B3,
        ),
        // A 64-bit uber trace id is left-padded, as on the HTTP path.
        (
            bulk(r#"{"uber-trace-id":"a3ce929d0e0e4736:1:0:1"}"#),
            "0000000000000000a3ce929d0e0e4736",
            "0000000000000001",
            TraceSource::Uber,
        ),
    ]
}

#[test]
fn each_format_in_one_read() {
    for (reply, trace, span, source) in formats() {
        let got = received(&[reply.as_bytes()]);
        assert_eq!(got.len(), 1, "{reply:?}: {got:?}");
        assert_ids(&got[0], trace, span, source);
        assert_eq!(got[0].header_bits, 0);
    }
}

#[test]
fn each_format_split_across_two_reads_at_every_byte() {
    for (reply, trace, span, source) in formats() {
        // A reply before it, so the split reply is not the connection's first bytes.
        let stream = format!("+OK\r\n{reply}");
        let b = stream.as_bytes();
        for cut in 1..b.len() {
            let got = received(&[&b[..cut], &b[cut..]]);
            assert_eq!(got.len(), 1, "cut at {cut} of {stream:?}: {got:?}");
            assert_ids(&got[0], trace, span, source);
        }
    }
}

#[test]
fn one_byte_per_read() {
    let reply = bulk(&uber_job());
    let reads: Vec<&[u8]> = reply.as_bytes().chunks(1).collect();
    let got = received(&reads);
    assert_eq!(got.len(), 1);
    assert_ids(&got[0], TRACE, SPAN, TraceSource::Uber);
}

#[test]
fn b3_multi_keys_trace_first_then_span() {
    let reply = format!(
        "*4\r\n{}{}{}{}",
        bulk("x-b3-traceid"),
        bulk(TRACE),
        bulk("x-b3-spanid"),
        bulk(SPAN)
    );
    let got = received(&[reply.as_bytes()]);
    // Published once without the span, then again when the span completes it.
    assert_eq!(got.len(), 2, "{got:?}");
    assert_ids(&got[0], TRACE, "0000000000000000", TraceSource::B3);
    assert_ids(&got[1], TRACE, SPAN, TraceSource::B3);
}

#[test]
fn replies_without_context_publish_nothing() {
    let mut c = Conn::new();
    c.recv(bulk(&uber_job()).as_bytes());
    // The worker's other calls for the same job: none of them clears its trace.
    for reply in [
        "+OK\r\n".to_string(),
        ":1\r\n".to_string(),
        "$-1\r\n".to_string(),
        "_\r\n".to_string(),
        bulk(r#"{"order":7,"qty":3}"#),
        format!("*2\r\n{}{}", bulk("traceparent"), bulk("not-a-context")),
    ] {
        c.recv(reply.as_bytes());
    }
    assert_eq!(c.published.len(), 1, "{:?}", c.published);
    assert_eq!(c.st.phase, phase::RESP);
}

#[test]
fn the_next_job_replaces_the_context() {
    let first = bulk(&uber_job());
    let second = format!(
        "*2\r\n{}{}",
        bulk("jobs"),
        bulk(&format!(r#"{{"traceparent":"00-{TRACE2}-{SPAN2}-01"}}"#))
    );
    let got = received(&[first.as_bytes(), second.as_bytes()]);
    assert_eq!(got.len(), 2);
    assert_ids(&got[0], TRACE, SPAN, TraceSource::Uber);
    // A lower-ranked source does not stick: each job is its own request.
    assert_ids(&got[1], TRACE2, SPAN2, TraceSource::W3c);
    let third = bulk(&format!(r#"{{"uber-trace-id":"{TRACE}:{SPAN}:0:1"}}"#));
    let got = received(&[second.as_bytes(), third.as_bytes()]);
    assert_ids(&got[1], TRACE, SPAN, TraceSource::Uber);
}

#[test]
fn garbage_and_malformed_values_publish_nothing() {
    for reply in [
        // Too few digits, a non-hex digit, a zero trace id, names inside longer keys.
        bulk(&format!(
            r#"{{"traceparent":"00-{}-{SPAN}-01"}}"#,
            &TRACE[1..]
        )),
        bulk(&format!(
            r#"{{"traceparent":"00-{}x-{SPAN}-01"}}"#,
            &TRACE[1..]
        )),
        bulk(&format!(
            r#"{{"traceparent":"00-{}-{SPAN}-01"}}"#,
            "0".repeat(32)
        )),
        bulk(&format!(r#"{{"my-traceparent":"00-{TRACE}-{SPAN}-01"}}"#)),
        bulk(&format!(r#"{{"b3s":"{TRACE}-{SPAN}"}}"#)),
        // The name as a value, not a key.
        bulk(&format!(
            r#"{{"header":"traceparent","v":"00-{TRACE}-{SPAN}-01"}}"#
        )),
        // A JSON null and a nested object as the value.
        bulk(r#"{"uber-trace-id":null}"#),
        bulk(r#"{"uber-trace-id":{"a":1}}"#),
        "-ERR unknown command 'traceparent'\r\n".to_string(),
        String::from_utf8_lossy(&[b'*', 0xff, 0, b'"', b'\\', b'$', b'\r', b'\n', 0x80]).into(),
    ] {
        let got = received(&[reply.as_bytes()]);
        assert!(got.is_empty(), "{reply:?}: {got:?}");
    }
}

#[test]
fn only_a_resp_type_byte_first_enters_resp_mode() {
    for first in b"+-:$*_#,(!=%~>|" {
        let mut c = Conn::new();
        c.recv(&[*first]);
        assert_eq!(c.st.phase, phase::RESP, "{}", *first as char);
    }
    // An HTTP request is still an HTTP request, and a RESP-looking byte after its
    // request line does not change the mode.
    let mut c = Conn::new();
    c.recv(request(&[&traceparent()]).as_bytes());
    assert_ids(&c.only(), TRACE, SPAN, TraceSource::W3c);
    assert_eq!(c.st.phase, phase::START);
    // A JSON body sent over HTTP is not scanned as RESP.
    let body = traceparent_job();
    let post = format!(
        "POST /jobs HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut c = Conn::new();
    c.recv(post.as_bytes());
    assert_eq!(c.published.len(), 1);
    assert_none(&c.published[0]);
}

#[test]
fn the_scan_bound_is_resp_scan_max_bytes_per_read() {
    let max = usize::from(RESP_SCAN_MAX);
    // A value whose closing quote, the byte that completes it, is the read's last.
    let tail = format!(r#"$99\r\n{{"uber-trace-id":"{TRACE}:{SPAN}:0:1""#);
    let pad = max - "+".len() - "\r\n".len() - tail.len();
    let at_bound = format!("+{}\r\n{tail}", "x".repeat(pad));
    assert_eq!(at_bound.len(), max);
    let got = received(&[at_bound.as_bytes()]);
    assert_eq!(got.len(), 1);
    assert_ids(&got[0], TRACE, SPAN, TraceSource::Uber);
    // One byte later: the closing quote is not scanned in this read.
    let past = format!("+{}\r\n{tail}", "x".repeat(pad + 1));
    let mut c = Conn::new();
    c.recv(past.as_bytes());
    assert!(c.published.is_empty());
    // The byte past the bound is offered and refused (`Fed::Stop`), never scanned.
    assert_eq!(c.max_offset, Some(max));
    assert_eq!(c.st.resp_cut, 1);
    // The next read starts afresh: the partial token is skipped, what follows is found.
    c.recv(format!("\r\n{}", bulk(&traceparent_job())).as_bytes());
    assert_eq!(c.published.len(), 1);
    assert_ids(&c.published[0], TRACE, SPAN, TraceSource::W3c);
    // Whatever a read holds past the bound, the parser never scans more.
    let mut c = Conn::new();
    let long = format!("*1\r\n{}", bulk(&"y".repeat(3 * max)));
    c.recv(long.as_bytes());
    assert_eq!(c.max_offset, Some(max));
}

#[test]
fn outbound_commands_carry_their_job_context() {
    let lpush = command(&["LPUSH", "jobs", &traceparent_job()]);
    assert_ids(&outbound(lpush.as_bytes()), TRACE, SPAN, TraceSource::W3c);
    let set = command(&["SET", "job:42", &uber_job()]);
    assert_ids(&outbound(set.as_bytes()), TRACE, SPAN, TraceSource::Uber);
    let xadd = command(&[
        "XADD",
        "jobs",
        "*",
        "traceparent",
        &format!("00-{TRACE2}-{SPAN2}-01"),
    ]);
    assert_ids(&outbound(xadd.as_bytes()), TRACE2, SPAN2, TraceSource::W3c);
    let publish = command(&["PUBLISH", "jobs", &uber_job()]);
    assert_ids(
        &outbound(publish.as_bytes()),
        TRACE,
        SPAN,
        TraceSource::Uber,
    );
    assert_none(&outbound(command(&["LPUSH", "jobs", "42"]).as_bytes()));
    assert_none(&outbound(command(&["GET", "job:42"]).as_bytes()));
}

/// The first bytes of `c`, as the kernel peeks at a send.
fn head(c: &str) -> [u8; crate::trace_header::resp::JOB_FETCH_PEEK] {
    let mut h = [0u8; crate::trace_header::resp::JOB_FETCH_PEEK];
    let n = c.len().min(h.len());
    h[..n].copy_from_slice(&c.as_bytes()[..n]);
    h
}

#[test]
fn a_context_read_from_redis_is_a_job_and_a_request_header_is_not() {
    let jobs = received(&[bulk(&uber_job()).as_bytes()]);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].origin, crate::trace::ORIGIN_JOB);
    let request = one(&[&format!("traceparent: 00-{TRACE}-{SPAN}-01")]);
    assert_eq!(request.origin, crate::trace::ORIGIN_REQUEST);
}

#[test]
fn asking_for_the_next_job_is_a_job_fetch() {
    for args in [
        &["BRPOP", "jobs", "0"][..],
        &["brpop", "jobs", "5"],
        &["BLPOP", "a", "b", "0"],
        &["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"],
        &["BRPOPLPUSH", "src", "dst", "0"],
        &["BZPOPMIN", "z", "0"],
        &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"],
    ] {
        assert!(
            crate::trace_header::resp::is_job_fetch(&head(&command(args))),
            "{args:?}"
        );
    }
    // 12 arguments: a two-digit count.
    let many: Vec<&str> = ["BLPOP"].into_iter().chain(["k"; 11]).collect();
    assert!(crate::trace_header::resp::is_job_fetch(&head(&command(
        &many
    ))));
}

#[test]
fn other_commands_and_other_bytes_are_not_job_fetches() {
    for args in [
        &["GET", "job:42"][..],
        &["SET", "job:42", "{}"],
        &["LPUSH", "jobs", "42"],
        &["BITCOUNT", "k"],
        &["BGSAVE"],
        &["XADD", "s", "*", "f", "v"],
        &["XRANGE", "s", "-", "+"],
    ] {
        assert!(
            !crate::trace_header::resp::is_job_fetch(&head(&command(args))),
            "{args:?}"
        );
    }
    for bytes in [
        "GET / HTTP/1.1\r\n\r\n",
        "*\r\n$5\r\nBRPOP\r\n",
        "*2\r\nBRPOP\r\n",
        "*2\r\n$\r\nBRPOP\r\n",
        "*123456\r\n$5\r\nBRPOP\r\n",
        "",
    ] {
        assert!(
            !crate::trace_header::resp::is_job_fetch(&head(bytes)),
            "{bytes:?}"
        );
    }
}
