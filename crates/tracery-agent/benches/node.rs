//! Node.js "never pauses" benchmark (`cargo xtask bench node`, as root).
//!
//! Runs `tests/fixtures/node/server.js` under `node`. One client thread keeps the hot path
//! busy (`GET /order`, whose handler holds the breakpoint line) while another times
//! `GET /ping`, the second request path, one request at a time on a keep-alive connection.
//! Phase A: no breakpoint. Phase B: a breakpoint on the hot handler's line, armed through
//! the inspector, with no rate limit: every `/order` is captured (each hit serializes the
//! scope and hands it to the agent). Phase C: the same with the controller's default rate
//! limit (10/s), which V8 applies before reading anything: most hits only evaluate the
//! condition. Prints `/ping`'s p50 and p99 in each phase, B/A and C/A ratios, and how many
//! snapshots were captured. A breakpoint that paused V8 would stop `/ping` with it.
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

/// Timed `/ping` requests per phase.
const SAMPLES: usize = 3000;
/// Untimed requests before each phase (JIT warm-up).
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
        "== Node {node} {}: /ping latency while /order is hot",
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
    let a = phase(&mut m, &addr);
    m.add(spec(1, 0)).expect("arm the Node breakpoint");
    let b = phase(&mut m, &addr);
    assert!(b.snapshots > 0, "the breakpoint never hit during phase B");
    m.remove(1).unwrap();
    m.add(spec(2, DEFAULT_RATE))
        .expect("arm the rate-limited Node breakpoint");
    let c = phase(&mut m, &addr);
    assert!(c.snapshots > 0, "the breakpoint never hit during phase C");
    m.remove(2).unwrap();
    report("A no breakpoint           ", &a);
    report("B armed, every hit kept   ", &b);
    report(&format!("C armed, --rate {DEFAULT_RATE}/s (default)"), &c);
    for (name, p) in [("B", &b), ("C", &c)] {
        println!(
            "  {name}/A: p50 {:.3}  p99 {:.3}  (target <= {TARGET_RATIO:.2}); {} snapshots, /order {:.0}/s",
            p.p50 / a.p50,
            p.p99 / a.p99,
            p.snapshots,
            p.hot_rate
        );
    }
    drop(server);
}

struct Phase {
    p50: f64,
    p99: f64,
    snapshots: u64,
    hot_rate: f64,
}

fn report(name: &str, p: &Phase) {
    println!("  {name} /ping p50 {:7.3} ms  p99 {:7.3} ms", p.p50, p.p99);
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
    let mut ms = timer.join().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    hot.join().unwrap();
    snapshots += m.tick(Duration::from_millis(50)).unwrap().len() as u64;
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    Phase {
        p50: pct(0.50),
        p99: pct(0.99),
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
