//! Capture benchmark (run by `cargo xtask bench`, as root).
//!
//! 1. Cost per hit: the C fixture's `bench8` (8 parameters) is timed with no probe, with the
//!    empty uprobe and with the capture program and an 8-variable plan, in one run. These VMs
//!    trap slowly, so the figure that matters is the ratio of capture to empty-uprobe cost.
//! 2. Sustained rate: the hot loop is probed with the full pipeline (kernel capture, ring
//!    buffer, decode, unwind, symbolize) at stepped kernel rate limits; the report gives the
//!    highest step with zero drops and the drops at the step above it.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use tracery_agent::{
    probes::exe_attach_path, ArmOptions, AttachTarget, ProbeTable, ProgramKind, Session,
};
use tracery_common::ProbeConfig;
use tracery_dwarf::CaptureLimits;
use tracery_tests::FixtureProcess;

const CALLS: &str = "300000";
const RUNS: usize = 5;

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the capture benchmark attaches uprobes: run `cargo xtask bench` as root");
        std::process::exit(1);
    }
    // `cargo bench` passes `--bench`; nothing to parse.
    let variant = "c-O2";
    println!("== capture cost (C fixture {variant}, bench8 with 8 parameters, {CALLS} calls x {RUNS} runs)");
    let cost = measure_cost(variant);
    println!("no probe        {:>10.1} ns/call", cost.bare);
    println!(
        "empty uprobe    {:>10.1} ns/call  (+{:.1} ns per hit)",
        cost.empty,
        cost.empty - cost.bare
    );
    println!(
        "capture, {} vars {:>8.1} ns/call  (+{:.1} ns per hit)",
        cost.vars,
        cost.capture,
        cost.capture - cost.bare
    );
    let ratio = (cost.capture - cost.bare) / (cost.empty - cost.bare);
    println!("capture / empty uprobe cost ratio: {ratio:.2} (target <= 1.5)");

    println!();
    println!("== sustained hit rate through the full pipeline (C fixture hot loop, tick)");
    sustained_rate(variant);
}

struct Cost {
    bare: f64,
    empty: f64,
    capture: f64,
    vars: usize,
}

/// Runs `bench CALLS` once and returns its ns per call.
fn timed_run(variant: &str, setup: impl FnOnce(u32) -> Box<dyn std::any::Any>) -> f64 {
    let mut p = FixtureProcess::spawn(variant, &["bench", CALLS]);
    let guard = setup(p.pid());
    p.send_line("go");
    let line = p.wait_for_line("ns_per_call ", Duration::from_secs(120));
    drop(guard);
    line["ns_per_call ".len()..]
        .trim()
        .parse()
        .expect("ns_per_call number")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn measure_cost(variant: &str) -> Cost {
    let limits = CaptureLimits::default();
    let mut bare = Vec::new();
    let mut empty = Vec::new();
    let mut capture = Vec::new();
    let mut vars = 0;
    // Interleave the three so drift on a noisy VM hits all of them alike.
    for _ in 0..RUNS {
        bare.push(timed_run(variant, |_| Box::new(())));
        empty.push(timed_run(variant, |pid| {
            let bp = tracery_agent::prepare(pid, "bench8", &limits).expect("resolve bench8");
            let mut table = ProbeTable::load().expect("load eBPF");
            let site = &bp.sites[0].0;
            table
                .arm(
                    ProgramKind::Empty,
                    AttachTarget {
                        path: exe_attach_path(pid),
                        offset: site.file_offset.0,
                        pid,
                    },
                    &ProbeConfig::EMPTY,
                )
                .expect("attach empty uprobe");
            Box::new(table)
        }));
        capture.push(timed_run(variant, |pid| {
            let (drainer, n) = Drainer::start(pid, limits);
            vars = n;
            Box::new(drainer)
        }));
    }
    Cost {
        bare: median(bare),
        empty: median(empty),
        capture: median(capture),
        vars,
    }
}

/// Keeps a session's ring buffer drained until dropped.
struct Drainer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drainer {
    /// Arms the 8-variable capture at `bench8` in `pid` on a thread that drains raw records
    /// (so the ring buffer never fills: a full ring makes hits cheaper and the figure
    /// wrong). Returns once armed, with the number of variables in the plan.
    fn start(pid: u32, limits: CaptureLimits) -> (Self, usize) {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let (armed_tx, armed_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let bp = tracery_agent::prepare(pid, "bench8", &limits).expect("resolve bench8");
            let mut session = Session::start().expect("load eBPF");
            session
                .arm(&bp, &ArmOptions::default())
                .expect("attach capture");
            armed_tx.send(bp.sites[0].1.variables().count()).unwrap();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                session.drain_raw(Duration::from_millis(50)).expect("drain");
            }
        });
        let vars = armed_rx.recv().expect("capture armed");
        (
            Self {
                stop,
                thread: Some(thread),
            },
            vars,
        )
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sustained_rate(variant: &str) {
    let limits = CaptureLimits::default();
    let p = FixtureProcess::spawn(variant, &["hot"]);
    let bp = tracery_agent::prepare(p.pid(), "tick", &limits).expect("resolve tick");
    let mut last_clean = None;
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>12}",
        "limit/s", "fired/s", "decoded/s", "dropped", "kernel drops"
    );
    for limit in [1_000u32, 2_000, 5_000, 10_000, 20_000, 40_000, 0] {
        let mut session = Session::start().expect("load eBPF");
        let slots = session
            .arm(
                &bp,
                &ArmOptions {
                    rate_per_sec: limit,
                    ..ArmOptions::default()
                },
            )
            .expect("attach capture");
        let window = Duration::from_secs(2);
        let start = Instant::now();
        let mut decoded = 0u64;
        while start.elapsed() < window {
            decoded += session.poll(Duration::from_millis(20)).expect("poll").len() as u64;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let state = session.counters(slots[0]).expect("counters");
        // Drain what is left so every emitted record is accounted for.
        loop {
            let n = session
                .poll(Duration::from_millis(100))
                .expect("poll")
                .len() as u64;
            if n == 0 {
                break;
            }
            decoded += n;
        }
        let dropped = session.dropped();
        let label = if limit == 0 {
            "none".to_string()
        } else {
            limit.to_string()
        };
        println!(
            "{label:>10} {:>10.0} {:>10.0} {:>10} {:>12}",
            state.fired as f64 / elapsed,
            decoded as f64 / elapsed,
            dropped,
            state.dropped
        );
        let _ = std::io::stdout().flush();
        if dropped == 0 {
            last_clean = Some((limit, decoded as f64 / elapsed));
        } else {
            match last_clean {
                Some((l, r)) => println!(
                    "sustained with zero drops: {r:.0} hits/s (limit {l}/s); above it ({label}/s): {dropped} dropped"
                ),
                None => println!("drops at every step; first step dropped {dropped}"),
            }
            return;
        }
    }
    if let Some((_, r)) = last_clean {
        println!(
            "sustained with zero drops: {r:.0} hits/s, the most one target thread produces here; no drops at any step"
        );
    }
}
