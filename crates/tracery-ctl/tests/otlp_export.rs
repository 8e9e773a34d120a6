//! OTLP export end to end (issue 13): a real standalone Tracery exports to a real OTLP gRPC
//! receiver (`tracery_tests::otlp_receiver`, the generated services of
//! `opentelemetry-proto` on a socket) while a real C server is hit.
//!
//! - a snapshot of a traced request is a `tracery.snapshot` span under the request's
//!   span, with the code location, ids, variables and resource attributes;
//! - a freeze is a `tracery.freeze` span whose `tracery.frozen` and `tracery.resumed`
//!   events arrive after `trace resume`;
//! - a snapshot without a trace is a log record;
//! - `OTEL_EXPORTER_OTLP_HEADERS` reaches the collector as the calls' metadata;
//! - with the collector gone, `status` counts what was dropped and says what to do.
//!
//! Queue-full and timeout drops, and the `k8s.*` resource attributes, are tested in the
//! controller (`export::tests`, `export::otlp::tests`): filling a 4096-item queue or a pod
//! take more than a test process here has.

mod common;

use std::time::{Duration, Instant};

use common::{standalone::Standalone, *};
use serde_json::Value;
use tracery_tests::{
    fixture,
    http::{Connection, Request},
    otlp_receiver::{Attr, OtlpReceiver},
    FixtureProcess,
};

/// How long an export may take to arrive: the exporter sends as soon as items are queued.
const ARRIVAL: Duration = Duration::from_secs(15);

/// The request's span, as its `traceparent` names it.
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// What `OTEL_EXPORTER_OTLP_HEADERS` sets in the first test: a tenant and a
/// percent-encoded credential, as collectors behind a gateway want them.
const OTLP_HEADERS: &str = "x-tenant=acme,authorization=Bearer%20t0k3n";

/// A standalone Tracery exporting to `endpoint`, with the C server as service `httpd`.
fn standalone(endpoint: &str) -> Standalone {
    Standalone::start_with(
        &[("httpd", &fixture("c-httpd"))],
        None,
        &["--otlp-endpoint", endpoint],
    )
}

/// Polls `trace list` until `trace` has a stopped thread and its snapshot is stored.
fn wait_suspended(t: &Standalone, trace: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let out = t.ctl_ok(&["trace", "list", "--output", "json"]);
        let frozen = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["trace_id"] == trace)
            .is_some_and(|v| {
                v["threads"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|th| th["suspended"] == true))
                    && v["snapshots"].as_array().is_some_and(|s| !s.is_empty())
            });
        if frozen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace} was not frozen within {within:?}; trace list: {out}; status: {}",
            t.ctl_ok(&["status"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status_json(t: &Standalone) -> Value {
    serde_json::from_str(t.ctl_ok(&["status", "--output", "json"]).trim()).unwrap()
}

/// The export status once `ready` holds (or [`ARRIVAL`] passes). The collector has an
/// export before the exporter hears its answer and counts it, so a count read right after
/// the collector saw something can still be the one before.
fn export_once(t: &Standalone, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let export = status_json(t)["export"].clone();
        if ready(&export) || Instant::now() >= deadline {
            return export;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_frozen_hit_is_a_span_under_the_request_and_its_freeze_events_arrive_after_resume() {
    tracery_tests::require_root();
    let receiver = OtlpReceiver::start();
    let t = Standalone::start_with_env(
        &[("httpd", &fixture("c-httpd"))],
        None,
        &["--otlp-endpoint", &receiver.endpoint()],
        &[("OTEL_EXPORTER_OTLP_HEADERS", OTLP_HEADERS)],
    );
    let (server, addr) = FixtureProcess::spawn_service(&fixture("c-httpd"), &[]);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    // The thread that will serve the request must exist when the breakpoint is armed.
    let mut conn = Connection::open(&addr);
    std::thread::sleep(Duration::from_millis(200));
    let id = t.set(&[
        "--service",
        "httpd",
        "--at",
        &at("httpd_handle"),
        "--trace-id",
        trace,
        "--freeze",
        "--freeze-timeout",
        "30s",
    ]);
    let request = std::thread::spawn(move || {
        conn.request(
            &Request::new("GET", "/orders/7")
                .header("traceparent", &format!("00-{trace}-{PARENT_SPAN}-01")),
        )
        .status
    });
    wait_suspended(&t, trace, Duration::from_secs(20));

    // The snapshot's span arrives while the request is still frozen.
    let span = receiver.wait_span(ARRIVAL, |s| s.name == "tracery.snapshot");
    let stored = t.snapshots(&id, 1);
    let snapshot_id = stored[0]["id"].as_i64().unwrap();
    assert_eq!(span.trace_id, trace, "{span:#?}");
    assert_eq!(span.parent_span_id, PARENT_SPAN, "{span:#?}");
    assert_ne!(span.span_id, PARENT_SPAN, "{span:#?}");
    // Bits 8 and 9: the parent is known to be remote (in the traced service).
    assert_eq!(span.flags & 0x300, 0x300, "{span:#?}");
    let a = &span.attributes;
    assert_eq!(
        a.get("code.function.name").and_then(Attr::as_str),
        Some("handle_request"),
        "{a:#?}"
    );
    assert!(
        a.get("code.file.path")
            .and_then(Attr::as_str)
            .is_some_and(|f| f.ends_with("httpd.c")),
        "{a:#?}"
    );
    assert_eq!(
        a.get("code.line.number"),
        Some(&Attr::Int(line_of("httpd_handle").into())),
        "{a:#?}"
    );
    assert_eq!(
        a.get("tracery.breakpoint.id"),
        Some(&Attr::Int(id.parse().unwrap()))
    );
    assert_eq!(a.get("tracery.snapshot.id"), Some(&Attr::Int(snapshot_id)));
    assert_eq!(a.get("tracery.var.status"), Some(&Attr::Int(200)), "{a:#?}");
    assert_eq!(a.get("tracery.var.body_len"), Some(&Attr::Int(0)), "{a:#?}");
    assert!(
        a.iter().any(|(k, v)| k.starts_with("tracery.var.path")
            && v.as_str().is_some_and(|p| p.contains("/orders/7"))),
        "the request path is a variable attribute: {a:#?}"
    );
    let r = &span.resource;
    assert_eq!(r.get("service.name").and_then(Attr::as_str), Some("httpd"));
    assert_eq!(
        r.get("process.pid"),
        Some(&Attr::Int(server.pid().into())),
        "{r:#?}"
    );
    assert_eq!(
        r.get("process.executable.name").and_then(Attr::as_str),
        fixture("c-httpd").file_name().and_then(|n| n.to_str()),
        "{r:#?}"
    );
    assert!(
        r.get("host.name")
            .and_then(Attr::as_str)
            .is_some_and(|h| !h.is_empty()),
        "{r:#?}"
    );
    assert!(
        receiver.spans().iter().all(|s| s.name != "tracery.freeze"),
        "the freeze span comes with the resume"
    );
    // Every export call carried the configured headers, decoded.
    let metadata = receiver.metadata();
    assert!(!metadata.is_empty());
    for m in &metadata {
        assert_eq!(
            m.get("x-tenant").map(String::as_str),
            Some("acme"),
            "{m:#?}"
        );
        assert_eq!(
            m.get("authorization").map(String::as_str),
            Some("Bearer t0k3n"),
            "{m:#?}"
        );
    }

    let out = t.ctl_ok(&["trace", "resume", trace]);
    assert!(out.starts_with(&format!("resumed trace {trace}")), "{out}");
    assert_eq!(request.join().unwrap(), 200);
    let freeze = receiver.wait_span(ARRIVAL, |s| s.name == "tracery.freeze");
    assert_eq!(freeze.trace_id, trace, "{freeze:#?}");
    assert_eq!(freeze.parent_span_id, PARENT_SPAN, "{freeze:#?}");
    let events: Vec<&str> = freeze.events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(events, ["tracery.frozen", "tracery.resumed"], "{freeze:#?}");
    for (name, attrs) in &freeze.events {
        assert!(
            matches!(attrs.get("tracery.held.messages"), Some(Attr::Int(n)) if *n >= 0),
            "{name} carries the held message count: {freeze:#?}"
        );
    }
    assert_eq!(
        freeze.events[1].1.get("tracery.release.reason"),
        Some(&Attr::Str("resumed".into()))
    );
    assert!(freeze.end_unix_nano > freeze.start_unix_nano, "{freeze:#?}");
    assert_eq!(freeze.resource.get("service.name"), r.get("service.name"));

    let export = &export_once(&t, |e| e["exported_spans"].as_u64() >= Some(2));
    assert_eq!(export["endpoint"], receiver.endpoint(), "{export}");
    assert!(export["exported_spans"].as_u64().unwrap() >= 2, "{export}");
    assert_eq!(export["dropped"], serde_json::json!({}), "{export}");
}

#[test]
fn an_untraced_hit_is_a_log_record_and_drops_are_counted_once_the_collector_is_gone() {
    tracery_tests::require_root();
    let mut receiver = OtlpReceiver::start();
    let t = standalone(&receiver.endpoint());
    // This instance inherits no OTEL_EXPORTER_OTLP_HEADERS, and sends no such metadata:
    // the first test's headers came from its variable.
    assert!(std::env::var_os("OTEL_EXPORTER_OTLP_HEADERS").is_none());
    let (server, addr) = FixtureProcess::spawn_service(&fixture("c-httpd"), &[]);
    let id = t.set(&[
        "--pid",
        &server.pid().to_string(),
        "--at",
        &at("httpd_handle"),
        "--hits",
        "10",
        // Requests come in a quick row: the default rate limit would thin them out.
        "--rate",
        "1000",
    ]);
    let get = |path: &str| Connection::open(&addr).request(&Request::new("GET", path));
    assert_eq!(get("/orders/1").status, 200);
    let stored = t.snapshots(&id, 1);
    let snapshot_id = stored[0]["id"].as_i64().unwrap();
    let log = receiver.wait_log(ARRIVAL, |l| {
        l.attributes.get("tracery.snapshot.id") == Some(&Attr::Int(snapshot_id))
    });
    assert!(log.trace_id.is_empty(), "{log:#?}");
    assert_eq!(log.event_name, "tracery.snapshot", "{log:#?}");
    assert!(
        log.body.starts_with(&format!(
            "snapshot {snapshot_id}: breakpoint {id} hit handle_request (httpd.c:"
        )),
        "{log:#?}"
    );
    assert_eq!(
        log.attributes.get("code.line.number"),
        Some(&Attr::Int(line_of("httpd_handle").into()))
    );
    assert_eq!(
        log.attributes.get("tracery.var.status"),
        Some(&Attr::Int(200))
    );
    // A --pid breakpoint names no service: the executable does.
    assert_eq!(
        log.resource.get("service.name").and_then(Attr::as_str),
        fixture("c-httpd").file_name().and_then(|n| n.to_str())
    );
    assert!(
        receiver
            .spans()
            .iter()
            .all(|s| s.name != "tracery.snapshot"),
        "no span without a trace"
    );
    let before = export_once(&t, |e| e["exported_logs"] == 1);
    assert_eq!(before["exported_logs"], 1, "{before}");
    assert!(
        receiver
            .metadata()
            .iter()
            .all(|m| !m.contains_key("x-tenant")),
        "{:#?}",
        receiver.metadata()
    );

    // The collector goes away: capture goes on, and what cannot be sent is counted.
    receiver.stop();
    for n in 2..=4 {
        assert_eq!(get(&format!("/orders/{n}")).status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    t.snapshots(&id, 4);
    let deadline = Instant::now() + ARRIVAL;
    let export = loop {
        let export = status_json(&t)["export"].clone();
        if export["dropped"]["export failed"].as_u64() >= Some(3) {
            break export;
        }
        assert!(
            Instant::now() < deadline,
            "the drops were not counted within {ARRIVAL:?}: {export}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(export["exported_logs"], 1, "{export}");
    assert!(export["last_error"].is_string(), "{export}");
    let text = t.ctl_ok(&["status"]);
    assert!(
        text.contains(&format!(
            "export to {}: 0 span(s) and 1 log record(s) sent, 3 dropped (3 export failed)",
            receiver.endpoint()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "collector at {} unreachable or refusing:",
            receiver.endpoint()
        )),
        "{text}"
    );
}
