//! The connection to the controller, and what to tell the user when there is none.

use tonic::transport::Channel;
use tracery_proto::v1::tracery_client::TraceryClient;

/// Where `tracery-agent standalone` listens by default.
pub const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:7777";

/// Connects to the controller at `url`, or explains where it tried and how to start one.
pub async fn connect(url: &str) -> anyhow::Result<TraceryClient<Channel>> {
    let endpoint = Channel::from_shared(url.to_string())
        .map_err(|_| {
            anyhow::anyhow!("--controller {url:?} is not a URL like {DEFAULT_CONTROLLER}")
        })?
        .connect_timeout(std::time::Duration::from_secs(3));
    match endpoint.connect().await {
        Ok(channel) => Ok(TraceryClient::new(channel)),
        Err(e) => Err(anyhow::anyhow!(
            "cannot reach the Tracery controller at {url} ({e}); start one on this machine \
             with `sudo tracery-agent standalone`, or pass --controller URL (or set \
             TRACERY_CONTROLLER)"
        )),
    }
}

/// Turns a gRPC error into the controller's own message.
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", s.message())
}
