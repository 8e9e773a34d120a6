//! Database-capture benchmark (run by `cargo xtask bench`, as root): the time from a hit
//! to its snapshot stored with the rows its captures read.
//!
//! A `tracery-agent standalone` with `--database shop=` (the demo's PostgreSQL) and
//! `--database cache=` (the test Redis) arms a freezing breakpoint in the demo's orders
//! service (pricing, before the INSERT) with one PostgreSQL and one Redis capture. Each of
//! `SAMPLES` requests, one at a time, is frozen there; the controller reads both
//! databases while it is frozen, stores the snapshot, and only then sends it to
//! `WatchSnapshots`. The time from the hit (the snapshot's wall-clock time) to its arrival
//! on the stream, with both reads in it, is the figure: p50, p90, p99, max. Then the
//! request is resumed and must complete. Target: p99 < 20 ms.
//!
//! Needs TRACERY_DEMO_ORDERS (a debug demo-orders: release optimizes its variables away),
//! PostgreSQL and Redis: `cargo xtask bench db_capture` provides them.

mod standalone;

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use standalone::{percentile, Agent};
use tracery_proto::v1::{
    breakpoint_spec::Target, BreakpointSpec, DeleteBreakpointRequest, ResumeTraceRequest,
    SnapshotFilter, WatchSnapshotsRequest,
};
use tracery_tests::{
    demo::{DemoServices, REDIS_LOOPBACK},
    held::{checkout, fresh_trace, TestCgroup, PG_TCP},
};

const SAMPLES: usize = 200;
const TARGET_P99_MS: f64 = 20.0;
const SHOP: &str = "shop: SELECT id, status, total_cents FROM orders \
     WHERE customer = {order.customer} ORDER BY id DESC LIMIT 10";
const CACHE: &str = "cache: HGETALL customer:{order.customer}";

#[tokio::main]
async fn main() {
    if !tracery_tests::is_root() {
        eprintln!(
            "the database-capture benchmark attaches uprobes: run `cargo xtask bench` as root"
        );
        std::process::exit(1);
    }
    let orders = PathBuf::from(
        std::env::var("TRACERY_DEMO_ORDERS")
            .expect("TRACERY_DEMO_ORDERS: run `cargo xtask bench db_capture`"),
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let (shop, cache) = (format!("shop={PG_TCP}"), format!("cache={REDIS_LOOPBACK}"));
    let agent = Agent::start(
        dir.path(),
        &[],
        &["--database", &shop, "--database", &cache],
    );
    let mut client = agent.connect().await;
    let services = DemoServices::start(&orders, PG_TCP);
    // Holds follow the cgroups the agent watches: orders gets one of its own.
    let cg = TestCgroup::new("bench-capture");
    cg.adopt(services.orders.process.pid());

    let (file, line) = tracery_tests::marker_line("demo_priced");
    let mut watch = client
        .watch_snapshots(WatchSnapshotsRequest {
            filter: Some(SnapshotFilter {
                breakpoint_id: None,
            }),
        })
        .await
        .expect("WatchSnapshots")
        .into_inner();
    let bp = client
        .set_breakpoint(BreakpointSpec {
            target: Some(Target::Pid(services.orders.process.pid())),
            // As a user types it: demo-orders may have been built in another checkout.
            location: format!("{}:{line}", file.file_name().unwrap().to_string_lossy()),
            freeze: true,
            freeze_timeout_seconds: Some(30),
            // A freezing breakpoint takes one hit unless told more.
            hit_limit: Some(SAMPLES as u32),
            captures: vec![SHOP.into(), CACHE.into()],
            ..Default::default()
        })
        .await
        .expect("SetBreakpoint")
        .into_inner()
        .breakpoint
        .expect("SetBreakpoint returns the breakpoint");
    println!(
        "== hit to snapshot stored with its database rows (freezing breakpoint in demo-orders, \
         {SAMPLES} requests one at a time, captures:\n   {SHOP}\n   {CACHE})"
    );

    let gateway = services.gateway.addr.clone();
    let mut latencies_ms = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let trace = fresh_trace(0xdb);
        let (g, t) = (gateway.clone(), trace.clone());
        let request = std::thread::spawn(move || checkout(&g, &t, "00f067aa0ba902b7"));
        let snap = loop {
            let s = tokio::time::timeout(Duration::from_secs(30), watch.message())
                .await
                .unwrap_or_else(|_| panic!("request {i}: no snapshot within 30 s"))
                .expect("watch stream")
                .expect("the controller closed the watch stream");
            if s.breakpoint_id == bp.id {
                break s;
            }
        };
        let received = SystemTime::now();
        let t = snap.time.expect("snapshot time");
        let hit = UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32);
        let reads = &snap.databases;
        assert_eq!(reads.len(), 2, "request {i}: both captures read: {reads:?}");
        for r in reads {
            assert!(
                r.error.is_none(),
                "request {i}: {}: {:?}",
                r.database,
                r.error
            );
        }
        latencies_ms.push(
            received
                .duration_since(hit)
                .expect("stored after the hit")
                .as_secs_f64()
                * 1e3,
        );
        client
            .resume_trace(ResumeTraceRequest {
                trace_id: trace.clone(),
            })
            .await
            .expect("ResumeTrace");
        let (status, body, _) = request.join().expect("request thread");
        assert_eq!(status, 200, "request {i} after resume: {body}");
    }
    latencies_ms.sort_by(f64::total_cmp);
    let p = |q: f64| percentile(&latencies_ms, q);
    println!(
        "{} samples: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms  (target: p99 < {TARGET_P99_MS} ms)",
        latencies_ms.len(),
        p(0.50),
        p(0.90),
        p(0.99),
        latencies_ms[latencies_ms.len() - 1],
    );
    let _ = client
        .delete_breakpoint(DeleteBreakpointRequest { id: bp.id })
        .await;
}
