//! `cargo xtask bench`: speed and memory figures, as root (see the bench sources for what
//! each measures). Benchmarks build in release mode: debug figures would mislead.

use std::{path::Path, process::Command};

use anyhow::{bail, Result};

use crate::{host, setup};

/// Runs the capture benchmark.
pub fn run(workspace: &Path) -> Result<()> {
    if !host::is_root() {
        bail!("the benchmarks attach uprobes and need root; run `cargo xtask bench` as root");
    }
    setup::run(setup::Mode::Install { quiet: true })?;
    crate::run_checked(Command::new(crate::cargo()).current_dir(workspace).args([
        "bench",
        "-p",
        "tracery-agent",
        "--bench",
        "capture",
    ]))
}
