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
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    // A short coverage-guided run of every fuzz target: the corpus kept from earlier runs
    // is replayed first, so a regression in a parser shows here.
    println!("\n== fuzz targets, {} s each", crate::fuzz::TEST_SECONDS);
    crate::fuzz::run(
        workspace,
        &crate::fuzz::Options {
            total: std::time::Duration::from_secs(
                crate::fuzz::TEST_SECONDS * crate::fuzz::TARGETS.len() as u64,
            ),
            jobs: 1,
            targets: Vec::new(),
        },
    )?;
    kustomize(workspace)?;
    mongodb(workspace)
}

/// The check of what `kubectl apply -k` renders from deploy/: run when a kubectl with
/// kustomize v4+ is on PATH, else reported as skipped, never as passed.
fn kustomize(workspace: &Path) -> Result<()> {
    let Some(version) = kubectl_minor() else {
        println!(
            "\n== kustomize rendering of deploy/ (base and overlays): SKIPPED, not passed. It \
             needs kubectl 1.21 or later on PATH, which set-up cannot install on Debian 12; \
             every manifest file was still validated on its own."
        );
        return Ok(());
    };
    println!("\n== kustomize rendering of deploy/ with kubectl 1.{version}");
    let status = Command::new(crate::cargo())
        .current_dir(workspace)
        .args([
            "test",
            "-p",
            "tracery-tests",
            "--test",
            "kubernetes_manifests",
            "--",
            "--ignored",
        ])
        .status()
        .context("cannot run cargo test")?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

/// The minor version of the kubectl on PATH, when it is 1.21 or later.
fn kubectl_minor() -> Option<u32> {
    // `--client -o yaml` prints `minor: "32+"` under clientVersion; no JSON parser needed.
    let out = Command::new("kubectl")
        .args(["version", "--client", "-o", "yaml"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let minor = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("minor:"))?
        .trim()
        .trim_matches(|c| c == '"' || c == '\'' || c == '+');
    let minor: u32 = minor.parse().ok()?;
    (minor >= 21).then_some(minor)
}

/// The MongoDB tests that need a server: run when `TRACERY_TEST_MONGODB_URL` names one,
/// else reported as skipped (cargo lists them as ignored), never as passed.
fn mongodb(workspace: &Path) -> Result<()> {
    let Some(url) = std::env::var_os("TRACERY_TEST_MONGODB_URL") else {
        println!(
            "\n== MongoDB tests that need a server: SKIPPED, not passed. No MongoDB server is \
             installable on this machine; set TRACERY_TEST_MONGODB_URL (a replica set, e.g. \
             mongodb://127.0.0.1:27017/tracery_test) to run them."
        );
        return Ok(());
    };
    println!(
        "\n== MongoDB tests against {}",
        redacted(&url.to_string_lossy())
    );
    let status = Command::new(crate::cargo())
        .current_dir(workspace)
        .args([
            "test",
            "-p",
            "tracery-databases",
            "--test",
            "mongodb",
            "--",
            "--include-ignored",
        ])
        .status()
        .context("cannot run cargo test")?;
    std::process::exit(status.code().unwrap_or(1));
}

/// A URL without its password, for the log.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}
