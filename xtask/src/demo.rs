//! `cargo xtask demo`: the main job, end to end on this machine. Builds Tracery and a
//! sample service, starts the service, sets a breakpoint on one of its source lines and
//! prints the snapshot.

use std::{path::Path, process::Command};

use anyhow::{bail, Result};

use crate::{host, setup};

/// Runs the demo.
pub fn run(workspace: &Path) -> Result<()> {
    if !host::is_root() {
        bail!("the demo attaches a uprobe to a live process and needs root; run `cargo xtask demo` as root");
    }
    setup::run(setup::Mode::Install { quiet: true })?;
    println!("building tracery-ctl and the demo service...");
    crate::run_checked(Command::new(crate::cargo()).current_dir(workspace).args([
        "build",
        "--quiet",
        "-p",
        "tracery-ctl",
        "-p",
        "tracery-tests",
        "--bins",
    ]))?;
    let bin_dir = host::target_dir(workspace).join("debug");
    crate::run_checked(
        Command::new(bin_dir.join("tracery-demo"))
            .arg("--ctl")
            .arg(bin_dir.join("tracery-ctl")),
    )
}
