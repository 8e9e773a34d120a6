//! `tracery-controller`: the controller on its own, as the cluster Deployment runs it (the
//! standalone `tracery-agent standalone` embeds the same controller).

use std::process::ExitCode;

use clap::Parser;
use tracery_controller::{Access, ControllerOptions, Defaults, KubernetesApi, StandaloneToken};
use tracery_databases::{resolve_databases, CaptureLimits, DatabasesSection};

/// Breakpoint registry and snapshot store for Tracery agents and tracery-ctl.
#[derive(Parser, Debug)]
#[command(name = "tracery-controller", version)]
struct Cli {
    /// Address to serve tracery-ctl and agents on. Any but a loopback address needs
    /// --tls-dir, or --insecure.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7777")]
    listen: String,
    /// Serve TLS with DIR/tls.crt and DIR/tls.key, and accept only agents whose client
    /// certificate is signed by DIR/ca.crt (a Kubernetes TLS Secret mounted as a
    /// directory; `tracery-ctl certs init` writes a development set).
    #[arg(long, value_name = "DIR", env = "TRACERY_TLS_DIR")]
    tls_dir: Option<std::path::PathBuf>,
    /// Serve plaintext on a non-loopback --listen address: anyone who can reach it can
    /// pose as an agent, and tokens cross the network readable.
    #[arg(long, conflicts_with = "tls_dir")]
    insecure: bool,
    /// Outside cluster mode: where the API token is written at first start (DIR/token,
    /// mode 0600); tracery-ctl needs it.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/tracery")]
    data_dir: std::path::PathBuf,
    /// Snapshot store: sqlite://PATH or postgres://…; default: a SQLite file under the
    /// data directory. Prefer the environment variable for a URL with a password.
    #[arg(
        long,
        value_name = "URL",
        env = "TRACERY_STORE_URL",
        hide_env_values = true
    )]
    store: Option<String>,
    /// Cluster mode: --service names a Kubernetes Service, pods come from the API, and
    /// Breakpoint objects are reconciled. On by default when running in a pod.
    #[arg(long)]
    kubernetes: bool,
    /// Stay out of cluster mode even in a pod.
    #[arg(long, conflicts_with = "kubernetes")]
    no_kubernetes: bool,
    /// A database `--capture` queries may read, as NAME=URL (postgres://, redis://,
    /// mongodb://); repeatable.
    #[arg(long = "database", value_name = "NAME=URL")]
    databases: Vec<String>,
    /// Also redact database columns and keys with this name (words, as in [redaction]
    /// rules of tracery.toml: `iban`, `private_key`); repeatable. Agents redact snapshots
    /// with their own rules.
    #[arg(long = "redact", value_name = "RULE")]
    redact: Vec<String>,
    /// Turn the default redaction rules (password, token, api_key, ...) off.
    #[arg(long)]
    no_default_redaction: bool,
    /// Export each snapshot to this OTLP gRPC collector (Jaeger, the OpenTelemetry
    /// Collector), e.g. http://jaeger-collector:4317: a span on the request's trace, or a
    /// log record when it has none. OTEL_EXPORTER_OTLP_HEADERS adds metadata.
    #[arg(
        long,
        value_name = "URL",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        hide_env_values = true
    )]
    otlp_endpoint: Option<String>,
    /// Serve the web view (pages and /api/v1/, same token or Kubernetes authentication as
    /// the API) on this address, e.g. 127.0.0.1:7778. Off unless given.
    #[arg(long, value_name = "ADDR")]
    ui: Option<String>,
    /// Accept a non-loopback --ui address: the web view is plain HTTP, so tokens cross
    /// the network readable (prefer kubectl port-forward to a loopback --ui).
    #[arg(long)]
    ui_plaintext: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Kubernetes sets this variable in every pod.
    let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let kubernetes = if cli.kubernetes || (in_pod && !cli.no_kubernetes) {
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!(
                "cluster mode needs the Kubernetes API: {e}; run in a pod with the \
                 tracery-controller ServiceAccount, or pass --no-kubernetes"
            )
        })?;
        Some(KubernetesApi::new(client))
    } else {
        None
    };
    let databases = resolve_databases(&DatabasesSection::default(), &cli.databases)?;
    let redaction =
        tracery_model::Redaction::from_config(&tracery_model::redact::RedactionConfig {
            rules: cli.redact.clone(),
            defaults: Some(!cli.no_default_redaction),
        })?;
    tracery_model::redact::install(redaction);
    let listen: std::net::SocketAddr = cli.listen.parse().map_err(|_| {
        anyhow::anyhow!(
            "--listen {:?} is not IP:PORT, e.g. 127.0.0.1:7777",
            cli.listen
        )
    })?;
    tracery_controller::tls::check_plaintext(listen, cli.tls_dir.is_some(), cli.insecure)?;
    // Cluster mode: tokens are Kubernetes'; otherwise one token of our own.
    let access = match &kubernetes {
        Some(api) => Access::Kubernetes(api.client()),
        None => Access::Token(StandaloneToken::load_or_create(&cli.data_dir)?),
    };
    let opts = ControllerOptions {
        store_url: cli
            .store
            .unwrap_or_else(tracery_controller::default_store_url),
        services: Vec::new(),
        defaults: Defaults::default(),
        local_agent: None,
        databases,
        capture_limits: CaptureLimits::default(),
        kubernetes,
        access,
        tls_dir: cli.tls_dir.clone(),
        otlp_endpoint: cli.otlp_endpoint.clone(),
    };
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e}; pass another --listen",
                cli.listen
            )
        })?;
    let ui = tracery_controller::bind_ui(cli.ui.as_deref(), None, cli.ui_plaintext).await?;
    if let Some(l) = &ui {
        // A token of our own goes in the address; Kubernetes tokens are the user's.
        let secret = match &opts.access {
            Access::Token(t) => std::fs::read_to_string(t.path()).ok(),
            _ => None,
        };
        if let Some(url) = tracery_controller::ui_url(l, secret.as_deref().map(str::trim)) {
            eprintln!("tracery web view: {url}");
        }
    }
    tracery_controller::serve_with_ui(listener, ui, opts, shutdown_signal()).await?;
    Ok(())
}

/// Ctrl-C or SIGTERM (what Kubernetes sends a pod it stops).
async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
