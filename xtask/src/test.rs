//! `cargo xtask test`: the whole suite, as CI runs it.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::{host, services, setup};

const PACKAGE_FLAGS: &[&str] = &["-p", "--package", "--manifest-path"];

/// Whether `arg` is one of `flags`, alone or as `--flag=value`.
fn selects(arg: &str, flags: &[&str]) -> bool {
    flags.iter().any(|f| {
        arg == *f
            || arg
                .strip_prefix(f)
                .is_some_and(|rest| rest.starts_with('='))
    })
}

/// Runs set-up (silent when nothing is missing), the test servers, then `cargo test` over
/// the whole workspace with `extra` appended, and exits with the tests' status.
pub fn run(workspace: &Path, extra: &[String]) -> Result<()> {
    if !host::is_root() {
        bail!(
            "the tests attach eBPF probes to live processes and need root; \
             run `sudo env \"PATH=$PATH\" cargo xtask test`"
        );
    }
    setup::run(setup::Mode::Install { quiet: true })?;
    services::ensure_running()?;
    let mut cmd = Command::new(crate::cargo());
    cmd.current_dir(workspace).arg("test");
    // The defaults widen the run; an explicit choice of packages or targets narrows it.
    // Only cargo's own arguments count: those after a second `--` go to the test binaries.
    let cargo_args: Vec<&String> = extra.iter().take_while(|a| *a != "--").collect();
    if !cargo_args.iter().any(|a| selects(a, PACKAGE_FLAGS)) {
        cmd.arg("--workspace");
    }
    // cargo's default targets (libs, bins, tests, examples, doc tests) and not
    // `--all-targets`: that adds the benchmarks, which are minutes long and belong to
    // `cargo xtask bench` (`test = false` does not keep `--benches` from selecting them).
    let status = cmd.args(extra).status().context("cannot run cargo test")?;
    if !status.success() || !extra.is_empty() {
        std::process::exit(status.code().unwrap_or(1));
    }
    // The control-plane tests again, with every standalone Tracery storing in the real
    // PostgreSQL instead of SQLite: the store must not change what users see.
    println!("\n== control-plane and capture tests again, on the PostgreSQL store");
    let status = Command::new(crate::cargo())
        .current_dir(workspace)
        .args([
            "test",
            "-p",
            "tracery-ctl",
            "--test",
            "control_plane",
            "--test",
            "db_capture",
        ])
        .env("TRACERY_TEST_STORE", "postgres")
        .status()
        .context("cannot run cargo test")?;
    std::process::exit(status.code().unwrap_or(1));
}
