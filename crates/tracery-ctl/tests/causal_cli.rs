//! The causal graph of a real trace, end to end with the `tracery-agent` binary: the demo's
//! gateway (Go) -> orders (Rust, tokio) -> payments (Go), a breakpoint in each (so each is
//! tracked), one traced checkout. `trace view --output json` must show each request's
//! send joined to its receive by connection and byte range, in causal order; and
//! `tracery-ctl query` answers over the same store, refusing a write.
//!
//! Needs root and the PostgreSQL that `cargo xtask test` starts (demo database over TCP).

mod common;

use std::time::{Duration, Instant};

use common::{standalone::Standalone, *};
use serde_json::Value;
use tracery_tests::{
    demo::DemoServices,
    held::{checkout, fresh_trace, orders_bin, PG_TCP},
};

fn by_id<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no event {id}"))
}

/// The edges from a send of process `from` to a receive of process `to`.
fn edges_between<'a>(v: &'a Value, from: &str, to: &str) -> Vec<(&'a Value, &'a Value)> {
    v["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                by_id(v, e["from"].as_str().unwrap()),
                by_id(v, e["to"].as_str().unwrap()),
            )
        })
        .filter(|(s, r)| {
            s["process"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{from}"))
                && r["process"].as_str().unwrap().ends_with(&format!("/{to}"))
        })
        .collect()
}

#[test]
fn a_three_service_trace_has_each_send_joined_to_its_receive_in_causal_order() {
    tracery_tests::require_root();
    let t = Standalone::start(&[], None);
    let services = DemoServices::start(&orders_bin(), PG_TCP);
    let (gw, orders, pay) = (
        services.gateway.process.pid(),
        services.orders.process.pid(),
        services.payments.process.pid(),
    );
    for (pid, at) in [
        (gw, at("demo_gateway_access")),
        (orders, at("demo_priced")),
        (pay, "main.charge".to_owned()),
    ] {
        t.set(&["--pid", &pid.to_string(), "--at", &at]);
    }
    let trace = fresh_trace(0x5c);
    let (status, body, _) = checkout(&services.gateway.addr, &trace, "00f067aa0ba902b7");
    assert_eq!(status, 200, "{body}");

    // Agents report every few milliseconds; wait for both hops' requests and replies.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (gw, orders, pay) = (gw.to_string(), orders.to_string(), pay.to_string());
    let v = loop {
        let v = t.trace_view_json(&trace, deadline);
        let complete = [
            (&gw, &orders),
            (&orders, &pay),
            (&pay, &orders),
            (&orders, &gw),
        ]
        .iter()
        .all(|(a, b)| !edges_between(&v, a, b).is_empty());
        if complete {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace} lacks an edge between the three services within 30 s: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    for e in v["edges"].as_array().unwrap() {
        let (s, r) = (
            by_id(&v, e["from"].as_str().unwrap()),
            by_id(&v, e["to"].as_str().unwrap()),
        );
        assert_eq!(
            (s["kind"].as_str(), r["kind"].as_str()),
            (Some("send"), Some("recv")),
            "{e}"
        );
        assert_eq!(s["conn"], r["conn"], "joined by connection: {s} {r}");
        assert_ne!(s["process"], r["process"]);
        assert!(s["lamport"].as_u64() < r["lamport"].as_u64(), "{s} {r}");
    }
    let first = |a: &str, b: &str| {
        let mut pairs = edges_between(&v, a, b);
        pairs.sort_by_key(|(s, _)| s["lamport"].as_u64());
        pairs[0]
    };
    let (gw_req, orders_in) = first(&gw, &orders);
    let (orders_req, pay_in) = first(&orders, &pay);
    let (pay_reply, orders_back) = first(&pay, &orders);
    let (orders_reply, gw_back) = first(&orders, &gw);
    // The request travels down and the replies come back, in that causal order.
    let l = |e: &Value| e["lamport"].as_u64().unwrap();
    assert!(l(gw_req) < l(orders_in) && l(orders_in) < l(orders_req));
    assert!(l(orders_req) < l(pay_in) && l(pay_in) < l(pay_reply));
    assert!(l(pay_reply) < l(orders_back) && l(orders_back) < l(orders_reply));
    assert!(l(orders_reply) < l(gw_back));
    // The connection as the bytes went: the gateway's end, then orders' listening port.
    let orders_port = services.orders.addr.rsplit(':').next().unwrap();
    assert!(
        gw_req["conn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{orders_port}")),
        "{gw_req}"
    );
    // Vector clocks: orders' reply knows payments' reply.
    let pay_lane = pay_reply["process"].as_str().unwrap();
    assert!(
        orders_reply["vclock"][pay_lane].as_u64().unwrap()
            >= pay_reply["vclock"][pay_lane].as_u64().unwrap()
    );

    // Each service's hit is an event of its lane, after its request arrived.
    for (pid, after) in [
        (&gw, None),
        (&orders, Some(orders_in)),
        (&pay, Some(pay_in)),
    ] {
        let hit = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["kind"] == "hit" && e["process"].as_str().unwrap().ends_with(&format!("/{pid}"))
            })
            .unwrap_or_else(|| panic!("no hit of {pid}: {v:#}"));
        assert!(hit["snapshot_id"].as_i64().unwrap() > 0);
        if let Some(recv) = after {
            assert!(l(hit) > l(recv), "hit {hit} after {recv}");
        }
    }
    // The service graph names both hops both ways.
    let services_seen: Vec<(String, String)> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["from"].as_str().unwrap().to_owned(),
                s["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let name = |e: &Value| e["service"].as_str().unwrap().to_owned();
    for (s, r) in [(gw_req, orders_in), (orders_req, pay_in)] {
        assert!(
            services_seen.contains(&(name(s), name(r))),
            "{services_seen:?}"
        );
    }
    let critical = v["critical_path"].as_array().unwrap();
    assert!(!critical.is_empty());
    let text = t.ctl_ok(&["trace", "view", &trace]);
    assert!(text.contains("events in causal order"), "{text}");

    // The same trace through `query`: its messages, causally ordered, and a refused write.
    let sql =
        format!("SELECT kind, lamport FROM messages WHERE trace_id = '{trace}' ORDER BY lamport");
    let out = t.ctl_ok(&["query", &sql, "--output", "json"]);
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() >= 8, "{out}");
    assert!(
        rows.iter().all(|r| r["lamport"].as_u64().is_some()),
        "{out}"
    );
    let table = t.ctl_ok(&["query", "SELECT trace_id, messages FROM traces"]);
    assert!(table.contains(&trace), "{table}");
    let refused = t.ctl(&["query", "DELETE FROM messages"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("queries are read-only"), "{err}");
    let again = t.ctl_ok(&["query", &sql, "--output", "json"]);
    assert_eq!(again.lines().count(), rows.len(), "nothing was deleted");
}
