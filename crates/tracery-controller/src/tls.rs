//! The controller's TLS: its server certificate, and the CA that agents' client
//! certificates must be signed by. Files are read from one directory in the layout of a
//! Kubernetes TLS Secret (and cert-manager's): `tls.crt`, `tls.key`, `ca.crt`.
//!
//! Client certificates are optional in the handshake, because the CLI authenticates with a
//! token instead; `AgentLink` refuses a session without one (see [`require_agent_cert`]).
//! One that is presented must be valid: self-signed, expired or from another CA fails the
//! handshake.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// The server certificate chain, its key, and the CA for client certificates.
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";
pub const CA_FILE: &str = "ca.crt";

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}; `tracery-ctl certs init` writes a development set, or mount the Secret there (deploy/README.md)")]
pub struct TlsError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The TLS server configuration from `dir`.
pub fn server_config(dir: &Path) -> Result<ServerTlsConfig, TlsError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| TlsError { path, source })
    };
    let identity = Identity::from_pem(read(CERT_FILE)?, read(KEY_FILE)?);
    let ca = Certificate::from_pem(read(CA_FILE)?);
    Ok(ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(ca)
        .client_auth_optional(true))
}

/// Why a controller will not serve plaintext on `addr`.
#[derive(Debug, thiserror::Error)]
#[error("{addr} is not a loopback address, and plaintext there would let anyone reach it pose as an agent and read tokens; pass --tls-dir DIR (`tracery-ctl certs init` writes one), or --insecure to accept that")]
pub struct PlaintextRefused {
    pub addr: std::net::SocketAddr,
}

/// Plaintext is the default on loopback only; elsewhere it takes `insecure`, and is then
/// logged as a warning at start.
pub fn check_plaintext(
    addr: std::net::SocketAddr,
    tls: bool,
    insecure: bool,
) -> Result<(), PlaintextRefused> {
    if tls || addr.ip().is_loopback() {
        return Ok(());
    }
    if !insecure {
        return Err(PlaintextRefused { addr });
    }
    tracing::warn!(%addr, "--insecure: serving plaintext on a non-loopback address; agents are not authenticated and tokens cross the network readable");
    Ok(())
}

/// With TLS on, an agent must have presented a client certificate (the handshake already
/// checked it against the CA); without TLS there is nothing to check.
pub fn require_agent_cert<T>(tls: bool, request: &Request<T>) -> Result<(), Status> {
    if !tls || request.peer_certs().is_some_and(|c| !c.is_empty()) {
        return Ok(());
    }
    Err(Status::unauthenticated(
        "agents must present a client certificate signed by the controller's CA; start \
         tracery-agent with --tls-dir DIR holding tls.crt, tls.key and ca.crt",
    ))
}
