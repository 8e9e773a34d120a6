//! `tracery-ctl`: the Tracery command line.

mod client;
mod cluster;
mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Breakpoints on running services, without code changes or restarts.
#[derive(Parser)]
#[command(name = "tracery-ctl", version, about)]
struct Cli {
    /// Where the controller is (for breakpoint, snapshot, trace and status), and the
    /// Kubernetes namespace.
    #[command(flatten)]
    controller: client::Args,
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
    /// The audit log: who set, deleted, froze, resumed or evaluated what.
    #[command(subcommand)]
    Audit(commands::audit::Command),
    /// A read-only SQL query over the store's views: snapshots, variables, messages, traces.
    Query(commands::query::Args),
    /// Development certificates for TLS between agents, controller and tracery-ctl.
    #[command(subcommand)]
    Certs(commands::certs::Command),
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
                // kube logs a failed API request as an error before returning it; the
                // message printed for that error already says what failed and what to do.
                .unwrap_or_else(|_| "warn,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let args = cli.controller;
    let result = match cli.command {
        #[cfg(feature = "probe")]
        Command::Probe(a) => commands::probe::run(a),
        #[cfg(feature = "symbols")]
        Command::Symbols(a) => commands::symbols::run(a),
        // The kubeconfig is read (and a runtime built) only for commands that need the
        // controller.
        Command::Breakpoint(c) => block_on(async {
            let (controller, namespace) = args.resolve().await?;
            commands::breakpoint::run(&controller, &namespace, c).await
        }),
        Command::Snapshot(c) => block_on(async {
            let (controller, _) = args.resolve().await?;
            commands::snapshot::run(&controller, c).await
        }),
        Command::Trace(c) => block_on(async {
            let (controller, _) = args.resolve().await?;
            commands::trace::run(&controller, c).await
        }),
        Command::Audit(c) => block_on(async {
            let (controller, _) = args.resolve().await?;
            commands::audit::run(&controller, c).await
        }),
        Command::Query(a) => block_on(async {
            let (controller, _) = args.resolve().await?;
            commands::query::run(&controller, a).await
        }),
        Command::Certs(c) => commands::certs::run(c),
        Command::Status { output } => block_on(async {
            let (controller, _) = args.resolve().await?;
            commands::status::run(&controller, output).await
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_flags_are_global() {
        let cli = Cli::try_parse_from([
            "tracery-ctl",
            "breakpoint",
            "list",
            "-n",
            "shop",
            "--context",
            "dev",
            "--controller-namespace",
            "tracery",
        ])
        .unwrap();
        assert_eq!(cli.controller.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.controller.context.as_deref(), Some("dev"));
        assert_eq!(cli.controller.controller_namespace, "tracery");
    }
}
