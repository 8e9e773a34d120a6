//! Message events: with a breakpoint armed in the Go payments service (so it is tracked),
//! the kernel reports the traced request's receive and its response's send, with the
//! connection seen from the server, the exact byte counts, and TCP sequence numbers; an
//! untraced request on the same connection reports nothing. Root: loads eBPF.

use std::time::{Duration, Instant};

use tracery_agent::{freeze::TraceScope, BreakpointSpec, Manager, Target};
use tracery_dwarf::CaptureLimits;
use tracery_model::message::{MessageEvent, MessageKind};
use tracery_tests::{
    http::{Connection, Request},
    FixtureProcess,
};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn pay(trace: Option<&str>) -> Request {
    let mut req = Request::new("POST", "/pay").body(r#"{"order_id":3,"amount_cents":100}"#);
    if let Some(t) = trace {
        req = req.header("traceparent", &format!("00-{t}-00f067aa0ba902b7-01"));
    }
    req
}

/// Message events until `n` of `trace` arrived, or 10 s passed.
fn events_of(m: &mut Manager, trace: &str, n: usize) -> Vec<MessageEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while Instant::now() < deadline {
        m.tick(Duration::from_millis(20)).unwrap();
        out.extend(
            m.take_messages()
                .events
                .into_iter()
                .filter(|e| e.trace_id.to_string() == trace),
        );
        if out.len() >= n {
            break;
        }
    }
    out
}

#[test]
fn a_traced_request_s_receive_and_reply_are_reported_with_their_bytes() {
    tracery_tests::require_root();
    let (server, addr) =
        FixtureProcess::spawn_service(&tracery_tests::fixture("demo-payments"), &[]);
    let mut m = Manager::start().unwrap();
    m.add(BreakpointSpec {
        id: 1,
        target: Target::Pid(server.pid()),
        location: "main.charge".into(),
        when: None,
        hit_limit: 0,
        rate_per_sec: 0,
        expires_at: None,
        limits: CaptureLimits::default(),
        scope: TraceScope::default(),
        freeze: None,
        capture_paths: Vec::new(),
    })
    .unwrap();
    let mut conn = Connection::open(&addr);
    let untraced = conn.request(&pay(None));
    assert_eq!(untraced.status, 200);
    // An untraced request costs a lookup, and reports nothing.
    let quiet = Instant::now() + Duration::from_millis(300);
    while Instant::now() < quiet {
        m.tick(Duration::from_millis(20)).unwrap();
        let batch = m.take_messages();
        assert!(batch.events.is_empty(), "{:#?}", batch.events);
    }
    let traced = pay(Some(TRACE));
    let request_bytes = traced.to_bytes().len() as u32;
    let response = conn.request(&traced);
    assert_eq!(response.status, 200, "{response:?}");

    let events = events_of(&mut m, TRACE, 2);
    let recvs: Vec<&MessageEvent> = events
        .iter()
        .filter(|e| e.kind == MessageKind::Recv)
        .collect();
    let sends: Vec<&MessageEvent> = events
        .iter()
        .filter(|e| e.kind == MessageKind::Send)
        .collect();
    assert!(!recvs.is_empty() && !sends.is_empty(), "{events:#?}");
    let client = conn.local_addr();
    for e in &events {
        assert_eq!(e.pid, server.pid(), "{e:?}");
        assert_eq!(e.local.to_string(), addr, "the server's end: {e:?}");
        assert_eq!(e.remote, client, "the client's end: {e:?}");
        assert!(e.seq.is_some(), "{e:?}");
        assert!(!e.held);
        assert_eq!(e.process_name, "demo-payments");
    }
    // The request's bytes, however the server read them, in one sequence-number range.
    let received: u32 = recvs.iter().map(|e| e.bytes).sum();
    assert_eq!(received, request_bytes, "{recvs:#?}");
    let first = recvs.iter().map(|e| e.seq.unwrap()).min().unwrap();
    let end = recvs
        .iter()
        .map(|e| e.seq.unwrap().wrapping_add(e.bytes))
        .max()
        .unwrap();
    assert_eq!(end.wrapping_sub(first), request_bytes);
    // The reply is at least its head and body.
    let sent: u32 = sends.iter().map(|e| e.bytes).sum();
    assert!(sent as usize > response.body.len(), "{sends:#?}");
    let (written, lost) = m.message_counters();
    assert!(written >= 2);
    assert_eq!(lost, 0);
}
