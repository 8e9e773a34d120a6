//! `tracery-ctl`: the Tracery command line.

mod client;
mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Breakpoints on running services, without code changes or restarts.
#[derive(Parser)]
#[command(name = "tracery-ctl", version, about)]
struct Cli {
    /// The controller to talk to (for breakpoint, snapshot, trace and status).
    #[arg(long, global = true, env = "TRACERY_CONTROLLER", default_value = client::DEFAULT_CONTROLLER)]
    controller: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach a snapshot breakpoint to a running process and print its hits (needs root).
    #[cfg(feature = "probe")]
    Probe(commands::probe::Args),
    /// List what can be probed in a binary: functions and lines with code.
    #[cfg(feature = "symbols")]
    Symbols(commands::symbols::Args),
    /// Breakpoints kept by the controller and armed by the agents.
    #[command(subcommand)]
    Breakpoint(commands::breakpoint::Command),
    /// Snapshots stored by the controller.
    #[command(subcommand)]
    Snapshot(commands::snapshot::Command),
    /// Frozen requests (breakpoints set with --freeze): list, view, eval, resume.
    #[command(subcommand)]
    Trace(commands::trace::Command),
    /// Agents, armed probes per process, hits, drops and overhead.
    Status {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

/// How to print results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people: a tree of variables, then the stack.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the debug information is, when not in the binary itself.
#[cfg(any(feature = "probe", feature = "symbols"))]
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DebugFileArg {
    /// Separate debug file (otherwise .gnu_debuglink and the build id are used).
    #[arg(long, value_name = "PATH")]
    pub debug_file: Option<std::path::PathBuf>,
}

/// Runs one control-plane command on a small runtime (`probe` and `symbols` need none).
fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRACERY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let controller = cli.controller;
    let result = match cli.command {
        #[cfg(feature = "probe")]
        Command::Probe(a) => commands::probe::run(a),
        #[cfg(feature = "symbols")]
        Command::Symbols(a) => commands::symbols::run(a),
        Command::Breakpoint(c) => block_on(commands::breakpoint::run(&controller, c)),
        Command::Snapshot(c) => block_on(commands::snapshot::run(&controller, c)),
        Command::Trace(c) => block_on(commands::trace::run(&controller, c)),
        Command::Status { output } => block_on(commands::status::run(&controller, output)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
