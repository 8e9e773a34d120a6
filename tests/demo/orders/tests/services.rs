//! The demo services end to end: gateway (Go) -> orders (Rust, PostgreSQL) -> payments
//! (Go), one W3C trace across all three, and a breakpoint on the orders service.
//!
//! Needs the PostgreSQL that `cargo xtask test` starts (role `root`, database
//! `tracery_test`); set TRACERY_TEST_PG_URL to use another.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use serde_json::Value;
use tracery_tests::{demo::DemoServices, FixtureProcess};

const DEFAULT_PG: &str = "postgres://root@localhost/tracery_test?host=/var/run/postgresql";

fn start() -> DemoServices {
    let pg = std::env::var("TRACERY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG.into());
    DemoServices::start(env!("CARGO_BIN_EXE_demo-orders").as_ref(), &pg)
}

/// A minimal HTTP/1.1 exchange over std's TcpStream: enough for a test, and it keeps an
/// HTTP client crate out of the test build.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Go's server may answer chunked; the JSON object is the longest line.
    let json = body
        .lines()
        .rfind(|l| l.trim_start().starts_with('{'))
        .unwrap_or(body);
    (status, json.to_string())
}

fn access_line(p: &mut FixtureProcess, path: &str) -> String {
    p.wait_for_line(
        &format!("access POST {path} traceparent="),
        Duration::from_secs(10),
    )
}

#[test]
fn one_trace_through_three_services_and_postgres() {
    let mut d = start();
    let order = r#"{"customer":"ana","item":"lamp","qty":3,"unit_cents":1250,"coupon":"TENOFF"}"#;
    let (status, body) = http(&d.gateway.addr, "POST", "/checkout", order);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "paid");
    assert_eq!(v["subtotal_cents"], 3750);
    assert_eq!(v["discount_cents"], 375);
    assert_eq!(v["total_cents"], 3375);
    let trace = v["trace_id"].as_str().unwrap().to_string();
    assert_eq!(trace.len(), 32);

    // Every hop saw the same trace, each with its own span.
    let g = access_line(&mut d.gateway.process, "/checkout");
    let o = access_line(&mut d.orders.process, "/orders");
    let p = access_line(&mut d.payments.process, "/pay");
    for tp in [&g, &o, &p] {
        assert_eq!(&tp[3..35], trace, "{tp}");
    }
    assert_eq!(g, o, "orders is called with the gateway's span");
    assert_ne!(o, p, "orders calls payments with a child span");

    // The order is in PostgreSQL, marked paid, with its trace.
    let id = v["id"].as_i64().unwrap();
    let (status, body) = http(&d.orders.addr, "GET", &format!("/orders/{id}"), "");
    assert_eq!(status, 200, "{body}");
    let stored: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stored["status"], "paid");
    assert_eq!(stored["trace_id"], trace.as_str());
    assert_eq!(stored["total_cents"], 3375);
}

#[test]
fn a_breakpoint_on_the_orders_service_sees_the_order() {
    tracery_tests::require_root();
    let d = start();
    let (file, line) = tracery_tests::marker_line("demo_priced");
    let location = format!("{}:{line}", file.file_name().unwrap().to_string_lossy());
    let limits = tracery_dwarf::CaptureLimits::default();
    let bp = tracery_agent::prepare(d.orders.process.pid(), &location, &limits).unwrap();
    let mut session = tracery_agent::Session::start().unwrap();
    session
        .arm(&bp, &tracery_agent::ArmOptions::default())
        .unwrap();
    let gateway = d.gateway.addr.clone();
    let client = std::thread::spawn(move || {
        let order = r#"{"customer":"bo","item":"desk","qty":2,"unit_cents":9900}"#;
        http(&gateway, "POST", "/checkout", order)
    });
    let mut snaps = Vec::new();
    for _ in 0..100 {
        snaps.extend(session.poll(Duration::from_millis(100)).unwrap());
        if !snaps.is_empty() {
            break;
        }
    }
    let (status, _) = client.join().unwrap();
    assert_eq!(status, 200);
    let s = snaps.first().expect("a hit at the pricing line");
    let json = s.to_json();
    let var = |name: &str| {
        json["variables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["value"].clone())
            .unwrap_or_else(|| panic!("no {name} in {json:#}"))
    };
    assert_eq!(var("order")["target"]["customer"], "bo");
    assert_eq!(var("order")["target"]["qty"], 2);
    assert_eq!(var("subtotal_cents"), 19800);
    assert_eq!(var("discount_cents"), 0);
    assert_eq!(var("total_cents"), 19800);
}
