//! OTLP export cost benchmark (run by `cargo xtask bench otlp`, as root).
//!
//! The control-plane bench's hit → `snapshot watch` latency, measured three ways in one
//! run, each with a fresh `tracery-agent standalone`, in interleaved rounds (the order
//! rotates each round, and samples are pooled per mode), so the VM's drift hits all three:
//!
//! 1. no exporter;
//! 2. `--otlp-endpoint` at a closed port (a collector that is down);
//! 3. `--otlp-endpoint` at a live OTLP receiver (`tracery_tests::otlp_receiver`).
//!
//! Export is asynchronous, so an absent collector must cost capture nothing: the target
//! is a p50 and p90 with the closed port within 10 % of no exporter. The ratios are printed,
//! with what the receiver got and what `status` counted as dropped.

mod standalone;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use standalone::{percentile, Agent};
use tracery_proto::v1::{
    breakpoint_spec::Target, BreakpointSpec, SnapshotFilter, StatusRequest, WatchSnapshotsRequest,
};
use tracery_tests::{fixture, otlp_receiver, FixtureProcess};

const VARIANT: &str = "c-O0";
/// Per mode and round; pooled over the rounds, enough for a p90 to be steady.
const SAMPLES: usize = 150;
/// Rounds of the three modes: each mode runs first, second and third twice, so a drift of
/// the machine over the run (noisy VM neighbours) weighs on every mode alike. Three rounds
/// left the closed/none ratio swinging by ±10 % at p90 between runs.
const ROUNDS: usize = 6;
const WINDOW: Duration = Duration::from_secs(40);
const RATE_PER_SECOND: u32 = 100;
/// The closed port may cost at most this much more than no exporter.
const TARGET_RATIO: f64 = 1.10;

/// Latency percentiles of one mode, in milliseconds.
struct Figures {
    p50: f64,
    p90: f64,
    p99: f64,
    samples: usize,
}

#[tokio::main]
async fn main() {
    if !tracery_tests::is_root() {
        eprintln!("the OTLP benchmark attaches uprobes: run `cargo xtask bench otlp` as root");
        std::process::exit(1);
    }
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        eprintln!(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set: the `no exporter` run would export; unset it"
        );
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let exe = dir.path().join("svc-orders");
    std::fs::copy(fixture(VARIANT), &exe).expect("copy the fixture");

    println!(
        "== hit to `snapshot watch` latency with and without OTLP export (C fixture {VARIANT} \
         serve, breakpoint on level3, {ROUNDS} rounds of {SAMPLES} hits at {RATE_PER_SECOND}/s \
         per mode)"
    );
    let closed_endpoint = otlp_receiver::closed_endpoint();
    let receiver = otlp_receiver::OtlpReceiver::start();
    let live_endpoint = receiver.endpoint();
    let modes: [(&str, Option<&str>); 3] = [
        ("none", None),
        ("closed", Some(&closed_endpoint)),
        ("live", Some(&live_endpoint)),
    ];
    let mut pooled: [Vec<f64>; 3] = Default::default();
    for round in 0..ROUNDS {
        for k in 0..modes.len() {
            let i = (k + round) % modes.len();
            let (mode, endpoint) = modes[i];
            let name = format!("{mode}-{round}");
            pooled[i].extend(measure(dir.path(), &name, &exe, endpoint).await);
        }
    }
    let [none, closed, live] = pooled.map(figures);
    for (mode, f) in ["none", "closed", "live"]
        .iter()
        .zip([&none, &closed, &live])
    {
        println!(
            "{mode:>6} pooled: {} samples: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
            f.samples, f.p50, f.p90, f.p99
        );
    }
    println!(
        "live receiver got {} log record(s) and {} span(s) in {} call(s)",
        receiver.logs().len(),
        receiver.spans().len(),
        receiver.calls()
    );

    for (name, f) in [
        ("exporter at a closed port", &closed),
        ("exporter at a live receiver", &live),
    ] {
        println!(
            "{name} vs none: p50 x{:.3}, p90 x{:.3}, p99 x{:.3}",
            f.p50 / none.p50,
            f.p90 / none.p90,
            f.p99 / none.p99
        );
    }
    let within = closed.p50 <= none.p50 * TARGET_RATIO && closed.p90 <= none.p90 * TARGET_RATIO;
    println!(
        "closed port within {:.0} % of no exporter (p50 and p90): {}",
        (TARGET_RATIO - 1.0) * 100.0,
        if within { "yes" } else { "NO" }
    );
}

/// Sorts the samples and takes their percentiles.
fn figures(mut ms: Vec<f64>) -> Figures {
    ms.sort_by(f64::total_cmp);
    Figures {
        p50: percentile(&ms, 0.50),
        p90: percentile(&ms, 0.90),
        p99: percentile(&ms, 0.99),
        samples: ms.len(),
    }
}

/// Starts a standalone (exporting to `endpoint`, if any), runs the fixture under a
/// breakpoint, prints the round's figures and returns its latencies in milliseconds.
async fn measure(
    root: &std::path::Path,
    mode: &str,
    exe: &std::path::Path,
    endpoint: Option<&str>,
) -> Vec<f64> {
    let dir = root.join(mode);
    std::fs::create_dir_all(&dir).expect("mode directory");
    let extra: Vec<&str> = endpoint
        .map(|e| vec!["--otlp-endpoint", e])
        .unwrap_or_default();
    let agent = Agent::start(&dir, &[("svc", exe)], &extra);
    let mut client = agent.connect().await;
    let process = FixtureProcess::spawn_path(exe, &["serve"]);
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
            target: Some(Target::Service("svc".into())),
            location: "level3".into(),
            hit_limit: Some(SAMPLES as u32 + 50),
            rate_per_second: Some(RATE_PER_SECOND),
            ..Default::default()
        })
        .await
        .expect("SetBreakpoint")
        .into_inner()
        .breakpoint
        .expect("SetBreakpoint returns the breakpoint");
    let started = Instant::now();
    let mut ms = Vec::with_capacity(SAMPLES);
    while ms.len() < SAMPLES {
        let left = (started + WINDOW).saturating_duration_since(Instant::now());
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
        let t = snap.time.expect("snapshot time");
        let hit = UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32);
        ms.push(match received.duration_since(hit) {
            Ok(d) => d.as_secs_f64() * 1e3,
            Err(e) => -e.duration().as_secs_f64() * 1e3,
        });
    }
    drop(process);
    assert!(!ms.is_empty(), "{mode}: no snapshot within {WINDOW:?}");
    let f = figures(ms.clone());
    // Let the last exports finish (or fail) before reading the counters.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = client
        .status(StatusRequest {})
        .await
        .expect("Status")
        .into_inner();
    let export = match status.export {
        None => "export off".to_owned(),
        Some(e) => {
            let dropped: Vec<String> = e
                .dropped
                .iter()
                .map(|d| format!("{} {}", d.count, d.reason))
                .collect();
            format!(
                "exported {} span(s), {} log(s); dropped: {}",
                e.exported_spans,
                e.exported_logs,
                if dropped.is_empty() {
                    "none".to_owned()
                } else {
                    dropped.join(", ")
                }
            )
        }
    };
    println!(
        "{mode:>8}: {} samples: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms  ({export})",
        f.samples, f.p50, f.p90, f.p99
    );
    ms
}
