//! `tracery-agent`: the node agent. `run` connects to a controller; `standalone` runs the
//! controller in the same process (the default for a laptop or a single VM).

mod databases;
mod standalone;
mod tls;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracery_agent::{discovery::NodeCgroup, link, LinkOptions, Services};

/// Tracery node agent: arms breakpoints on this node's processes and sends their snapshots
/// to the controller.
#[derive(Parser, Debug)]
#[command(name = "tracery-agent", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Connect to a controller and keep capturing for it (reconnects when it is away).
    Run {
        /// The controller, e.g. https://tracery-controller.tracery-system.svc:7777.
        #[arg(long, value_name = "URL")]
        controller: String,
        /// Connect over TLS with the client certificate DIR/tls.crt (key DIR/tls.key),
        /// trusting the controller's certificate only if DIR/ca.crt signed it. A
        /// controller with TLS refuses agents without such a certificate.
        #[arg(long, value_name = "DIR", env = "TRACERY_TLS_DIR")]
        tls_dir: Option<PathBuf>,
        /// Cluster mode: the Kubernetes node this agent runs on (the DaemonSet passes
        /// spec.nodeName). The controller then sends the node's pods, and breakpoints can
        /// select pods by label.
        #[arg(long, value_name = "NAME")]
        kubernetes_node: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Controller and agent in one process, with an embedded SQLite store.
    Standalone {
        #[command(flatten)]
        common: Common,
        /// Snapshot store: sqlite://PATH or postgres://…; default: a SQLite file under the
        /// data directory.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Address the controller listens on for tracery-ctl (and this agent). Any but a
        /// loopback address needs --tls-dir, or --insecure.
        #[arg(long, value_name = "ADDR", default_value = standalone::DEFAULT_LISTEN)]
        listen: String,
        /// Serve TLS with DIR/tls.crt and DIR/tls.key, and accept only agents whose client
        /// certificate DIR/ca.crt signed (`tracery-ctl certs init` writes DIR/controller).
        #[arg(long, value_name = "DIR", requires = "agent_tls_dir")]
        tls_dir: Option<PathBuf>,
        /// With --tls-dir: this process's own agent's certificate directory (tls.crt,
        /// tls.key, ca.crt; `certs init` writes DIR/agent).
        #[arg(long, value_name = "DIR", requires = "tls_dir")]
        agent_tls_dir: Option<PathBuf>,
        /// Serve plaintext on a non-loopback --listen address: anyone who can reach it
        /// can pose as an agent, and the API token crosses the network readable.
        #[arg(long, conflicts_with = "tls_dir")]
        insecure: bool,
        /// Serve the web view (pages and /api/v1/) on this address, or `off`. Default
        /// 127.0.0.1:7778 (skipped with a warning when taken); the tokened address is
        /// printed at start.
        #[arg(long, value_name = "ADDR|off")]
        ui: Option<String>,
        /// Accept a non-loopback --ui address: the web view is plain HTTP, so its token
        /// crosses the network readable (prefer ssh -L to a loopback --ui).
        #[arg(long)]
        ui_plaintext: bool,
        /// A database `--capture` queries may read, as NAME=URL (postgres://, redis://,
        /// mongodb://); repeatable. Overrides [databases.NAME] of the config. Prefer
        /// `url_env` in the config for a URL with a password.
        #[arg(long = "database", value_name = "NAME=URL")]
        databases: Vec<String>,
        /// How long one hit's read of a database may take, in milliseconds (default 2000;
        /// config: [capture_limits] statement_timeout_ms).
        #[arg(long, value_name = "MS")]
        capture_timeout_ms: Option<u64>,
        /// Rows kept per capture query (default 100; config: [capture_limits] max_rows).
        #[arg(long, value_name = "N")]
        capture_rows: Option<usize>,
        /// Export each snapshot to this OTLP gRPC collector (Jaeger, the OpenTelemetry
        /// Collector), e.g. http://localhost:4317: a span on the request's trace, or a log
        /// record when it has none. OTEL_EXPORTER_OTLP_HEADERS adds metadata.
        #[arg(
            long,
            value_name = "URL",
            env = "OTEL_EXPORTER_OTLP_ENDPOINT",
            hide_env_values = true
        )]
        otlp_endpoint: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
struct Common {
    /// Service definitions ([services.NAME] with exe, process or cmdline); default:
    /// ./tracery.toml when it exists.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Where the agent keeps its stable id.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/tracery")]
    data_dir: PathBuf,
    /// Only processes in this cgroup v2 group (or below it) are this node's, e.g.
    /// /sys/fs/cgroup/NODE: for several agents sharing one kernel. Default: every process.
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
}

impl Common {
    /// `--config`, or ./tracery.toml when it exists.
    fn config_path(&self) -> Option<&Path> {
        let default = Path::new("tracery.toml");
        match &self.config {
            Some(path) => Some(path),
            None if default.exists() => Some(default),
            None => None,
        }
    }

    /// The service definitions, scoped to `--cgroup` when given.
    fn services(&self) -> anyhow::Result<Services> {
        let services = match self.config_path() {
            Some(path) => Services::load(path)?,
            None => Services::default(),
        };
        let Some(dir) = &self.cgroup else {
            return Ok(services);
        };
        let cgroup = NodeCgroup::open(dir).context("--cgroup")?;
        tracing::info!(
            cgroup = cgroup.path(),
            "only processes in this cgroup are this node's"
        );
        Ok(services.scoped_to(&cgroup))
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", link::error_chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let (common, mode) = match &cli.command {
        Command::Run { common, .. } | Command::Standalone { common, .. } => (common, &cli.command),
    };
    // Cheap checks first: a typo in the config should not wait for eBPF to load.
    let services = common.services()?;
    // Before anything is captured or read: the standalone controller's database rows use
    // the same rules as this agent's snapshots.
    tracery_model::redact::install(services.redaction().clone());
    tracing::info!(
        rules = services.redaction().labels().collect::<Vec<_>>().join(", "),
        "redacting values with these names on this node"
    );
    let databases = match mode {
        Command::Standalone {
            databases,
            capture_timeout_ms,
            capture_rows,
            ..
        } => Some(databases::load(
            common.config_path(),
            databases,
            *capture_timeout_ms,
            *capture_rows,
        )?),
        Command::Run { .. } => None,
    };
    tracery_agent::privilege::check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match mode {
            Command::Run {
                controller,
                kubernetes_node,
                tls_dir,
                ..
            } => {
                let tls = tls_dir.as_deref().map(tls::client_config).transpose()?;
                let opts = LinkOptions {
                    controller: controller.clone(),
                    services,
                    data_dir: common.data_dir.clone(),
                    kubernetes_node: kubernetes_node.clone(),
                };
                link::run_with_tls(opts, tls, shutdown_signal()).await?;
                Ok(())
            }
            Command::Standalone {
                store,
                listen,
                tls_dir,
                agent_tls_dir,
                insecure,
                otlp_endpoint,
                ui,
                ui_plaintext,
                ..
            } => {
                let agent_tls = agent_tls_dir
                    .as_deref()
                    .map(tls::client_config)
                    .transpose()?;
                standalone::run(standalone::Options {
                    listen: listen.clone(),
                    tls_dir: tls_dir.clone(),
                    agent_tls,
                    insecure: *insecure,
                    store: store.clone(),
                    databases: databases.unwrap_or_else(|| databases::DatabaseOptions {
                        databases: Vec::new(),
                        limits: Default::default(),
                    }),
                    services,
                    data_dir: common.data_dir.clone(),
                    otlp_endpoint: otlp_endpoint.clone(),
                    ui: ui.clone(),
                    ui_plaintext: *ui_plaintext,
                })
                .await
            }
        }
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: detaching probes");
}
