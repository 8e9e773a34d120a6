//! Which request a Python hit belongs to: `--trace-id` and `--header` filter in the kernel
//! (the watchpoint program reads the trace tracker's per-thread map), snapshots carry the
//! request's trace id, and `rate_per_sec` limits hits as for native breakpoints.

use std::time::{Duration, Instant};

use tracery_agent::Manager;
use tracery_model::{freeze::TraceScope, TraceId, Value};
use tracery_tests::http;

use super::{collect, line_of, serial, spec, start, var, PYTHON};

const TRACE_T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_U: &str = "0af7651916cd43dd8448eb211c80319c";

/// `GET /order?id=ID&wait=300` on its own connection and thread, with extra headers; the
/// waits make the requests overlap, each on its own server thread.
fn order_in_thread(
    addr: &str,
    id: u32,
    headers: Vec<(&'static str, String)>,
) -> std::thread::JoinHandle<()> {
    let addr = addr.to_owned();
    std::thread::spawn(move || {
        let mut c = http::Connection::open(&addr);
        let mut req = http::Request::new("GET", &format!("/order?id={id}&wait=300"));
        for (name, value) in &headers {
            req = req.header(name, value);
        }
        assert_eq!(c.request(&req).status, 200);
    })
}

fn traceparent(trace: &str) -> (&'static str, String) {
    ("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
}

/// The order's id, from the `big` local (`2**70 + order.order_id`).
fn order_id(s: &tracery_agent::Snapshot) -> i128 {
    match var(s, "big") {
        Value::Int(v) => *v - (1i128 << 70),
        other => panic!("big is not an int: {other:?}"),
    }
}

#[test]
fn trace_scope_keeps_only_the_request_of_trace_t_with_its_trace_id() {
    let _serial = serial();
    let (svc, addr) = start(PYTHON);
    let mut m = Manager::start().unwrap();
    let line = line_of("total = subtotal - discount");
    let mut sp = spec(20, svc.pid(), &format!("python/orders.py:{line}"));
    sp.scope = TraceScope {
        trace_id: Some(TraceId::parse(TRACE_T).unwrap()),
        header: None,
    };
    m.add(sp).unwrap();
    // Three requests at once: T's, another trace's, and an untraced one.
    let threads = [
        order_in_thread(&addr, 31, vec![traceparent(TRACE_T)]),
        order_in_thread(&addr, 32, vec![traceparent(TRACE_U)]),
        order_in_thread(&addr, 33, vec![]),
    ];
    for t in threads {
        t.join().unwrap();
    }
    let snaps = collect(&mut m, 1, Duration::from_millis(500));
    assert_eq!(snaps.len(), 1, "only T's request: {snaps:#?}");
    let s = &snaps[0];
    assert_eq!(order_id(s), 31);
    assert_eq!(s.trace_id.as_deref(), Some(TRACE_T));
    assert_eq!(s.span_id.as_deref(), Some("00f067aa0ba902b7"));
    // The other two were dropped in the kernel, not in user space.
    let k = m.python().unwrap().kernel_counters(20);
    assert_eq!(k.out_of_scope, 2, "{k:?}");
    let status = m.status_of(20).unwrap();
    assert_eq!((status.hits, status.filtered), (1, 0), "{status:?}");
}

#[test]
fn unscoped_snapshots_carry_the_trace_id_of_their_request() {
    let _serial = serial();
    let (svc, addr) = start(PYTHON);
    let mut m = Manager::start().unwrap();
    let line = line_of("total = subtotal - discount");
    m.add(spec(21, svc.pid(), &format!("python/orders.py:{line}")))
        .unwrap();
    let threads = [
        order_in_thread(&addr, 41, vec![traceparent(TRACE_T)]),
        order_in_thread(&addr, 42, vec![traceparent(TRACE_U)]),
        order_in_thread(&addr, 43, vec![]),
    ];
    for t in threads {
        t.join().unwrap();
    }
    let mut snaps = collect(&mut m, 3, Duration::from_millis(300));
    assert_eq!(snaps.len(), 3, "{snaps:#?}");
    snaps.sort_by_key(order_id);
    let got: Vec<(i128, Option<&str>)> = snaps
        .iter()
        .map(|s| (order_id(s), s.trace_id.as_deref()))
        .collect();
    assert_eq!(got, [(41, Some(TRACE_T)), (42, Some(TRACE_U)), (43, None)]);
}

#[test]
fn header_scope_keeps_only_requests_with_the_header() {
    let _serial = serial();
    let (svc, addr) = start(PYTHON);
    let mut m = Manager::start().unwrap();
    let line = line_of("total = subtotal - discount");
    let mut sp = spec(22, svc.pid(), &format!("python/orders.py:{line}"));
    sp.scope = TraceScope {
        trace_id: None,
        header: Some(("X-Tenant".into(), "acme".into())),
    };
    m.add(sp).unwrap();
    let threads = [
        order_in_thread(&addr, 51, vec![("x-tenant", "globex".into())]),
        order_in_thread(&addr, 52, vec![("X-Tenant", "acme".into())]),
        order_in_thread(&addr, 53, vec![]),
    ];
    for t in threads {
        t.join().unwrap();
    }
    let snaps = collect(&mut m, 1, Duration::from_millis(500));
    assert_eq!(snaps.len(), 1, "only the acme request: {snaps:#?}");
    assert_eq!(order_id(&snaps[0]), 52);
    assert_eq!(m.python().unwrap().kernel_counters(22).out_of_scope, 2);
}

#[test]
fn rate_limit_drops_hits_in_the_kernel() {
    let _serial = serial();
    let (svc, addr) = start(PYTHON);
    let mut m = Manager::start().unwrap();
    let line = line_of("total = subtotal - discount");
    let mut sp = spec(23, svc.pid(), &format!("python/orders.py:{line}"));
    sp.rate_per_sec = 5;
    m.add(sp).unwrap();
    // 200 calls through the line in one request, as fast as the traps allow.
    const CALLS: u64 = 200;
    let began = Instant::now();
    let ns: u64 = super::get(&addr, &format!("/price?n={CALLS}"))
        .parse()
        .unwrap();
    let wall = began.elapsed().max(Duration::from_nanos(ns));
    let snaps = collect(&mut m, 1, Duration::from_millis(300));
    let k = m.python().unwrap().kernel_counters(23);
    let hits = snaps.len() as u64;
    // Every fetch of the line is either delivered or counted as rate limited.
    assert_eq!(hits + k.rate_limited, CALLS, "{hits} hits, {k:?}");
    // One hit per 200 ms of schedule, plus the first: the burst tolerance is 100 ms.
    let allowed = wall.as_millis() as u64 / 200 + 2;
    assert!(
        (1..=allowed).contains(&hits),
        "{hits} hits in {wall:?} at 5/s (at most {allowed})"
    );
    println!("rate limit 5/s: {hits} of {CALLS} calls in {wall:?} delivered");
}
