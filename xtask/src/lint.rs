//! `cargo xtask lint`: formatting and clippy, as CI reviewers expect them.

use std::{path::Path, process::Command};

use anyhow::Result;

use crate::run_checked;

pub fn run(workspace: &Path) -> Result<()> {
    run_checked(
        Command::new(crate::cargo())
            .current_dir(workspace)
            .args(["fmt", "--all", "--", "--check"]),
    )?;
    run_checked(Command::new(crate::cargo()).current_dir(workspace).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}
