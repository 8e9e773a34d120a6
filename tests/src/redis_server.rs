//! A Redis server of the demo's own, on the host's side of node-a's veth: node-a's orders
//! keeps customer totals in it, and Tracery's capture queries read them. Its own server,
//! not the test Redis on loopback: that one cannot listen on an address that exists only
//! once the nodes are set up, and the demo must not reconfigure a server it did not start.

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// How long redis-server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server` that keeps nothing on disk; killed on drop.
pub struct RedisServer {
    child: Child,
    /// `IP:PORT` it listens on.
    pub addr: String,
}

impl RedisServer {
    /// Starts `redis-server` on `ip:port` (no persistence) and waits until it accepts
    /// connections.
    pub fn start(ip: &str, port: u16) -> Result<Self, String> {
        let addr = format!("{ip}:{port}");
        let mut child = Command::new("redis-server")
            .args(["--bind", ip, "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // Clients come from node-a's namespace, not loopback: without this, Redis
            // without a password answers them DENIED and closes. It listens only on the
            // demo's private veth address, and only while the demo runs.
            .args(["--protected-mode", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start redis-server (run `cargo xtask setup`): {e}"))?;
        // Its log goes nowhere once it is up; drain it so the server never blocks on it.
        if let Some(out) = child.stdout.take() {
            thread::spawn(move || for _ in BufReader::new(out).lines() {});
        }
        let started = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server on {addr} exited at start: {status}"));
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                return Err(format!(
                    "redis-server on {addr} did not start in {START_TIMEOUT:?}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, addr })
    }

    /// The `redis://` URL of this server.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
