//! The agent's TLS: its client certificate and the CA that signed the controller's, from
//! one directory laid out as a Kubernetes TLS Secret (`tls.crt`, `tls.key`, `ca.crt`).

use std::path::Path;

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The client TLS configuration in `dir`, for the link to the controller.
pub fn client_config(dir: &Path) -> anyhow::Result<ClientTlsConfig> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {}; --tls-dir needs tls.crt, tls.key and ca.crt (`tracery-ctl \
                 certs init` writes them to DIR/agent, or mount the agent's Secret there)",
                path.display()
            )
        })
    };
    Ok(ClientTlsConfig::new()
        .identity(Identity::from_pem(read("tls.crt")?, read("tls.key")?))
        .ca_certificate(Certificate::from_pem(read("ca.crt")?)))
}
