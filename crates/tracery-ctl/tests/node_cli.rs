//! Node.js breakpoints end to end: `tracery-ctl` against a real standalone Tracery and a
//! real `node` running `tests/fixtures/node/server.js`. Hits are stored, listed and shown
//! by `snapshot view` like any other, with `language: "javascript"`.

mod common;

use std::{net::TcpStream, path::PathBuf, process::Command, time::Duration};

use common::{standalone::Standalone, var};
use serde_json::{json, Value};
use tracery_tests::{http, FixtureProcess};

fn server_js() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/node/server.js")
}

fn node_bin() -> &'static str {
    ["node", "nodejs"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Node.js is not installed: run `cargo xtask setup` (it installs Debian's nodejs)")
}

fn get(addr: &str, path: &str) {
    let r = http::Connection::open(addr).request(&http::Request::new("GET", path));
    assert_eq!(r.status, 200);
}

#[test]
fn node_hits_are_stored_listed_and_viewed_as_javascript() {
    tracery_tests::require_root();
    let t = Standalone::start(&[], None);
    let mut cmd = Command::new(node_bin());
    cmd.arg(server_js());
    let (server, addr) = FixtureProcess::spawn_service_command(cmd);
    let text = std::fs::read_to_string(server_js()).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("@probe:node_discount"))
        .unwrap()
        + 1;
    let pid = server.pid().to_string();
    let at = format!("server.js:{line}");
    let id = t.set(&["--pid", &pid, "--at", &at, "--hits", "2"]);
    get(&addr, "/order?id=41");
    get(&addr, "/order?id=42");
    let snaps = t.snapshots(&id, 2);
    assert_eq!(snaps.len(), 2);
    let view = t.ctl_ok(&[
        "snapshot",
        "view",
        &snaps[0]["id"].to_string(),
        "--output",
        "json",
    ]);
    let v: Value = serde_json::from_str(view.trim()).unwrap();
    assert_eq!(v["language"], "javascript", "{v:#}");
    assert_eq!(v["location"]["function"], "applyDiscount");
    assert_eq!(v["location"]["line"], line);
    let first_id = var(&v, "order")["id"].clone();
    assert!(first_id == json!(41) || first_id == json!(42), "{v:#}");
    assert_eq!(
        var(&v, "order"),
        &json!({"id": first_id, "customer": {"name": "Ada", "tier": "gold"},
                "lines": [["apple", 2, 1.5], ["pear", 1, 3]]})
    );
    // A closure variable carries the function it belongs to as its frame.
    let stock = v["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "stock")
        .unwrap_or_else(|| panic!("no stock in {v:#}"));
    assert_eq!(stock["frame"], "makePricer");
    assert_eq!(
        stock["value"],
        json!({"map": [["apple", 3], ["pear", 0]], "shown": 2, "total": 2})
    );
    let frames: Vec<&str> = v["stack"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|f| f["function"].as_str().unwrap())
        .collect();
    assert_eq!(frames, ["applyDiscount", "priceOrder", "handleOrder"]);

    let text = t.ctl_ok(&["snapshot", "view", &snaps[0]["id"].to_string()]);
    assert!(text.contains("local customer: string = 'Ada'"), "{text}");
    assert!(text.contains("closure of makePricer:"), "{text}");
    assert!(
        text.contains("local stock: Map = Map(2) { 'apple' => 3, 'pear' => 0 }"),
        "{text}"
    );

    // Two hits, then the breakpoint ended and the agent let the inspector go.
    get(&addr, "/order?id=43");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.snapshots(&id, 2).len(), 2);
    t.ctl_ok(&["breakpoint", "delete", &id]);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while TcpStream::connect("127.0.0.1:9229").is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "port 9229 still accepts connections after delete"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 15: a trace frozen in the demo holds a Node service of the same cgroup by its
/// trace header: Node forwards `traceparent` on its outbound call, and that call waits
/// until `trace resume`. Needs the PostgreSQL that `cargo xtask test` starts.
#[test]
fn a_frozen_trace_holds_a_node_service_in_the_demo_cgroup_by_its_header() {
    use tracery_tests::{
        demo::DemoServices,
        held::{checkout, fresh_trace, orders_bin, TestCgroup, PG_TCP},
    };
    tracery_tests::require_root();
    let t = Standalone::start(&[], None);
    let trace = fresh_trace(0x5e);
    let services = DemoServices::start(&orders_bin(), PG_TCP);
    let cg = TestCgroup::new("node-hold");
    cg.adopt(services.orders.process.pid());
    let mut cmd = Command::new(node_bin());
    cmd.arg(server_js());
    let (node, node_addr) = FixtureProcess::spawn_service_command(cmd);
    cg.adopt(node.pid());
    t.set(&[
        "--pid",
        &services.orders.process.pid().to_string(),
        "--at",
        &common::at("demo_priced"),
        "--trace-id",
        &trace,
        "--freeze",
        "--freeze-timeout",
        "60s",
    ]);
    // Freeze T in orders.
    let (g, tr) = (services.gateway.addr.clone(), trace.clone());
    let frozen = std::thread::spawn(move || checkout(&g, &tr, "00f067aa0ba902b7"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = t.ctl_ok(&["trace", "list", "--output", "json"]);
        if out.contains(&trace) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "T never froze: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another request of T reaches the Node service, which calls out with T's header.
    let (a, tr) = (node_addr.clone(), trace.clone());
    let forwarded = std::thread::spawn(move || {
        let mut c = http::Connection::open(&a);
        c.request(
            &http::Request::new("GET", "/forward")
                .header("traceparent", &format!("00-{tr}-b7ad6b7169203331-01")),
        )
    });
    // An unrelated request through the same Node service is not held.
    let mut c = http::Connection::open(&node_addr);
    let other = c.request(&http::Request::new("GET", "/forward").header(
        "traceparent",
        &format!("00-{}-b7ad6b7169203331-01", fresh_trace(0x5f)),
    ));
    assert_eq!(String::from_utf8_lossy(&other.body), "forwarded 200 pong");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !forwarded.is_finished(),
        "Node's outbound call with T's header is held"
    );
    let listed = t.ctl_ok(&["trace", "list", "--output", "json"]);
    assert!(
        listed.contains(&format!("\"pid\":{}", node.pid())),
        "the held message is Node's: {listed}"
    );
    t.ctl_ok(&["trace", "resume", &trace]);
    let r = forwarded.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&r.body), "forwarded 200 pong");
    let (status, _, _) = frozen.join().unwrap();
    assert_eq!(status, 200);
}
