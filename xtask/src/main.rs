//! Tracery's build tasks: `cargo xtask <task>`.

mod bench;
mod demo;
mod ebpf;
mod fuzz;
mod host;
mod lint;
mod services;
mod setup;
mod test;

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Tracery build tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (apt packages, bpf-linker, bpffs and
    /// tracefs mounts). Idempotent; needs root on Debian 12.
    Setup {
        /// Only report what is missing; exit 1 if anything is.
        #[arg(long)]
        check: bool,
    },
    /// Build the eBPF object with Debian's rustc and print its path.
    BuildEbpf,
    /// Run set-up if needed, start PostgreSQL and Redis, then run every test (as root).
    /// Arguments after `--` go to `cargo test`, e.g. `-- -p tracery-dwarf -- --nocapture`.
    Test {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Check formatting and run clippy with warnings denied.
    Lint,
    /// The main job: three services on two nodes (network namespaces + cgroups) with an
    /// agent each; a breakpoint on a source line and its snapshot, then a frozen request,
    /// what holds it where, and its resume (as root; runs set-up first).
    Demo,
    /// Speed and memory figures (as root): capture and false-condition cost against a bare
    /// uprobe, sustained hit rate, hit-to-watch latency, idle CPU and RSS of the agent, and
    /// the latency of other requests while one is frozen, the time from a hit to its
    /// database rows stored, the time and memory to arm one executable in several
    /// processes, the per-hit cost of map walks at two caps, OTLP export's cost, Node and
    /// Python breakpoints' cost, and the web view's trace page with 2,000 events in
    /// headless chromium. Name benches to run only those (`capture`, `control_plane`,
    /// `freeze`, `db_capture`, `arm`, `walks`, `otlp`, `node`, `python`, `ui`).
    Bench { names: Vec<String> },
    /// Fuzz the parsers of untrusted input (ELF/DWARF, `--when`, trace headers, held
    /// messages, gRPC messages) with libFuzzer on stable Rust, and print execs/s, corpus size
    /// and crashes per target. Corpora and crashes are kept under /var/cache/tracery/fuzz
    /// (or $TRACERY_FUZZ_DIR); exits 1 if a target crashed.
    Fuzz {
        /// Wall-clock minutes of the whole run, split evenly over the targets.
        #[arg(long, default_value_t = 1.0)]
        minutes: f64,
        /// Targets fuzzed at once (each uses one core).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Targets to run (default all): dwarf, condition, trace-header, wire, proto.
        targets: Vec<String>,
    },
    /// Regenerate deploy/kubernetes/breakpoint-crd.yaml from the Rust type in
    /// crates/tracery-crd (a test fails while the two differ).
    GenCrds,
}

fn main() {
    let cli = Cli::parse();
    // Print the error chain only: a backtrace would bury the one line that says what to do.
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let root = workspace_root();
    match cli.task {
        Task::Setup { check } => {
            let mode = if check {
                setup::Mode::Check
            } else {
                setup::Mode::Install { quiet: false }
            };
            setup::run(mode)
        }
        Task::BuildEbpf => {
            let object = ebpf::build(&root)?;
            println!("{}", object.display());
            Ok(())
        }
        Task::Test { args } => test::run(&root, &args),
        Task::Lint => lint::run(&root),
        Task::Demo => demo::run(&root),
        Task::Bench { names } => bench::run(&root, &names),
        Task::Fuzz {
            minutes,
            jobs,
            targets,
        } => fuzz::run(
            &root,
            &fuzz::Options {
                total: std::time::Duration::from_secs_f64(minutes.max(0.0) * 60.0),
                jobs,
                targets,
            },
        ),
        Task::GenCrds => gen_crds(&root),
    }
}

/// Writes the CRD YAML that `tracery-crd` prints; xtask itself stays free of kube's build.
fn gen_crds(root: &std::path::Path) -> anyhow::Result<()> {
    let out = Command::new(cargo())
        .args(["run", "--quiet", "-p", "tracery-crd"])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!("`cargo run -p tracery-crd` failed ({})", out.status);
    }
    let path = root.join("deploy/kubernetes/breakpoint-crd.yaml");
    std::fs::create_dir_all(path.parent().expect("the path has a parent"))?;
    let old = std::fs::read(&path).ok();
    if old.as_deref() == Some(out.stdout.as_slice()) {
        println!("{} is up to date", path.display());
    } else {
        std::fs::write(&path, &out.stdout)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}; commit it with the type change", path.display());
    }
    Ok(())
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    // `cargo run` sets the variable at run time too. Prefer that: a binary cached in a
    // shared target dir may have been compiled in another checkout, now gone.
    let xtask = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    xtask
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// The `cargo` that runs us (set by `cargo run`), so nested builds use the same toolchain.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Runs `cmd` with inherited output; fails with the command line if it fails.
pub fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let line = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot run {line}"))?;
    if !status.success() {
        bail!("{line} failed ({status})");
    }
    Ok(())
}
