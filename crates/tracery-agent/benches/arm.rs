//! Arming benchmark (`cargo xtask bench arm`, as root): what arming one executable in
//! several processes costs the agent, in time and memory.
//!
//! Starts three `demo-orders` processes (one executable; PostgreSQL behind them), loads the
//! agent's eBPF programs, then arms the demo's probe line (`pricing.rs:LINE` of
//! `@probe:demo_priced`) in each process, one after the other: the breakpoint is prepared
//! (executable loaded, location resolved, plans compiled) and each site's capture uprobe
//! attached. Prints the time to arm the 1st, 2nd and 3rd process and the agent's RSS (anon
//! and file-backed, from `/proc/self/status`) before arming, after the 1st and after the
//! 3rd. Targets: arming the 2nd process costs < 5 % of the 1st; RSS with demo-orders armed
//! < 150 MiB. Needs TRACERY_DEMO_ORDERS (set by `cargo xtask bench arm`).
//!
//! The uprobes are attached through the probe table, without the trace tracking that
//! `Session::arm` adds: what is measured is the DWARF work and the attach.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use tracery_agent::{capture::probes::exe_attach_path, AttachTarget, ProgramKind, Session};
use tracery_dwarf::CaptureLimits;
use tracery_tests::{held::PG_TCP, FixtureProcess};

const PROCESSES: usize = 3;
const TARGET_SECOND_PCT: f64 = 5.0;
const TARGET_RSS_MIB: f64 = 150.0;

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the arming benchmark attaches uprobes: run `cargo xtask bench arm` as root");
        std::process::exit(1);
    }
    let orders = PathBuf::from(
        std::env::var("TRACERY_DEMO_ORDERS")
            .expect("TRACERY_DEMO_ORDERS: run `cargo xtask bench arm`"),
    );
    let (file, line) = tracery_tests::marker_line("demo_priced");
    // As a user types it: demo-orders may have been built in another checkout.
    let location = format!("{}:{line}", file.file_name().unwrap().to_string_lossy());
    let services: Vec<(FixtureProcess, String)> = (0..PROCESSES)
        .map(|_| {
            FixtureProcess::spawn_service(
                &orders,
                &[
                    "--listen",
                    "127.0.0.1:0",
                    "--database",
                    PG_TCP,
                    // Never called: the bench sends no request.
                    "--payments",
                    "http://127.0.0.1:9",
                ],
            )
        })
        .collect();
    let size = std::fs::metadata(&orders).map_or(0, |m| m.len());
    println!(
        "== arming {} ({:.0} MiB) at {}:{line} in {PROCESSES} processes, one breakpoint each",
        orders.display(),
        size as f64 / (1 << 20) as f64,
        file.file_name().unwrap_or_default().to_string_lossy(),
    );

    let mut session = Session::start().expect("loading eBPF (root?)");
    let limits = CaptureLimits::default();
    let before = Rss::now();
    println!("agent RSS, eBPF loaded, nothing armed: {before}");
    let mut times = Vec::new();
    let mut rss_after = Vec::new();
    let mut slots = Vec::new();
    // Kept, as the agent keeps what it armed with (its executable, for decoding hits).
    let mut prepared = Vec::new();
    for (process, _) in &services {
        let pid = process.pid();
        let started = Instant::now();
        let bp = session.prepare(pid, &location, &limits).expect("preparing");
        for (site, plan) in &bp.sites {
            let target = AttachTarget {
                path: exe_attach_path(pid),
                offset: site.file_offset.0,
                pid: Some(pid),
            };
            let slot = session
                .table()
                .arm(ProgramKind::Capture, target, &plan.relocate(bp.bias))
                .expect("attaching");
            slots.push(slot);
        }
        times.push(started.elapsed());
        rss_after.push(Rss::now());
        prepared.push(bp);
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let first = ms(&times[0]);
    for (i, t) in times.iter().enumerate() {
        let pct = ms(t) / first * 100.0;
        let note = match i {
            0 => String::new(),
            1 => format!("  ({pct:.2} % of the 1st; target < {TARGET_SECOND_PCT} %)"),
            _ => format!("  ({pct:.2} % of the 1st)"),
        };
        println!("time to arm process {}: {:>9.1} ms{note}", i + 1, ms(t));
    }
    println!("agent RSS after arming 1 process:  {}", rss_after[0]);
    println!(
        "agent RSS after arming {PROCESSES} processes: {}  (target < {TARGET_RSS_MIB} MiB)",
        rss_after[PROCESSES - 1]
    );

    for slot in slots {
        let _ = session.table().disarm(slot);
    }
    drop(prepared);
}

/// The resident set of this process (the agent runs in it), from `/proc/self/status`.
struct Rss {
    anon_kib: u64,
    file_kib: u64,
    total_kib: u64,
}

impl Rss {
    fn now() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Self {
            anon_kib: field("RssAnon:"),
            file_kib: field("RssFile:"),
            total_kib: field("VmRSS:"),
        }
    }
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |k: u64| k as f64 / 1024.0;
        write!(
            f,
            "{:.1} MiB (anon {:.1}, file {:.1})",
            mib(self.total_kib),
            mib(self.anon_kib),
            mib(self.file_kib)
        )
    }
}
