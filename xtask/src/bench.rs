//! `cargo xtask bench`: speed and memory figures, as root (see the bench sources for what
//! each measures). Benchmarks build in release mode: debug figures would mislead.
//!
//! Two benches of `tracery-agent`, each printing its own figures:
//! - `capture`: capture cost against a bare uprobe, and the sustained hit rate;
//! - `control_plane`: a standalone agent's idle CPU and RSS, and the latency from a hit to
//!   `snapshot watch` output (p50/p90/p99/max).

use std::{path::Path, process::Command};

use anyhow::Result;

use crate::{host, setup};

/// The benches, run in this order.
const BENCHES: [&str; 2] = ["capture", "control_plane"];

/// Runs every benchmark; stops at the first that fails.
pub fn run(workspace: &Path) -> Result<()> {
    if !host::is_root() {
        anyhow::bail!(
            "the benchmarks attach uprobes and need root; run `cargo xtask bench` as root"
        );
    }
    setup::run(setup::Mode::Install { quiet: true })?;
    for bench in BENCHES {
        println!("==== bench {bench}");
        crate::run_checked(Command::new(crate::cargo()).current_dir(workspace).args([
            "bench",
            "-p",
            "tracery-agent",
            "--bench",
            bench,
        ]))?;
        println!();
    }
    Ok(())
}
