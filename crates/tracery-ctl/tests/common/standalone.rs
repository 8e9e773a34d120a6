//! A standalone Tracery (controller + agent in one process) for end-to-end tests: its own
//! port, tracery.toml and store, killed and cleaned up on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// `tracery-agent` beside this test run's `tracery-ctl`, built if cargo has not yet (with
/// `tracery-hold-keeper`, which the agent starts from beside itself).
pub fn agent_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    // Built once per test binary, even when present: a binary left from an older checkout
    // would run with other flags than these tests pass (cargo makes a fresh one a no-op).
    BUILT.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "tracery-agent", "--bins"])
            .status()
            .expect("run cargo build for tracery-agent");
        assert!(status.success(), "building tracery-agent failed");
    });
    Path::new(env!("CARGO_BIN_EXE_tracery-ctl")).with_file_name("tracery-agent")
}

pub struct Standalone {
    /// The PostgreSQL schema of this instance's store, when TRACERY_TEST_STORE=postgres.
    _schema: Option<PgSchema>,
    child: Option<Child>,
    pub url: String,
    listen: String,
    dir: PathBuf,
    config: PathBuf,
    pub store: String,
    /// More `standalone` arguments (`--database NAME=URL`, limits).
    extra: Vec<String>,
    /// Environment variables of the process (e.g. `OTEL_EXPORTER_OTLP_HEADERS`).
    env: Vec<(String, String)>,
    /// Its stderr (the logs), appended across restarts.
    pub log: PathBuf,
}

impl Standalone {
    /// Starts one with services `name = exe`, storing in SQLite unless `store` is given;
    /// returns once its agent is connected.
    pub fn start(services: &[(&str, &Path)], store: Option<String>) -> Self {
        Self::start_with(services, store, &[])
    }

    /// Like [`Standalone::start`], with more `standalone` arguments.
    pub fn start_with(services: &[(&str, &Path)], store: Option<String>, extra: &[&str]) -> Self {
        let mut s = Self::create(services, store);
        s.extra = extra.iter().map(|a| a.to_string()).collect();
        s.spawn();
        s
    }

    /// Like [`Standalone::start_with`], with these environment variables set.
    pub fn start_with_env(
        services: &[(&str, &Path)],
        store: Option<String>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut s = Self::create(services, store);
        s.extra = extra.iter().map(|a| a.to_string()).collect();
        s.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.spawn();
        s
    }

    /// Like [`Standalone::start`], but returns as soon as the port accepts connections,
    /// while its agent is most likely still loading: what a user typing right after start
    /// meets.
    pub fn start_unready(services: &[(&str, &Path)], store: Option<String>) -> Self {
        let mut s = Self::create(services, store);
        s.spawn_process();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&s.listen).is_err() {
            assert!(
                Instant::now() < deadline,
                "standalone Tracery did not listen on {} within 30 s",
                s.listen
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        s
    }

    fn create(services: &[(&str, &Path)], store: Option<String>) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tracery-e2e-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("tracery.toml");
        let mut toml = String::new();
        for (name, exe) in services {
            let exe = std::fs::canonicalize(exe).unwrap();
            toml.push_str(&format!("[services.{name}]\nexe = {:?}\n\n", exe));
        }
        std::fs::write(&config, toml).unwrap();
        let listen = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        // TRACERY_TEST_STORE=postgres runs the same tests on the real PostgreSQL
        // (`cargo xtask test` runs them both ways).
        let on_postgres =
            store.is_none() && std::env::var("TRACERY_TEST_STORE").is_ok_and(|s| s == "postgres");
        let schema = on_postgres.then(PgSchema::create);
        let store = store
            .or_else(|| schema.as_ref().map(PgSchema::url))
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("tracery.db").display()));
        Self {
            _schema: schema,
            child: None,
            url: format!("http://{listen}"),
            listen,
            log: dir.join("standalone.log"),
            dir,
            config,
            store,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    fn spawn_process(&mut self) {
        let child = Command::new(agent_bin())
            .args(["standalone", "--config"])
            .arg(&self.config)
            .args(["--store", &self.store, "--listen", &self.listen])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .expect("open the standalone log"),
            )
            .spawn()
            .expect("start tracery-agent standalone");
        self.child = Some(child);
    }

    fn spawn(&mut self) {
        self.spawn_process();
        // Ready means the agent is connected, not only the controller (the controller
        // holds CLI calls until then; this also bounds how long a test waits).
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let out = self.ctl(&["status", "--output", "json"]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                let agents = v["agents"].as_array().cloned().unwrap_or_default();
                if agents.iter().any(|a| a["connected"] == true) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "standalone Tracery at {} had no connected agent within 30 s; its log:\n{}",
            self.url,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Stops the process (SIGKILL: nothing is flushed on the way out) and starts it again
    /// with the same config, store and address.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `tracery-ctl --controller URL args`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        super::ctl()
            .args(["--controller", &self.url])
            .args(args)
            .output()
            .expect("run tracery-ctl")
    }

    /// `trace view TRACE --output json`, retried until `deadline` while the controller
    /// knows nothing of the trace yet (its first report may still be on the way).
    pub fn trace_view_json(&self, trace: &str, deadline: Instant) -> Value {
        loop {
            let out = self.ctl(&["trace", "view", trace, "--output", "json"]);
            if out.status.success() {
                return serde_json::from_slice(&out.stdout).expect("trace view's JSON");
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("has no snapshots or messages") && Instant::now() < deadline,
                "trace view {trace} failed: {err}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Like [`Standalone::ctl`], asserting success; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "tracery-ctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sets a breakpoint and returns its id.
    pub fn set(&self, args: &[&str]) -> String {
        let mut all = vec!["breakpoint", "set", "-q"];
        all.extend_from_slice(args);
        self.ctl_ok(&all).trim().to_string()
    }

    /// Waits until breakpoint `id` has at least `n` stored snapshots; returns them (JSON).
    pub fn snapshots(&self, id: &str, n: usize) -> Vec<Value> {
        self.snapshots_within(id, n, Duration::from_secs(20))
    }

    /// Like [`Standalone::snapshots`], waiting up to `wait`.
    pub fn snapshots_within(&self, id: &str, n: usize, wait: Duration) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let out = self.ctl_ok(&[
                "snapshot",
                "list",
                "--breakpoint",
                id,
                "--limit",
                "1000",
                "--output",
                "json",
            ]);
            let snaps: Vec<Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if snaps.len() >= n {
                return snaps;
            }
            assert!(
                Instant::now() < deadline,
                "breakpoint {id}: {} of {n} snapshots after {wait:?}; status: {}",
                snaps.len(),
                self.ctl_ok(&["status"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh schema in the test PostgreSQL (started by `cargo xtask test`), dropped on drop.
pub struct PgSchema {
    base: String,
    name: String,
}

impl PgSchema {
    pub fn create() -> Self {
        let base = std::env::var("TRACERY_TEST_PG_URL").unwrap_or_else(|_| {
            "postgres://root@localhost/tracery_test?host=/var/run/postgresql".into()
        });
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ctl_e2e_{}_{n}", std::process::id());
        let out = std::process::Command::new("psql")
            .args([base.as_str(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .output()
            .expect("run psql (installed with PostgreSQL by `cargo xtask setup`)");
        assert!(
            out.status.success(),
            "cannot reach the test PostgreSQL at {base}: {}; run the tests with `cargo xtask test`, which starts it",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { base, name }
    }

    pub fn url(&self) -> String {
        format!("{}&options[search_path]={}", self.base, self.name)
    }

    /// The schema's name, for tests that read its tables with psql.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database URL without the schema, as psql takes it.
    pub fn base(&self) -> &str {
        &self.base
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([self.base.as_str(), "-X", "-q", "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .output();
    }
}
