//! `cargo xtask bench`: speed and memory figures, as root (see the bench sources for what
//! each measures). Benchmarks build in release mode: debug figures would mislead.
//!
//! The benches of `tracery-agent`, each printing its own figures:
//! - `capture`: capture cost against a bare uprobe, and the sustained hit rate;
//! - `control_plane`: a standalone agent's idle CPU and RSS, and the latency from a hit to
//!   `snapshot watch` output (p50/p90/p99/max);
//! - `freeze`: latency of requests through the demo's three services with nothing
//!   attached, with a freeze breakpoint armed, and while one request is frozen;
//! - `db_capture`: the time from a hit of a freezing breakpoint with a PostgreSQL and a
//!   Redis capture to its snapshot stored with their rows;
//! - `arm`: time to arm the demo's orders executable in a 1st, 2nd and 3rd process, and the
//!   agent's RSS after each;
//! - `walks`: the per-hit cost of a `HashMap`/`BTreeMap` walk in the kernel at two element
//!   caps, for maps of 1,000 and 100,000 entries;
//! - `ui`: the web view's trace page with 2,000 events, rendered in headless chromium
//!   (an ignored test of tracery-ctl's `web_ui`; the page's work, so a debug build).

use std::{path::Path, process::Command};

use anyhow::{bail, Result};

use crate::{host, services, setup};

/// The benches, run in this order.
const BENCHES: &[&str] = &[
    "capture",
    "control_plane",
    "freeze",
    "db_capture",
    "arm",
    "walks",
    "otlp",
    "node",
    "python",
    "ui",
];

/// Runs the named benchmarks (all when none is named); stops at the first that fails.
pub fn run(workspace: &Path, names: &[String]) -> Result<()> {
    if let Some(bad) = names.iter().find(|n| !BENCHES.contains(&n.as_str())) {
        bail!("no bench {bad:?}; the benches are {}", BENCHES.join(", "));
    }
    if !host::is_root() {
        anyhow::bail!(
            "the benchmarks attach uprobes and need root; run `cargo xtask bench` as root"
        );
    }
    setup::run(setup::Mode::Install { quiet: true })?;
    for &bench in BENCHES {
        if !names.is_empty() && !names.iter().any(|n| n == bench) {
            continue;
        }
        println!("==== bench {bench}");
        if bench == "ui" {
            // Chromium does the work measured: the page is the same in a debug build.
            crate::run_checked(Command::new(crate::cargo()).current_dir(workspace).args([
                "test",
                "-p",
                "tracery-ctl",
                "--test",
                "web_ui",
                "--",
                "--ignored",
                "--exact",
                "bench_trace_page_with_2000_events",
                "--nocapture",
            ]))?;
            println!();
            continue;
        }
        let mut cmd = Command::new(crate::cargo());
        cmd.current_dir(workspace)
            .args(["bench", "-p", "tracery-agent", "--bench", bench]);
        if bench == "freeze" || bench == "db_capture" || bench == "arm" {
            services::ensure_running()?;
            crate::run_checked(Command::new(crate::cargo()).current_dir(workspace).args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "tracery-demo-orders",
                // The agent starts its hold keeper from beside the bench binary's directory.
                "-p",
                "tracery-agent",
                "--bins",
            ]))?;
            let mut orders = host::target_dir(workspace).join("release/demo-orders");
            if bench == "db_capture" {
                // Its captures read `order.customer`, which a release build optimizes away
                // at the breakpoint; the figure is the controller's, not the service's.
                crate::run_checked(Command::new(crate::cargo()).current_dir(workspace).args([
                    "build",
                    "--quiet",
                    "-p",
                    "tracery-demo-orders",
                ]))?;
                orders = host::target_dir(workspace).join("debug/demo-orders");
            }
            cmd.env("TRACERY_DEMO_ORDERS", orders);
        }
        crate::run_checked(&mut cmd)?;
        println!();
    }
    Ok(())
}
