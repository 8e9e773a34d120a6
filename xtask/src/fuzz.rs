//! `cargo xtask fuzz`: the coverage-guided fuzz targets of crates/tracery-fuzz under
//! libFuzzer, on stable Rust.
//!
//! cargo-fuzz wants nightly; libFuzzer itself does not. `libfuzzer-sys` builds it (C++,
//! with the machine's g++), and rustc's stable `-Cpasses=sancov-module` flags give the
//! same edge, value-profile and comparison coverage that cargo-fuzz turns on. The targets
//! build in their own target dir, for the host triple given explicitly: with `--target`,
//! RUSTFLAGS reach only the fuzzed code, not build scripts, and the ordinary builds in
//! the shared target dir are not rebuilt.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// Every target of crates/tracery-fuzz (`TARGETS` there), in run order.
pub const TARGETS: &[&str] = &["dwarf", "condition", "trace-header", "wire", "proto"];

/// Seconds per target of the run that `cargo xtask test` makes: enough for libFuzzer to
/// replay the corpus and mutate a while, 40 s for all five.
pub const TEST_SECONDS: u64 = 8;

/// Per-input time bound: a single input slower than this is a hang, saved as a crash. The
/// largest inputs (ELF files of tens of KiB) take milliseconds.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// Resident memory at which libFuzzer stops a target and saves the input (an unbounded
/// allocation); single allocations are bounded far lower inside the targets.
const RSS_LIMIT_MB: u64 = 2048;

/// The coverage instrumentation, as cargo-fuzz sets it, with debug assertions and
/// overflow checks on (a wrapped length is a bug worth a crash).
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    -Cdebug-assertions -Coverflow-checks";

/// How a fuzz run is laid out.
pub struct Options {
    /// Wall-clock budget of the whole run, split evenly over the targets.
    pub total: Duration,
    /// Targets run at once.
    pub jobs: usize,
    /// Target names; empty for all.
    pub targets: Vec<String>,
}

/// Where corpora, crashes, logs and the instrumented build live: `TRACERY_FUZZ_DIR`, else
/// /var/cache/tracery/fuzz (kept across runs, never committed).
fn fuzz_dir() -> PathBuf {
    std::env::var_os("TRACERY_FUZZ_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/tracery/fuzz"), PathBuf::from)
}

/// What one target did.
struct Report {
    name: String,
    seconds: f64,
    execs: u64,
    corpus: usize,
    crashes: Vec<PathBuf>,
    log: PathBuf,
}

/// Builds the targets, seeds their corpora and runs them; fails if any crashed.
pub fn run(workspace: &Path, opts: &Options) -> Result<()> {
    let names: Vec<&str> = if opts.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in &opts.targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!(
                    "no fuzz target `{t}`; the targets are {}",
                    TARGETS.join(", ")
                );
            }
        }
        opts.targets.iter().map(String::as_str).collect()
    };
    let jobs = opts.jobs.clamp(1, names.len());
    let rounds = names.len().div_ceil(jobs) as u32;
    let each = (opts.total / rounds).max(Duration::from_secs(1));
    let dir = fuzz_dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    seed(workspace, &dir, &names)?;
    let bin_dir = build(workspace, &dir, &names)?;

    println!(
        "== fuzzing {} for {} s each, {jobs} at a time (corpora and crashes under {})",
        names.join(", "),
        each.as_secs(),
        dir.display()
    );
    let mut reports = Vec::new();
    for group in names.chunks(jobs) {
        let running: Vec<_> = group
            .iter()
            .map(|name| start(&bin_dir, &dir, name, each))
            .collect::<Result<_>>()?;
        for r in running {
            let report = r.finish()?;
            print_report(&report);
            reports.push(report);
        }
    }
    let crashed: Vec<&Report> = reports.iter().filter(|r| !r.crashes.is_empty()).collect();
    if !crashed.is_empty() {
        for r in &crashed {
            for c in &r.crashes {
                println!(
                    "   replay: {} {}",
                    bin_dir.join(format!("fuzz-{}", r.name)).display(),
                    c.display()
                );
            }
        }
        bail!(
            "fuzzing found crashes in {}; each input above reproduces one (its log: {})",
            crashed
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            crashed[0].log.display()
        );
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!(
        "{:<13} {:>5.0} s  {:>10} execs  {:>8.0} execs/s  corpus {:>5}  crashes {}",
        r.name,
        r.seconds,
        r.execs,
        r.execs as f64 / r.seconds.max(0.001),
        r.corpus,
        r.crashes.len()
    );
    for c in &r.crashes {
        println!("   crash: {}", c.display());
    }
}

/// Writes the seeds into each corpus, with the ordinary (uninstrumented) build: the
/// DWARF seeds are binaries compiled now by gcc, so nothing built is committed.
fn seed(workspace: &Path, dir: &Path, names: &[&str]) -> Result<()> {
    crate::run_checked(
        Command::new(crate::cargo())
            .current_dir(workspace)
            .args([
                "run",
                "--quiet",
                "-p",
                "tracery-fuzz",
                "--bin",
                "tracery-fuzz-seeds",
                "--",
            ])
            .arg(dir.join("corpus"))
            .args(names),
    )
}

/// Builds `fuzz-NAME` for each target with coverage; returns the directory holding them.
fn build(workspace: &Path, dir: &Path, names: &[&str]) -> Result<PathBuf> {
    let host = host_triple()?;
    let target_dir = dir.join("target");
    let mut cmd = Command::new(crate::cargo());
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", &host])
        .args(["-p", "tracery-fuzz", "--features", "libfuzzer"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    for n in names {
        cmd.args(["--bin", &format!("fuzz-{n}")]);
    }
    crate::run_checked(&mut cmd)?;
    Ok(target_dir.join(host).join("release"))
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV printed no host triple")
}

/// A target running under libFuzzer.
struct Running {
    name: String,
    child: std::process::Child,
    started: Instant,
    log: PathBuf,
    corpus: PathBuf,
    crash_dir: PathBuf,
    crashes_before: BTreeSet<PathBuf>,
}

fn start(bin_dir: &Path, dir: &Path, name: &str, time: Duration) -> Result<Running> {
    let corpus = dir.join("corpus").join(name);
    let crash_dir = dir.join("crashes").join(name);
    let logs = dir.join("logs");
    for d in [&corpus, &crash_dir, &logs] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let log = logs.join(format!("{name}.log"));
    let log_file =
        fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let bin = bin_dir.join(format!("fuzz-{name}"));
    let child = Command::new(&bin)
        .arg(&corpus)
        .arg(format!("-max_total_time={}", time.as_secs()))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-artifact_prefix={}/", crash_dir.display()))
        .arg("-print_final_stats=1")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    Ok(Running {
        name: name.to_string(),
        child,
        started: Instant::now(),
        log,
        crashes_before: files(&crash_dir),
        corpus,
        crash_dir,
    })
}

impl Running {
    fn finish(mut self) -> Result<Report> {
        let status = self.child.wait().context("cannot wait for a fuzz target")?;
        let seconds = self.started.elapsed().as_secs_f64();
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let execs = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let crashes: Vec<PathBuf> = files(&self.crash_dir)
            .difference(&self.crashes_before)
            .cloned()
            .collect();
        if !status.success() && crashes.is_empty() {
            bail!(
                "fuzz target {} failed ({status}) without saving an input; see {}",
                self.name,
                self.log.display()
            );
        }
        Ok(Report {
            name: self.name,
            seconds,
            execs,
            corpus: files(&self.corpus).len(),
            crashes,
            log: self.log,
        })
    }
}

fn files(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}
