//! The trace page of a real three-service request in headless chromium: the demo's gateway
//! (Go) -> orders (Rust, tokio) -> payments (Go), a breakpoint in each so each is tracked,
//! one traced checkout. The page must draw one lane per service and every send->receive
//! arrow of the trace, each pointing forward in causal order, with the request going down
//! before the replies come back.
//!
//! Needs root, chromium (`cargo xtask setup`), and the PostgreSQL that `cargo xtask test`
//! starts. Without chromium it prints SKIPPED with the reason.

mod common;

use std::time::{Duration, Instant};

use common::{browser::*, standalone::Standalone, *};
use tracery_tests::{
    demo::DemoServices,
    held::{checkout, fresh_trace, orders_bin, PG_TCP},
};

#[test]
fn the_trace_page_draws_three_lanes_and_causal_arrows() {
    tracery_tests::require_root();
    let t = Standalone::start_with(&[], None, &["--ui", "127.0.0.1:0"]);
    let url = ui_url(&t);
    let origin = origin(&url);
    let services = DemoServices::start(&orders_bin(), PG_TCP);
    let pids = [
        services.gateway.process.pid(),
        services.orders.process.pid(),
        services.payments.process.pid(),
    ];
    for (pid, at) in [
        (pids[0], at("demo_gateway_access")),
        (pids[1], at("demo_priced")),
        (pids[2], "main.charge".to_owned()),
    ] {
        t.set(&["--pid", &pid.to_string(), "--at", &at]);
    }
    let trace = fresh_trace(0x7e);
    let (status, body, _) = checkout(&services.gateway.addr, &trace, "00f067aa0ba902b7");
    assert_eq!(status, 200, "{body}");

    // Wait until the controller has joined both hops' requests and replies.
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let v = t.trace_view_json(&trace, deadline);
        let lanes: std::collections::BTreeSet<&str> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["process"].as_str())
            .collect();
        if lanes.len() == 3 && v["edges"].as_array().unwrap().len() >= 4 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace} lacks three lanes and four edges within 30 s: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let edges = view["edges"].as_array().unwrap().len() as u64;

    runtime().block_on(async {
        let chrome = match Chrome::launch().await {
            Ok(c) => c,
            Err(why) => {
                println!("SKIPPED: {why}");
                return;
            }
        };
        let page = chrome.page(&url).await;
        page.goto(format!("{origin}/traces/{trace}")).await.unwrap();
        page.wait_for_navigation().await.unwrap();
        wait_js(&page, "window.traceryRender", Duration::from_secs(10)).await;
        let lanes: Vec<String> = page
            .evaluate("[...document.querySelectorAll('text.lane-label')].map(t => t.textContent)")
            .await
            .unwrap()
            .into_value()
            .unwrap();
        assert_eq!(lanes.len(), 3, "one lane per service: {lanes:?}");
        // Every arrow as drawn: from (x1, y1) to (x2, y2), read from its path.
        let arrows: Vec<[f64; 4]> = page
            .evaluate(
                "[...document.querySelectorAll('path.edge')].map(p => {
                   const n = p.getAttribute('d').match(/-?[0-9.]+/g).map(Number);
                   return [n[0], n[1], n[n.length - 2], n[n.length - 1]];
                 })",
            )
            .await
            .unwrap()
            .into_value()
            .unwrap();
        assert_eq!(
            arrows.len() as u64,
            edges,
            "every edge of the trace is drawn"
        );
        for a in &arrows {
            assert!(
                a[0] < a[2],
                "an arrow points forward in causal order: {a:?}"
            );
            assert!(a[1] != a[3], "an arrow joins two lanes: {a:?}");
        }
        // The request goes down lane by lane before any reply comes back up: the first
        // two arrows (in causal order) go down the lanes, the last two come back.
        let mut by_x = arrows.clone();
        by_x.sort_by(|a, b| a[0].total_cmp(&b[0]));
        let down = |a: &[f64; 4]| a[3] > a[1];
        assert!(
            down(&by_x[0]) && down(&by_x[1]),
            "the request reaches orders, then payments: {by_x:?}"
        );
        let n = by_x.len();
        assert!(
            !down(&by_x[n - 1]) && !down(&by_x[n - 2]),
            "the replies come back last: {by_x:?}"
        );
        let note = text(&page, "#timeline-note").await;
        assert!(note.contains("3 lanes"), "{note}");
        shot(&page, "trace-three-services").await;
        chrome.close().await;
    });
}
