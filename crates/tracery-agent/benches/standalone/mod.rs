//! A `tracery-agent standalone` child process for the benches, started as a user would.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tonic::{
    metadata::{Ascii, MetadataValue},
    service::interceptor::InterceptedService,
    transport::Channel,
};
use tracery_proto::v1::{tracery_client::TraceryClient, StatusRequest};

/// A client of the standalone's API, carrying its token.
pub type Client = TraceryClient<InterceptedService<Channel, Bearer>>;

/// Adds the standalone's `authorization: Bearer TOKEN` to every call (its API refuses
/// calls without it).
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A `tracery-agent standalone` child; killed on drop.
pub struct Agent {
    child: Child,
    url: String,
    /// Where the standalone writes its API token at start.
    token: PathBuf,
}

impl Agent {
    /// Starts the standalone with `services` (name, exe) in its config, its store and data
    /// under `dir`, and `extra` arguments (`--database NAME=URL`, ...).
    pub fn start(dir: &Path, services: &[(&str, &Path)], extra: &[&str]) -> Self {
        let config = dir.join("tracery.toml");
        let text: String = services
            .iter()
            .map(|(name, exe)| format!("[services.{name}]\nexe = {exe:?}\n"))
            .collect();
        std::fs::write(&config, text).unwrap();
        let listen = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().unwrap().to_string()
        };
        let store = format!("sqlite://{}", dir.join("tracery.db").display());
        let child = Command::new(agent_bin())
            .args(["standalone", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--store", &store, "--listen", &listen])
            .args(extra)
            // Its info logs would interleave with the figures.
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start tracery-agent standalone");
        Self {
            child,
            url: format!("http://{listen}"),
            token: dir.join("data/token"),
        }
    }

    /// The agent's process id.
    // `allow`, not `expect`: this module is compiled into each bench, and only the
    // control-plane bench reads it.
    #[allow(dead_code, reason = "db_capture does not read it")]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connects once the controller listens, and waits until its agent is connected (a
    /// breakpoint set before that is pending, not armed).
    pub async fn connect(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut client = loop {
            let token = std::fs::read_to_string(&self.token).ok();
            let bearer = token.and_then(|t| format!("Bearer {}", t.trim()).parse().ok());
            if let (Ok(c), Some(bearer)) = (Channel::from_shared(self.url.clone()), bearer) {
                if let Ok(channel) = c.connect().await {
                    break TraceryClient::with_interceptor(channel, Bearer(bearer));
                }
            }
            assert!(
                Instant::now() < deadline,
                "standalone Tracery at {} did not listen within 30 s",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        loop {
            if let Ok(r) = client.status(StatusRequest {}).await {
                if r.into_inner().agents.iter().any(|a| a.connected) {
                    return client;
                }
            }
            assert!(
                Instant::now() < deadline,
                "standalone Tracery at {} had no connected agent within 30 s",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release `tracery-agent` cargo built for this bench; built here if it is missing.
fn agent_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tracery-agent"));
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "-p",
                "tracery-agent",
                "--bin",
                "tracery-agent",
            ])
            .status()
            .expect("run cargo build for tracery-agent");
        assert!(status.success(), "building tracery-agent failed");
    }
    bin
}

/// Nearest-rank percentile of sorted `v`.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}
