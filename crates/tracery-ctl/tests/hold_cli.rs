//! Message holds through the CLI, with the `tracery-agent` binary: the demo's orders service
//! (tokio, so never stopped) frozen at a breakpoint is held, `trace list` shows where, and
//! the request completes after `trace resume`, or after the agent is SIGKILLed (the hold
//! keeper outlives it).
//!
//! Needs root and the PostgreSQL that `cargo xtask test` starts (demo database over TCP).

mod common;

use std::time::{Duration, Instant};

use common::{standalone::Standalone, *};
use serde_json::Value;
use tracery_tests::{
    demo::DemoServices,
    held::{
        checkout, fresh_trace, lines_with, orders_bin, rows_of, without_id, TestCgroup, PG_TCP,
    },
};

/// Polls `trace list --output json` until trace `id` has a held message; returns the trace.
fn wait_held(t: &Standalone, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let out = t.ctl_ok(&["trace", "list", "--output", "json"]);
        let found = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["trace_id"] == id);
        if let Some(v) = found.filter(|v| v["messages"].as_array().is_some_and(|m| !m.is_empty())) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "trace {id} had no held message within {within:?}; trace list: {out}; status: {}",
            t.ctl_ok(&["status"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the services with orders in a cgroup of its own, and a freezing breakpoint there.
fn frozen_orders(t: &Standalone, trace: &str, timeout: &str) -> (DemoServices, TestCgroup) {
    let services = DemoServices::start(&orders_bin(), PG_TCP);
    let cg = TestCgroup::new("cli");
    cg.adopt(services.orders.process.pid());
    t.set(&[
        "--pid",
        &services.orders.process.pid().to_string(),
        "--at",
        &at("demo_priced"),
        "--trace-id",
        trace,
        "--freeze",
        "--freeze-timeout",
        timeout,
    ]);
    (services, cg)
}

#[test]
fn a_held_request_is_listed_and_goes_on_after_resume() {
    tracery_tests::require_root();
    let t = Standalone::start(&[], None);
    let trace = fresh_trace(0x7c);
    let (mut services, _cg) = frozen_orders(&t, &trace, "60s");
    let gateway = services.gateway.addr.clone();
    let (status, unfrozen, _) = checkout(&gateway, &fresh_trace(0x7d), "00f067aa0ba902b7");
    assert_eq!(status, 200, "{unfrozen}");
    let _ = lines_with(&mut services.payments.process, &trace);

    let (g, tr) = (gateway.clone(), trace.clone());
    let request = std::thread::spawn(move || checkout(&g, &tr, "00f067aa0ba902b7"));
    let v = wait_held(&t, &trace, Duration::from_secs(30));
    let m = &v["messages"][0];
    assert_eq!(m["pid"], services.orders.process.pid(), "{v}");
    assert!(m["peer"].as_str().unwrap().ends_with(":5432"), "{v}");
    assert!(m["bytes"].as_u64().unwrap() > 0, "{v}");
    assert!(!m["node"].as_str().unwrap().is_empty(), "{v}");
    let th = &v["threads"][0];
    assert_eq!(th["suspended"], false, "tokio is held, not stopped: {v}");

    let text = t.ctl_ok(&["trace", "view", &trace]);
    assert!(
        text.contains(":5432"),
        "the table shows the connection: {text}"
    );

    std::thread::sleep(Duration::from_millis(500));
    assert!(!request.is_finished(), "the held request waits");
    assert_eq!(rows_of(&trace), 0, "PostgreSQL has nothing of T");
    assert_eq!(lines_with(&mut services.payments.process, &trace), 0);

    let out = t.ctl_ok(&["trace", "resume", &trace]);
    assert!(out.contains("held message"), "{out}");
    let (status, resumed, _) = request.join().unwrap();
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(without_id(&resumed), without_id(&unfrozen));
    assert_eq!(rows_of(&trace), 1);
    assert_eq!(lines_with(&mut services.payments.process, &trace), 1);
}

#[test]
fn killing_the_agent_lets_held_messages_go() {
    tracery_tests::require_root();
    let mut t = Standalone::start(&[], None);
    let trace = fresh_trace(0x8c);
    let (services, _cg) = frozen_orders(&t, &trace, "120s");
    let (g, tr) = (services.gateway.addr.clone(), trace.clone());
    let request = std::thread::spawn(move || checkout(&g, &tr, "00f067aa0ba902b7"));
    wait_held(&t, &trace, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!request.is_finished(), "the held request waits");
    let killed = Instant::now();
    t.stop();
    let (status, body, _) = request.join().unwrap();
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "released by the keeper when the agent died, not by the 120 s deadline: {:?}",
        killed.elapsed()
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows_of(&trace), 1);
}

/// The frozen cut: T frozen in orders before its INSERT. The breakpoint's capture reads
/// the customer's orders at that instant and finds none of T; `trace view` shows T's
/// pending INSERT, held, with its SQL and bound values decoded; after resume the row is
/// there.
#[test]
fn a_frozen_request_s_pending_insert_is_decoded_and_its_capture_sees_no_row_of_it() {
    tracery_tests::require_root();
    let t = Standalone::start_with(&[], None, &["--database", &format!("shop={PG_TCP}")]);
    let trace = fresh_trace(0x7e);
    let services = DemoServices::start(&orders_bin(), PG_TCP);
    let cg = TestCgroup::new("cut");
    cg.adopt(services.orders.process.pid());
    let id = t.set(&[
        "--pid",
        &services.orders.process.pid().to_string(),
        "--at",
        &at("demo_priced"),
        "--trace-id",
        &trace,
        "--freeze",
        "--freeze-timeout",
        "60s",
        "--capture",
        "shop: SELECT id, trace_id FROM orders WHERE customer = {order.customer} \
         ORDER BY id DESC LIMIT 20",
    ]);
    let gateway = services.gateway.addr.clone();
    let (g, tr) = (gateway.clone(), trace.clone());
    let request = std::thread::spawn(move || checkout(&g, &tr, "00f067aa0ba902b7"));
    let v = wait_held(&t, &trace, Duration::from_secs(30));

    // The rows as they stood at the hit: the customer's earlier orders, none of T.
    let snap = &t.snapshots(&id, 1)[0];
    let read = &snap["databases"][0];
    assert!(read["error"].is_null(), "{read}");
    let rows = read["rows"].as_array().unwrap();
    assert!(
        rows.iter().all(|r| r["trace_id"] != trace.as_str()),
        "the capture ran before T's INSERT: {read}"
    );

    // T's INSERT, held on the connection to PostgreSQL, decoded.
    let insert = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["peer"].as_str().is_some_and(|p| p.ends_with(":5432")))
        .unwrap_or_else(|| panic!("no held message to PostgreSQL: {v}"));
    let decoded = &insert["decoded"];
    assert_eq!(decoded["protocol"], "postgresql", "{insert}");
    let parse = &decoded["messages"][0];
    assert_eq!(parse["kind"], "Parse", "{decoded}");
    assert!(
        parse["sql"]
            .as_str()
            .unwrap()
            .contains("INSERT INTO orders"),
        "{decoded}"
    );
    let bind = &decoded["messages"][1];
    assert_eq!(bind["kind"], "Bind", "{decoded}");
    // customer, item, qty, subtotal, discount, total, trace id: the order checkout() sends.
    assert_eq!(
        bind["params"],
        serde_json::json!(["ada", "book", "2", "2500", "0", "2500", trace]),
        "{decoded}"
    );
    let text = t.ctl_ok(&["trace", "view", &trace]);
    assert!(text.contains("pending work"), "{text}");
    assert!(text.contains("Parse: INSERT INTO orders"), "{text}");
    assert!(text.contains("$1='ada' $2='book' $3=2 "), "{text}");
    assert_eq!(
        rows_of(&trace),
        0,
        "PostgreSQL has nothing of T while it is frozen"
    );

    t.ctl_ok(&["trace", "resume", &trace]);
    let (status, body, _) = request.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows_of(&trace), 1, "T's row exists after resume");
}
