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
    capture::probes::exe_attach_path, ArmOptions, AttachTarget, ProbeTable, ProgramKind, Session,
};
use tracery_common::ProbeConfig;
use tracery_dwarf::CaptureLimits;
use tracery_tests::FixtureProcess;

mod drained;
use drained::Drained;

const CALLS: &str = "300000";
/// Rounds of (no probe, empty uprobe, capture, capture without stack), interleaved.
const RUNS: usize = 9;

fn main() {
    if !tracery_tests::is_root() {
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
    println!(
        "  without stack  {:>8.1} ns/call  (+{:.1} ns per hit)",
        cost.capture_no_stack,
        cost.capture_no_stack - cost.bare
    );
    println!(
        "false in-kernel condition {:>6.1} ns/call  (+{:.1} ns per hit)",
        cost.false_condition,
        cost.false_condition - cost.bare
    );
    println!(
        "capture / empty uprobe cost ratio: {:.2} (median of {RUNS} paired rounds; target <= 1.5)",
        cost.paired_ratio
    );
    println!(
        "false condition / empty uprobe cost ratio: {:.2} (about 1 expected)",
        cost.false_condition_ratio
    );
    println!();
    println!("== sustained hit rate through the full pipeline (C fixture hot loop, tick)");
    if std::env::var_os("TRACERY_BENCH_COST_ONLY").is_none() {
        sustained_rate(variant);
    }
}

struct Cost {
    /// Median over rounds of (capture - bare) / (empty - bare), each round's runs taken
    /// back to back: robust to the drift these VMs show between rounds.
    paired_ratio: f64,
    bare: f64,
    empty: f64,
    capture: f64,
    /// The same capture without the stack copy, to show what the copy costs.
    capture_no_stack: f64,
    /// The capture behind an in-kernel condition that is always false (`a < 0`).
    false_condition: f64,
    /// Median over rounds of (false condition - bare) / (empty - bare).
    false_condition_ratio: f64,
    vars: usize,
}

/// Runs `bench CALLS` once and returns its ns per call.
fn timed_run(variant: &str, setup: impl FnOnce(u32) -> Box<dyn std::any::Any>) -> f64 {
    let mut p = FixtureProcess::spawn(variant, &["bench", CALLS]);
    let guard = setup(p.pid());
    p.send_line("go");
    // `wait_for_line` returns the text after the prefix.
    let value = p.wait_for_line("ns_per_call ", Duration::from_secs(120));
    drop(guard);
    value.trim().parse().expect("ns_per_call number")
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
    let mut capture_no_stack = Vec::new();
    let mut false_condition = Vec::new();
    let mut vars = 0;
    // Interleave the runs so drift on a noisy VM hits all of them alike.
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
                        pid: Some(pid),
                    },
                    &ProbeConfig::EMPTY,
                )
                .expect("attach empty uprobe");
            Box::new(table)
        }));
        capture.push(timed_run(variant, |pid| {
            let (drainer, n) = arm_bench8(pid, limits, None);
            vars = n;
            Box::new(drainer)
        }));
        capture_no_stack.push(timed_run(variant, |pid| {
            let no_stack = CaptureLimits {
                stack_bytes: 0,
                ..limits
            };
            Box::new(arm_bench8(pid, no_stack, None).0)
        }));
        false_condition.push(timed_run(variant, |pid| {
            Box::new(arm_bench8(pid, limits, Some("a < 0")).0)
        }));
    }
    let ratios = (0..RUNS)
        .map(|i| (capture[i] - bare[i]) / (empty[i] - bare[i]))
        .collect();
    let false_ratios = (0..RUNS)
        .map(|i| (false_condition[i] - bare[i]) / (empty[i] - bare[i]))
        .collect();
    Cost {
        paired_ratio: median(ratios),
        bare: median(bare),
        empty: median(empty),
        capture: median(capture),
        capture_no_stack: median(capture_no_stack),
        false_condition: median(false_condition),
        false_condition_ratio: median(false_ratios),
        vars,
    }
}

/// Arms the 8-variable capture at `bench8` in `pid`, its ring kept drained; returns once
/// armed, with the number of variables in the plan.
fn arm_bench8(pid: u32, limits: CaptureLimits, when: Option<&'static str>) -> (Drained, usize) {
    Drained::arm(move || {
        let mut bp = tracery_agent::prepare(pid, "bench8", &limits).expect("resolve bench8");
        if let Some(w) = when {
            let expr = tracery_dwarf::condition::parse(w).expect("condition");
            for (_, plan) in &mut bp.sites {
                let split = tracery_dwarf::condition::compile(&expr, plan).expect("compile");
                assert!(
                    split.rest.is_none(),
                    "{w} must be checked in the kernel alone"
                );
                split.apply(&mut plan.config);
            }
        }
        let vars = bp.sites[0].1.variables().count();
        (bp, vars)
    })
}

fn sustained_rate(variant: &str) {
    let limits = CaptureLimits::default();
    // One hot loop cannot outrun the pipeline, so later steps probe several processes.
    let procs: Vec<FixtureProcess> = (0..3)
        .map(|_| FixtureProcess::spawn(variant, &["hot"]))
        .collect();
    let bps: Vec<_> = procs
        .iter()
        .map(|p| tracery_agent::prepare(p.pid(), "tick", &limits).expect("resolve tick"))
        .collect();
    let mut last_clean = None;
    println!(
        "{:>16} {:>10} {:>10} {:>10} {:>8}",
        "limit/s x procs", "fired/s", "emitted/s", "decoded", "dropped"
    );
    let steps = [
        (1_000u32, 1usize),
        (5_000, 1),
        (20_000, 1),
        (0, 1),
        (0, 2),
        (0, 3),
    ];
    for (limit, nprocs) in steps {
        let mut session = Session::start().expect("load eBPF");
        let opts = ArmOptions {
            rate_per_sec: limit,
            ..ArmOptions::default()
        };
        let slots: Vec<_> = bps[..nprocs]
            .iter()
            .flat_map(|bp| session.arm(bp, &opts).expect("attach capture"))
            .collect();
        let window = Duration::from_secs(2);
        let start = Instant::now();
        let mut decoded = 0u64;
        while start.elapsed() < window {
            decoded += session.poll(Duration::from_millis(20)).expect("poll").len() as u64;
        }
        let elapsed = start.elapsed().as_secs_f64();
        // Stop the probes, then drain: every record the kernel emitted must be decoded.
        for slot in &slots {
            session.disarm(*slot).expect("detach");
        }
        // A disarmed slot's counters stay readable until the slot is reused.
        let (mut fired, mut emitted, mut dropped) = (0, 0, 0);
        for slot in &slots {
            let st = session.counters(*slot).expect("counters");
            fired += st.fired;
            emitted += st.emitted;
            dropped += st.dropped;
        }
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
        assert_eq!(decoded, emitted, "every emitted record is decoded");
        let limit_label = if limit == 0 {
            "none".to_string()
        } else {
            limit.to_string()
        };
        let label = format!("{limit_label} x {nprocs}");
        let rate = emitted as f64 / elapsed;
        println!(
            "{label:>16} {:>10.0} {rate:>10.0} {decoded:>10} {dropped:>8}",
            fired as f64 / elapsed,
        );
        let _ = std::io::stdout().flush();
        if dropped == 0 {
            last_clean = Some((label, rate));
        } else {
            match &last_clean {
                Some((l, r)) => println!(
                    "sustained with zero drops: {r:.0} hits/s ({l}); at the next step ({label}): {dropped} dropped ({:.2}% of hits)",
                    100.0 * dropped as f64 / (emitted + dropped) as f64
                ),
                None => println!("drops at every step; the first step dropped {dropped}"),
            }
            return;
        }
    }
    if let Some((l, r)) = last_clean {
        println!("sustained with zero drops: {r:.0} hits/s ({l}); no drops at any step");
    }
}
