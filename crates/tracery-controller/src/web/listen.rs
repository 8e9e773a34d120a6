//! Where the web view listens: `--ui ADDR`, `--ui off`, or a default that steps aside when
//! its port is taken (several standalones on one machine, parallel tests).

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// The standalone's web view address when `--ui` is not given.
pub const DEFAULT_UI: &str = "127.0.0.1:7778";

/// Why the web view cannot listen where it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("--ui {text:?} is not an address; use IP:PORT, e.g. {DEFAULT_UI}, or off")]
    NotAnAddress { text: String },
    #[error(
        "--ui {addr} is not a loopback address: the web view is plain HTTP, so its token would \
         cross the network readable; serve it on 127.0.0.1 and reach it with ssh -L or \
         kubectl port-forward, or pass --ui-plaintext to accept that"
    )]
    NotLoopback { addr: SocketAddr },
    #[error("cannot serve the web view on {addr}; pass another --ui ADDR, or --ui off")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The web view's listener: `flag` as given (`off`: none), else `default` when given and
/// free (taken: a warning, and no web view). A non-loopback address needs `plaintext`.
pub async fn bind_ui(
    flag: Option<&str>,
    default: Option<&str>,
    plaintext: bool,
) -> Result<Option<TcpListener>, UiError> {
    let (text, explicit) = match (flag.map(str::trim), default) {
        (Some("off"), _) => return Ok(None),
        (Some(text), _) => (text, true),
        (None, Some(text)) => (text, false),
        (None, None) => return Ok(None),
    };
    let addr: SocketAddr = text.parse().map_err(|_| UiError::NotAnAddress {
        text: text.to_owned(),
    })?;
    if !addr.ip().is_loopback() && !plaintext {
        return Err(UiError::NotLoopback { addr });
    }
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(source) if explicit => Err(UiError::Bind { addr, source }),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "the web view's default address is taken; no web view (pass --ui ADDR)");
            Ok(None)
        }
    }
}

/// The address to open the web view at, with its token: `http://127.0.0.1:7778/?token=…`.
pub fn ui_url(listener: &TcpListener, token: Option<&str>) -> Option<String> {
    let mut addr = listener.local_addr().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Some(match token {
        Some(t) => format!("http://{addr}/?token={t}"),
        None => format!("http://{addr}/"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn off_none_taken_and_remote_addresses() {
        assert!(bind_ui(Some("off"), Some(DEFAULT_UI), false)
            .await
            .unwrap()
            .is_none());
        assert!(matches!(
            bind_ui(Some("10.1.2.3:80"), None, false).await,
            Err(UiError::NotLoopback { .. })
        ));
        assert!(matches!(
            bind_ui(Some("nope"), None, false).await,
            Err(UiError::NotAnAddress { .. })
        ));
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        // The default steps aside; an explicit address is an error.
        assert!(bind_ui(None, Some(&addr), false).await.unwrap().is_none());
        assert!(matches!(
            bind_ui(Some(&addr), None, false).await,
            Err(UiError::Bind { .. })
        ));
        let l = bind_ui(Some("127.0.0.1:0"), None, false)
            .await
            .unwrap()
            .unwrap();
        assert!(ui_url(&l, Some("abc")).unwrap().ends_with("/?token=abc"));
    }
}
