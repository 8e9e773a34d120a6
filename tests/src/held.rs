//! Checks of a frozen request on the demo services: a cgroup of its own for a service (the
//! message hold watches cgroups), requests through the gateway with a chosen trace, and
//! what reached the demo database.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// The demo database over TCP loopback (the hold works on TCP sockets only).
pub const PG_TCP: &str = "postgres://root@127.0.0.1:5432/tracery_demo?sslmode=disable";

/// The `demo-orders` binary of this workspace, built once per test binary.
pub fn orders_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/TEST-HASH -> target/debug
    let dir = exe.parent().unwrap().parent().unwrap();
    // Built even when present: one left by an older checkout would behave differently
    // (cargo makes an up-to-date build a no-op).
    BUILT.call_once(|| {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "tracery-demo-orders"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "building demo-orders");
    });
    dir.join("demo-orders")
}

/// A cgroup v2 directory for one test; its processes go back to the root cgroup on drop.
pub struct TestCgroup(PathBuf);

impl TestCgroup {
    /// Creates a fresh group (tests running in parallel each get their own).
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = crate::node::cgroup2_root().expect("cgroup v2 is mounted");
        let dir = root.join(format!("tracery-test-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Moves process `pid` (all its threads) into the group.
    pub fn adopt(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let procs = std::fs::read_to_string(self.0.join("cgroup.procs")).unwrap_or_default();
        let root = self
            .0
            .parent()
            .unwrap_or(Path::new("/"))
            .join("cgroup.procs");
        for p in procs.lines() {
            let _ = std::fs::write(&root, p);
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// POST /checkout through the gateway with `traceparent` for `trace`; (status, body, took).
pub fn checkout(gateway: &str, trace: &str, span: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let body = r#"{"customer":"ada","item":"book","qty":2,"unit_cents":1250}"#;
    let mut s = TcpStream::connect(gateway).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST /checkout HTTP/1.1\r\nHost: {gateway}\r\nContent-Type: application/json\r\n\
         traceparent: 00-{trace}-{span}-01\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // The JSON object is the longest line (Go may answer chunked).
    let json = body
        .lines()
        .max_by_key(|l| l.len())
        .unwrap_or("")
        .to_string();
    (status, json, started.elapsed())
}

/// The order without its database id and trace id: two runs differ only there.
pub fn without_id(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {json}");
    });
    let order = v
        .as_object_mut()
        .unwrap_or_else(|| panic!("not an object: {json}"));
    assert!(order.remove("id").is_some(), "{json}");
    assert!(order.remove("trace_id").is_some(), "{json}");
    v
}

/// A trace id no earlier run used (the demo database keeps its rows).
pub fn fresh_trace(tag: u8) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag:02x}{:030x}", nanos & ((1u128 << 120) - 1))
}

/// Runs `sql` on the demo database (over TCP, as the services reach it); its output.
pub fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-d", "tracery_demo", "-tAc", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Orders stored for `trace`: orders keeps each order's trace id.
pub fn rows_of(trace: &str) -> u64 {
    psql(&format!(
        "SELECT count(*) FROM orders WHERE trace_id = '{trace}'"
    ))
    .parse()
    .unwrap()
}

/// Lines `service` printed since the last call that contain `needle` (its access log).
pub fn lines_with(service: &mut crate::FixtureProcess, needle: &str) -> usize {
    let mut n = 0;
    while let Some(line) = service.read_line(Duration::from_millis(50)) {
        n += usize::from(line.contains(needle));
    }
    n
}
