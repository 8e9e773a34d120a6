//! Control-plane benchmark (run by `cargo xtask bench`, as root).
//!
//! Starts `tracery-agent standalone` as a child process, as a user would, with a
//! `tracery.toml` naming service `svc` (a private copy of the C fixture), a temporary SQLite
//! store and a free port, then measures it from outside:
//!
//! 1. Idle: the agent's CPU (utime + stime over 10 s, after a 3 s settle) and its RSS, with
//!    no breakpoint set. Targets: < 1 % of a core, < 64 MiB.
//! 2. Latency: with the fixture serving (level1 every 20 ms) and a breakpoint on `level3`
//!    set through the gRPC API, the time from each hit (the snapshot's wall-clock time) to
//!    its arrival on a `WatchSnapshots` stream: p50, p90, p99 and max. Target: p99 < 50 ms.
//!    The agent's CPU and RSS while the breakpoint is hot are printed too.

mod standalone;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use standalone::{percentile, Agent};
use tracery_proto::v1::{
    breakpoint_spec::Target, BreakpointSpec, SnapshotFilter, WatchSnapshotsRequest,
};
use tracery_tests::{fixture, FixtureProcess};

const VARIANT: &str = "c-O0";
const SETTLE: Duration = Duration::from_secs(3);
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// Enough for a p99 to mean something; the fixture hits level3 50 times a second.
const MIN_SAMPLES: usize = 200;
const LATENCY_WINDOW: Duration = Duration::from_secs(30);
const HIT_LIMIT: u32 = 500;
const RATE_PER_SECOND: u32 = 100;

const TARGET_P99_MS: f64 = 50.0;
const TARGET_IDLE_CPU_PCT: f64 = 1.0;
const TARGET_RSS_MIB: f64 = 64.0;

#[tokio::main]
async fn main() {
    if !tracery_tests::is_root() {
        eprintln!("the control-plane benchmark attaches uprobes: run `cargo xtask bench` as root");
        std::process::exit(1);
    }
    // `cargo bench` passes `--bench`; nothing to parse.
    let dir = tempfile::tempdir().expect("temporary directory");
    // A private copy, so the service matches only the process this bench starts.
    let exe = dir.path().join("svc-orders");
    std::fs::copy(fixture(VARIANT), &exe).expect("copy the fixture");
    let agent = Agent::start(dir.path(), &[("svc", &exe)], &[]);
    let mut client = agent.connect().await;

    println!(
        "== standalone agent, idle (no breakpoints; {}s settle, {}s window)",
        SETTLE.as_secs(),
        IDLE_WINDOW.as_secs()
    );
    tokio::time::sleep(SETTLE).await;
    let idle = usage_over(agent.pid(), IDLE_WINDOW).await;
    println!(
        "idle CPU {:.2} % of a core over {} s, RSS {:.1} MiB  (targets: < {TARGET_IDLE_CPU_PCT} % of a core, < {TARGET_RSS_MIB} MiB)",
        idle.cpu_pct,
        IDLE_WINDOW.as_secs(),
        idle.rss_mib
    );
    println!();

    println!(
        "== hit to `snapshot watch` latency (C fixture {VARIANT} serve, breakpoint on level3, {HIT_LIMIT} hits at {RATE_PER_SECOND}/s)"
    );
    let process = FixtureProcess::spawn_path(&exe, &["serve"]);
    let mut watch = client
        .watch_snapshots(WatchSnapshotsRequest {
            filter: Some(SnapshotFilter {
                breakpoint_id: None,
            }),
        })
        .await
        .expect("WatchSnapshots")
        .into_inner();
    let cpu_before = cpu_ticks(agent.pid());
    let started = Instant::now();
    let bp = client
        .set_breakpoint(BreakpointSpec {
            target: Some(Target::Service("svc".into())),
            location: "level3".into(),
            when: None,
            hit_limit: Some(HIT_LIMIT),
            expire_seconds: None,
            rate_per_second: Some(RATE_PER_SECOND),
            ..Default::default()
        })
        .await
        .expect("SetBreakpoint")
        .into_inner()
        .breakpoint
        .expect("SetBreakpoint returns the breakpoint");
    let mut latencies_ms = Vec::new();
    let deadline = started + LATENCY_WINDOW;
    while latencies_ms.len() < MIN_SAMPLES {
        let left = deadline.saturating_duration_since(Instant::now());
        let snap = match tokio::time::timeout(left, watch.message()).await {
            Ok(Ok(Some(s))) => s,
            Ok(Ok(None)) => panic!("the controller closed the watch stream"),
            Ok(Err(e)) => panic!("watch stream failed: {e}"),
            Err(_) => break,
        };
        let received = SystemTime::now();
        if snap.breakpoint_id != bp.id {
            continue;
        }
        let Some(t) = snap.time else {
            panic!("snapshot {} has no time", snap.id)
        };
        let hit = UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32);
        // Signed: a clock conversion error in the agent would show as negative latency.
        let ms = match received.duration_since(hit) {
            Ok(d) => d.as_secs_f64() * 1e3,
            Err(e) => -e.duration().as_secs_f64() * 1e3,
        };
        latencies_ms.push(ms);
    }
    let hot_wall = started.elapsed();
    let hot_cpu = cpu_ticks(agent.pid()) - cpu_before;
    let hot_rss = rss_mib(agent.pid());
    drop(process);
    if latencies_ms.is_empty() {
        panic!(
            "no snapshot of breakpoint {} within {} s",
            bp.id,
            LATENCY_WINDOW.as_secs()
        );
    }
    latencies_ms.sort_by(f64::total_cmp);
    let p = |q: f64| percentile(&latencies_ms, q);
    println!(
        "{} samples over {:.1} s: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms  (target: p99 < {TARGET_P99_MS} ms)",
        latencies_ms.len(),
        hot_wall.as_secs_f64(),
        p(0.50),
        p(0.90),
        p(0.99),
        latencies_ms[latencies_ms.len() - 1],
    );
    if latencies_ms.len() < MIN_SAMPLES {
        println!(
            "(fewer than {MIN_SAMPLES} samples within {} s)",
            LATENCY_WINDOW.as_secs()
        );
    }
    println!(
        "breakpoint hot: agent CPU {:.2} % of a core over {:.1} s, RSS {:.1} MiB",
        cpu_pct(hot_cpu, hot_wall),
        hot_wall.as_secs_f64(),
        hot_rss
    );
    // Tidy only: the agent is killed next.
    let _ = client
        .delete_breakpoint(tracery_proto::v1::DeleteBreakpointRequest { id: bp.id })
        .await;
}

fn cpu_pct(ticks: u64, wall: Duration) -> f64 {
    100.0 * ticks as f64 / tracery_tests::clock_ticks() as f64 / wall.as_secs_f64()
}

struct Usage {
    cpu_pct: f64,
    rss_mib: f64,
}

/// utime + stime of every thread, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid))
        .expect("agent /proc/PID/stat (did the agent exit?)");
    // The command name may hold spaces; fields after it start at `state` (field 3).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

fn rss_mib(pid: u32) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", pid)).expect("agent /proc/PID/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib / 1024.0
}

async fn usage_over(pid: u32, window: Duration) -> Usage {
    let before = cpu_ticks(pid);
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let ticks = cpu_ticks(pid) - before;
    Usage {
        cpu_pct: cpu_pct(ticks, start.elapsed()),
        rss_mib: rss_mib(pid),
    }
}
