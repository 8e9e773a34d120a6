//! Node.js "never pauses" benchmark (`cargo xtask bench node`, as root).
//!
//! Runs `tests/fixtures/node/server.js` under `node`. One client thread keeps the hot path
//! busy (`GET /order`, whose handler holds the breakpoint line) while another times
//! `GET /ping`, the second request path, one request at a time on a keep-alive connection.
//! Phase A: no breakpoint. Phase B: a breakpoint on the hot handler's line, armed through
//! the inspector, with no rate limit: every `/order` is captured (each hit serializes the
//! scope and hands it to the agent). Phase C: the same with the controller's default rate
//! limit (10/s), which V8 applies before reading anything: most hits only evaluate the
//! condition (and `spent` answers before any thunk is built). The phases are interleaved,
//! A B C in each of several rounds, each after its own warm-up, and their samples pooled:
//! on a shared VM, load comes and goes, and a sequential A-then-B-then-C put whatever
//! happened meanwhile on one phase only. Prints each round's p50/p99 and ratios, then the
//! pooled p50, p99, B/A and C/A ratios, and how many snapshots were captured. A breakpoint that paused V8 would stop `/ping` with it.
//! Target: p50 and p99 ratios ≤ 1.5.

use std::{
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tracery_agent::{BreakpointSpec, Manager, Target};
use tracery_dwarf::CaptureLimits;
use tracery_tests::{http, FixtureProcess};

/// Interleaved rounds: each runs A, B and C once; the samples are pooled per phase, so
/// load that comes and goes on a shared VM falls on all three phases alike.
const ROUNDS: usize = 5;
/// Timed `/ping` requests per phase and round.
const SAMPLES: usize = 1200;
/// Untimed requests after every switch (JIT warm-up, and the arm/disarm settling).
const WARMUP: usize = 300;
const TARGET_RATIO: f64 = 1.5;
/// Phase C's rate limit: the controller's default (`--rate`).
const DEFAULT_RATE: u32 = 10;

fn main() {
    if !tracery_tests::is_root() {
        eprintln!(
            "the Node bench loads the agent's eBPF programs: run `cargo xtask bench node` as root"
        );
        std::process::exit(1);
    }
    let node = ["node", "nodejs"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Node.js is not installed: run `cargo xtask setup`");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/node/server.js");
    let text = std::fs::read_to_string(&script).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("@probe:node_discount"))
        .expect("marker in server.js") as u32
        + 1;
    let mut cmd = Command::new(node);
    cmd.arg(&script);
    let (server, addr) = FixtureProcess::spawn_service_command(cmd);
    println!(
        "== Node {node} {}: /ping latency while /order is hot, {ROUNDS} rounds of A B C, \
         {SAMPLES} timed /ping per phase and round after {WARMUP} untimed",
        version(node)
    );

    let mut m = Manager::start().expect("load the agent's eBPF programs");
    let spec = |id: u64, rate_per_sec: u32| BreakpointSpec {
        id,
        target: Target::Pid(server.pid()),
        location: format!("node/server.js:{line}"),
        when: None,
        hit_limit: 0,
        rate_per_sec,
        expires_at: None,
        limits: CaptureLimits::default(),
        scope: Default::default(),
        freeze: None,
        capture_paths: Vec::new(),
    };
    let mut pooled: [Vec<f64>; 3] = Default::default();
    let mut totals = [(0u64, 0f64); 3];
    let mut next_id = 1;
    for round in 1..=ROUNDS {
        let mut row = Vec::new();
        for (k, rate) in [(0, None), (1, Some(0)), (2, Some(DEFAULT_RATE))] {
            let id = next_id;
            next_id += 1;
            if let Some(rate) = rate {
                m.add(spec(id, rate)).expect("arm the Node breakpoint");
            }
            let p = phase(&mut m, &addr);
            if rate.is_some() {
                m.remove(id).unwrap();
                assert!(p.snapshots > 0, "the breakpoint never hit in round {round}");
            }
            row.push(summary(&p.ms));
            totals[k].0 += p.snapshots;
            totals[k].1 += p.hot_rate / ROUNDS as f64;
            pooled[k].extend(p.ms);
        }
        println!(
            "  round {round}: p50/p99 ms  A {:.3}/{:.3}  B {:.3}/{:.3}  C {:.3}/{:.3}   \
             B/A {:.2}/{:.2}  C/A {:.2}/{:.2}",
            row[0].0,
            row[0].1,
            row[1].0,
            row[1].1,
            row[2].0,
            row[2].1,
            row[1].0 / row[0].0,
            row[1].1 / row[0].1,
            row[2].0 / row[0].0,
            row[2].1 / row[0].1,
        );
    }
    let names = [
        "A no breakpoint           ".to_owned(),
        "B armed, every hit kept   ".to_owned(),
        format!("C armed, --rate {DEFAULT_RATE}/s (default)"),
    ];
    let pooled: Vec<(f64, f64)> = pooled.iter().map(|ms| summary(ms.as_slice())).collect();
    println!("  pooled over {ROUNDS} rounds:");
    for (k, name) in names.iter().enumerate() {
        println!(
            "  {name} /ping p50 {:7.3} ms  p99 {:7.3} ms; {} snapshots, /order {:.0}/s",
            pooled[k].0, pooled[k].1, totals[k].0, totals[k].1
        );
    }
    for (name, k) in [("B", 1), ("C", 2)] {
        println!(
            "  {name}/A pooled: p50 {:.3}  p99 {:.3}  (target <= {TARGET_RATIO:.2})",
            pooled[k].0 / pooled[0].0,
            pooled[k].1 / pooled[0].1,
        );
    }
    drop(server);
}

/// p50 and p99 of `ms`.
fn summary(ms: &[f64]) -> (f64, f64) {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    (pct(0.50), pct(0.99))
}

struct Phase {
    /// `/ping` latencies, in milliseconds, in the order they were timed.
    ms: Vec<f64>,
    snapshots: u64,
    hot_rate: f64,
}

/// Times `/ping` while a second thread keeps `/order` busy; the Manager ticks meanwhile.
fn phase(m: &mut Manager, addr: &str) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let hot_count = Arc::new(AtomicU64::new(0));
    let hot = {
        let (stop, count, addr) = (stop.clone(), hot_count.clone(), addr.to_owned());
        std::thread::spawn(move || {
            let mut c = http::Connection::open(&addr);
            while !stop.load(Ordering::Relaxed) {
                c.request(&http::Request::new("GET", "/order?id=1"));
                count.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let timer = {
        let addr = addr.to_owned();
        std::thread::spawn(move || {
            let mut c = http::Connection::open(&addr);
            let mut ms = Vec::with_capacity(SAMPLES);
            for i in 0..WARMUP + SAMPLES {
                let t = Instant::now();
                let r = c.request(&http::Request::new("GET", "/ping"));
                assert_eq!(r.status, 200);
                if i >= WARMUP {
                    ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            ms
        })
    };
    let started = Instant::now();
    let mut snapshots = 0u64;
    while !timer.is_finished() {
        snapshots += m.tick(Duration::from_millis(10)).unwrap().len() as u64;
    }
    let ms = timer.join().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    hot.join().unwrap();
    snapshots += m.tick(Duration::from_millis(50)).unwrap().len() as u64;
    Phase {
        ms,
        snapshots,
        hot_rate: hot_count.load(Ordering::Relaxed) as f64 / elapsed,
    }
}

fn version(node: &str) -> String {
    Command::new(node)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
