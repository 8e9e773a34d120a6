//! `cargo xtask demo`: the main job, end to end on this machine. Builds Tracery and the
//! demo services, starts PostgreSQL (open over TCP to the demo's nodes), then runs
//! `tracery-demo`: two nodes (network namespace + cgroup each) with the services and an
//! agent per node, a breakpoint by service name and source line and its snapshot, then a
//! frozen request: where it is held, its snapshot, and its resume.

use std::{path::Path, process::Command};

use anyhow::{bail, Result};

use crate::{host, services, setup};

/// Runs the demo.
pub fn run(workspace: &Path) -> Result<()> {
    if !host::is_root() {
        bail!("the demo attaches uprobes to live processes and needs root; run `cargo xtask demo` as root");
    }
    setup::run(setup::Mode::Install { quiet: true })?;
    services::ensure_running()?;
    println!("building Tracery and the demo services...");
    crate::run_checked(Command::new(crate::cargo()).current_dir(workspace).args([
        "build",
        "--quiet",
        "-p",
        "tracery-ctl",
        "-p",
        "tracery-agent",
        "-p",
        "tracery-demo-orders",
        "-p",
        "tracery-tests",
        "--bins",
    ]))?;
    let bin_dir = host::target_dir(workspace).join("debug");
    crate::run_checked(
        Command::new(bin_dir.join("tracery-demo"))
            .arg("--bin-dir")
            .arg(&bin_dir)
            .args(["--database", services::PG_DEMO_NODE_URL])
            .args(["--check-database", services::PG_DEMO_TCP_URL]),
    )
}
