//! What can stop the controller, each with what to do about it.

use std::net::SocketAddr;

use tracery_store::StoreError;

/// An error that stops [`serve`](crate::serve).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The snapshot store could not be opened or migrated.
    #[error("cannot open the snapshot store {url}; fix or change --store and restart")]
    OpenStore {
        /// The URL as configured (the store masks passwords in its own messages).
        url: String,
        #[source]
        source: StoreError,
    },
    /// The listening socket is unusable.
    #[error("the controller's listening socket is unusable; pass another --listen address")]
    Listener {
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed while serving.
    #[error(
        "the controller's gRPC server on {addr} failed; restart it, agents reconnect by themselves"
    )]
    Serve {
        /// The address it was serving on.
        addr: SocketAddr,
        #[source]
        source: tonic::transport::Error,
    },
    /// The TLS certificate, key or CA could not be read.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The TLS files were read but are not a usable server configuration.
    #[error("the TLS files in {dir} are not a usable certificate, key and CA; make new ones with `tracery-ctl certs init`")]
    TlsConfig {
        dir: std::path::PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    /// The OTLP exporter could not be set up for `--otlp-endpoint`.
    #[error("cannot export to the OTLP collector at {endpoint:?}; give --otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT) as http://HOST:4317")]
    OtlpExporter {
        /// The endpoint as configured.
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// Cluster mode could not start (no API access, missing RBAC).
    #[error("cluster mode cannot start: {reason}")]
    Kubernetes {
        /// What failed and what to check.
        reason: String,
    },
}
