//! The Tracery controller: the breakpoint registry, the snapshot store, and the two gRPC
//! services of `tracery.v1` (`Tracery` for the CLI, `AgentLink` for agents).
//!
//! It needs no eBPF and no privileges, so it runs as a cluster Deployment as well as inside
//! the standalone agent. Start it with [`serve`].

mod agent_link;
mod audit;
mod auth;
mod breakpoints;
mod captures;
mod causal;
mod error;
mod expiry;
mod export;
mod hit_limits;
mod holds;
mod kubernetes;
mod options;
mod registry;
mod snapshot_body;
mod spec;
pub mod tls;
mod trace_api;
mod tracery_api;
mod traces;
mod web;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tracery_proto::v1::{agent_link_server::AgentLinkServer, tracery_server::TraceryServer};
use tracery_store::Store;

pub use auth::{Access, StandaloneToken, TokenError, TOKEN_FILE};
pub use error::ControllerError;
pub use kubernetes::KubernetesApi;
pub use options::{default_store_url, ControllerOptions, Defaults};
pub use web::{bind_ui, ui_url, UiError, DEFAULT_UI};

use registry::Registry;

/// Opens the store at `opts.store_url` (running its migrations) and serves `Tracery` and
/// `AgentLink` on `listener` until `shutdown` resolves; then ends agent sessions and
/// snapshot watches, and closes the store.
pub async fn serve(
    listener: TcpListener,
    opts: ControllerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControllerError> {
    serve_with_ui(listener, None, opts, shutdown).await
}

/// Like [`serve`], and also serves the web view and its JSON API (`/api/v1/`) on `ui`
/// when given, with the same authentication as the gRPC API.
pub async fn serve_with_ui(
    listener: TcpListener,
    ui: Option<TcpListener>,
    opts: ControllerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControllerError> {
    let addr = listener
        .local_addr()
        .map_err(|source| ControllerError::Listener { source })?;
    let store =
        Store::open(&opts.store_url)
            .await
            .map_err(|source| ControllerError::OpenStore {
                url: opts.store_url.clone(),
                source,
            })?;
    let mut server = tonic::transport::Server::builder();
    if let Some(dir) = &opts.tls_dir {
        server = server
            .tls_config(tls::server_config(dir)?)
            .map_err(|source| ControllerError::TlsConfig {
                dir: dir.clone(),
                source,
            })?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let exporter = match opts.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(endpoint) => export::Exporter::start(endpoint, store.clone())?,
        None => export::Exporter::default(),
    };
    let registry = Arc::new(Registry::exporting(store.clone(), opts, exporter, stop_rx));
    let expiry = tokio::spawn(expiry::run(registry.clone()));
    let _cluster = match &registry.opts.kubernetes {
        Some(api) => Some(
            kubernetes::start(api, registry.clone())
                .await
                .map_err(|reason| ControllerError::Kubernetes { reason })?,
        ),
        None => None,
    };
    let web = ui.map(|ui| tokio::spawn(web::serve(ui, registry.clone())));
    let tls = registry.opts.tls_dir.is_some();
    tracing::info!(%addr, store = store.url(), tls, access = ?registry.opts.access, "controller listening");

    // Long-lived streams (agent sessions, watches) would hold a graceful shutdown open
    // forever: end them first, then let tonic drain the rest.
    let signal = async move {
        shutdown.await;
        stop_tx.send_replace(true);
    };
    let served = server
        .add_service(TraceryServer::new(tracery_api::TraceryApi::new(
            registry.clone(),
        )))
        .add_service(AgentLinkServer::new(agent_link::AgentLinkApi::new(
            registry.clone(),
        )))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), signal)
        .await;
    expiry.abort();
    if let Some(web) = web {
        web.abort();
    }
    registry.end_all_sessions();
    store.close().await;
    served.map_err(|source| ControllerError::Serve { addr, source })
}
