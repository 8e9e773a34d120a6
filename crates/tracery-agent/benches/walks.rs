//! Per-hit cost of collection walks in the kernel (run by `cargo xtask bench walks`, as
//! root).
//!
//! A Rust program (`programs/bigmaps.rs`, built here with `rustc -O -g`) calls a function
//! taking a `HashMap<u64, u64>` or a `BTreeMap<u64, u64>` in a timed loop. Each round times
//! it with no probe, with an empty uprobe, and with the capture at the element caps
//! [`CAPS`], for maps of 1,000 and 100,000 entries. The figure is the capture's cost per hit
//! over the empty uprobe's (these VMs trap slowly), taken per round and its median kept: it
//! must follow the cap, not the map's size.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tracery_agent::{capture::probes::exe_attach_path, AttachTarget, ProbeTable, ProgramKind};
use tracery_common::ProbeConfig;
use tracery_dwarf::CaptureLimits;
use tracery_tests::FixtureProcess;

mod drained;
use drained::Drained;

const CALLS: &str = "200000";
/// Interleaved rounds per case.
const ROUNDS: usize = 5;
/// The element caps compared (`CaptureLimits::max_elements`; 64 is the default).
const CAPS: [u16; 2] = [8, 64];
const SIZES: [u64; 2] = [1_000, 100_000];

fn main() {
    if !tracery_tests::is_root() {
        eprintln!("the walks benchmark attaches uprobes: run `cargo xtask bench` as root");
        std::process::exit(1);
    }
    let program = build();
    println!(
        "== per-hit cost of map walks in the kernel (Rust -O, {CALLS} calls x {ROUNDS} rounds; \
         ratio = (capture - no probe) / (empty uprobe - no probe), median of paired rounds)"
    );
    println!(
        "{:<6} {:>8} {:>4} {:>5} {:>10} {:>12} {:>12} {:>7}",
        "map", "entries", "cap", "ops", "data B", "empty ns/hit", "capture ns", "ratio"
    );
    for kind in ["hash", "btree"] {
        for entries in SIZES {
            for cap in CAPS {
                let c = measure(&program, kind, entries, cap);
                println!(
                    "{kind:<6} {entries:>8} {cap:>4} {:>5} {:>10} {:>12.1} {:>12.1} {:>7.2}",
                    c.ops, c.data, c.empty, c.capture, c.ratio
                );
            }
        }
    }
    println!(
        "a walk's cost follows its cap, not the map's size: compare 1,000 and 100,000 entries \
         at one cap"
    );
}

/// `programs/bigmaps.rs`, built optimized with debug info.
fn build() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/programs/bigmaps.rs");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-bigmaps");
    let status = Command::new("rustc")
        .args(["--edition", "2021", "-O", "-g", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run rustc");
    assert!(status.success(), "building {}", src.display());
    out
}

struct Case {
    ops: u8,
    data: u16,
    /// Per hit over no probe, ns (medians).
    empty: f64,
    capture: f64,
    ratio: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the loop once and returns its ns per call.
fn timed(
    program: &Path,
    kind: &str,
    entries: u64,
    setup: impl FnOnce(u32) -> Box<dyn std::any::Any>,
) -> f64 {
    let mut p = FixtureProcess::spawn_path(program, &[kind, &entries.to_string(), CALLS]);
    let guard = setup(p.pid());
    p.send_line("go");
    let value = p.wait_for_line("ns_per_call ", Duration::from_secs(300));
    drop(guard);
    value.trim().parse().expect("ns_per_call number")
}

fn measure(program: &Path, kind: &str, entries: u64, cap: u16) -> Case {
    let function = format!("bigmaps::visit_{kind}");
    let limits = CaptureLimits {
        max_elements: cap,
        ..CaptureLimits::default()
    };
    let (mut bare, mut empty, mut capture) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ops, mut data) = (0, 0);
    for _ in 0..ROUNDS {
        bare.push(timed(program, kind, entries, |_| Box::new(())));
        empty.push(timed(program, kind, entries, |pid| {
            let bp = tracery_agent::prepare(pid, &function, &limits).expect("resolve");
            let mut table = ProbeTable::load().expect("load eBPF");
            table
                .arm(
                    ProgramKind::Empty,
                    AttachTarget {
                        path: exe_attach_path(pid),
                        offset: bp.sites[0].0.file_offset.0,
                        pid: Some(pid),
                    },
                    &ProbeConfig::EMPTY,
                )
                .expect("attach empty uprobe");
            Box::new(table)
        }));
        capture.push(timed(program, kind, entries, |pid| {
            let function = function.clone();
            let (drained, plan) = Drained::arm(move || {
                let bp = tracery_agent::prepare(pid, &function, &limits).expect("resolve");
                let config = &bp.sites[0].1.config;
                let plan = (config.n_ops, config.data_size);
                (bp, plan)
            });
            (ops, data) = plan;
            Box::new(drained)
        }));
    }
    let per_hit = |v: &[f64]| -> Vec<f64> { v.iter().zip(&bare).map(|(x, b)| x - b).collect() };
    let ratios = (0..ROUNDS)
        .map(|i| (capture[i] - bare[i]) / (empty[i] - bare[i]))
        .collect();
    Case {
        ops,
        data,
        empty: median(per_hit(&empty)),
        capture: median(per_hit(&capture)),
        ratio: median(ratios),
    }
}
