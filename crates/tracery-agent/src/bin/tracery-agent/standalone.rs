//! Standalone mode: the controller served in this process, and the agent linked to it
//! over loopback.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use anyhow::{anyhow, Context};
use tokio::net::TcpListener;
use tracery_agent::{link, LinkOptions, Services};
use tracery_controller::{Access, ControllerOptions, Defaults, StandaloneToken};

/// Where `tracery-ctl` looks by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7777";

pub struct Options {
    pub listen: String,
    /// The controller's TLS directory (`--tls-dir`), and this process's agent's.
    pub tls_dir: Option<PathBuf>,
    pub agent_tls: Option<tonic::transport::ClientTlsConfig>,
    /// `--insecure`: plaintext on a non-loopback address.
    pub insecure: bool,
    pub store: Option<String>,
    pub services: Services,
    pub data_dir: PathBuf,
    pub databases: crate::databases::DatabaseOptions,
    /// `--otlp-endpoint`: where snapshots are exported as spans and logs.
    pub otlp_endpoint: Option<String>,
    /// `--ui ADDR|off`: the web view; `None` is the default address.
    pub ui: Option<String>,
    /// `--ui-plaintext`: a non-loopback `--ui` is accepted.
    pub ui_plaintext: bool,
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let addr: SocketAddr = opts.listen.parse().with_context(|| {
        format!(
            "--listen {:?} is not an address; use IP:PORT, e.g. {DEFAULT_LISTEN}",
            opts.listen
        )
    })?;
    tracery_controller::tls::check_plaintext(addr, opts.tls_dir.is_some(), opts.insecure)?;
    // Written at first start, 0600: tracery-ctl run as this user reads it from there.
    let token = StandaloneToken::load_or_create(&opts.data_dir)?;
    let token_path = token.path().to_path_buf();
    let tls = if opts.tls_dir.is_some() {
        "TLS"
    } else {
        "plaintext"
    };
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow!(
                "{addr} is already in use: is another tracery-agent standalone running? \
                 stop it or pass --listen"
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot listen on {addr}"))
        }
    })?;
    let local = listener
        .local_addr()
        .context("reading the listen address")?;
    // The agent reaches the controller over loopback even when it listens on all addresses.
    let connect = if local.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), local.port())
    } else {
        local
    };
    let ui = tracery_controller::bind_ui(
        opts.ui.as_deref(),
        Some(tracery_controller::DEFAULT_UI),
        opts.ui_plaintext,
    )
    .await?;
    // The token itself, for the web view's address (the file is this user's, 0600).
    let secret = std::fs::read_to_string(&token_path).unwrap_or_default();
    let ui_url = ui
        .as_ref()
        .and_then(|l| tracery_controller::ui_url(l, Some(secret.trim())));
    let store_url = opts
        .store
        .unwrap_or_else(tracery_controller::default_store_url);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(tracery_controller::serve_with_ui(
        listener,
        ui,
        ControllerOptions {
            store_url,
            services: opts.services.names().map(str::to_string).collect(),
            defaults: Defaults::default(),
            // CLI calls wait for the agent below: a breakpoint set before it connected
            // would be stored with nobody to arm it, and `set` could not report errors.
            local_agent: Some(link::local_agent_id(&opts.data_dir)),
            databases: opts.databases.databases,
            capture_limits: opts.databases.limits,
            kubernetes: None,
            access: Access::Token(token),
            tls_dir: opts.tls_dir,
            otlp_endpoint: opts.otlp_endpoint,
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    eprintln!(
        "tracery standalone listening on {local} ({tls}); API token in {} (tracery-ctl run \
         as this user reads it); try `tracery-ctl status`",
        token_path.display()
    );
    if let Some(url) = ui_url {
        eprintln!("tracery web view: {url}");
    }
    let scheme = if opts.agent_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let agent = link::run_with_tls(
        LinkOptions {
            controller: format!("{scheme}://{connect}"),
            services: opts.services,
            data_dir: opts.data_dir,
            // A laptop or a single VM: no Kubernetes node, no pods.
            kubernetes_node: None,
        },
        opts.agent_tls,
        crate::shutdown_signal(),
    );
    tokio::pin!(controller);
    let agent_result = tokio::select! {
        r = agent => r,
        // The controller only ends early on an error (e.g. the store cannot be opened).
        r = &mut controller => {
            return match r {
                Ok(Ok(())) => Err(anyhow!("the controller stopped unexpectedly")),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(anyhow!("the controller task failed: {e}")),
            };
        }
    };
    let _ = stop_tx.send(());
    let controller_result = controller.await;
    agent_result?;
    match controller_result {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(anyhow!("the controller task failed: {e}")),
    }
}
