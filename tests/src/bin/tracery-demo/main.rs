//! The demo behind `cargo xtask demo`: four services on two nodes of this machine
//! (gateway in Go and orders in Rust on node-a, payments and a queue worker in Go on
//! node-b; PostgreSQL and Redis on the host behind orders), one Tracery agent per node
//! (node-a's is standalone: it serves the controller too). It sets a breakpoint by service
//! name and source line and prints the snapshot of one request; then freezes a request at
//! the same line, shows where it is held and that nothing of it got past orders (not even
//! its fulfilment job into Redis), prints its snapshot and resumes it; the worker's
//! breakpoint, scoped to that request's trace, fires for its job only. Last, a second
//! request is frozen in orders after it has paid, as it enqueues its job: the kernel holds
//! its Redis commands (`LLEN jobs` 0) until the resume, then exactly one job arrives.
//!
//! Usage: tracery-demo --bin-dir DIR --database URL --check-database URL
//! (DIR holds tracery-ctl, tracery-agent and demo-orders, as cargo built them; `--database`
//! is how node-a's orders reaches PostgreSQL, `--check-database` how this host does.)
//!
//! Needs root: it creates network namespaces and cgroups (`tracery_tests::node`).

mod freeze;
mod queue;
mod queue_freeze;

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracery_tests::{
    demo::{NodeServices, Service},
    fixture, marker_line,
    node::{self, Node, Nodes, NODE_A},
    redis_server::RedisServer,
};

/// Whether the demo fails when the frozen request's bytes reach payments or PostgreSQL
/// (or its response arrives) while it is frozen. `false` only reports it: for running the
/// demo before the agent holds messages. Overridden by `TRACERY_DEMO_STRICT_HOLD=0|1`.
const STRICT_HOLD_CHECK: bool = true;

/// Where node-a's standalone agent serves the controller (for tracery-ctl on the host and
/// for node-b's agent).
const CONTROLLER_PORT: u16 = 7777;

/// Where node-a's standalone agent serves the web view.
const UI_PORT: u16 = 7778;

/// The demo's own Redis, on the host's side of node-a's veth.
const DEMO_REDIS_PORT: u16 = 6380;

/// How long the demo lets a request that was not held run before it looks for its traces:
/// far longer than orders needs to reach PostgreSQL and payments.
const SETTLE: Duration = Duration::from_secs(2);

/// The order every request places.
const ORDER: &str =
    r#"{"customer":"ana","item":"lamp","qty":3,"unit_cents":1250,"coupon":"TENOFF"}"#;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ndemo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Args {
    bin_dir: PathBuf,
    /// PostgreSQL as node-a sees it.
    database: String,
    /// PostgreSQL as this host sees it, for the evidence queries.
    check_database: String,
}

fn run() -> Result<(), String> {
    let args = args()?;
    let ctl = args.bin_dir.join("tracery-ctl");
    remove_stale_work_dirs();
    let work = std::env::temp_dir().join(format!("tracery-demo-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    remove_nodes_on_signal(&work)?;

    let result = with_work_dir(&args, &ctl, &work);
    let _ = fs::remove_dir_all(&work);
    result
}

/// Removes the work directories of earlier runs that were killed (their pid is gone).
fn remove_stale_work_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("tracery-demo-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Ctrl-C (or SIGTERM, SIGHUP) removes the nodes, and with them every process of the
/// demo, before exiting: the namespaces and cgroups would outlive us otherwise.
fn remove_nodes_on_signal(work: &Path) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let work = work.to_path_buf();
    thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("\ninterrupted (signal {signal}): removing the demo's nodes");
            if let Err(e) = node::teardown() {
                eprintln!("warning: {e}");
            }
            let _ = fs::remove_dir_all(&work);
            std::process::exit(130);
        }
    });
    Ok(())
}

fn with_work_dir(args: &Args, ctl: &Path, work: &Path) -> Result<(), String> {
    step("setting up two nodes on this machine: a network namespace and a cgroup each");
    // Declared first, dropped last: the services and agents die before their nodes go.
    let nodes = Nodes::create()?;
    for n in [&nodes.a, &nodes.b] {
        println!(
            "    {}  {} (host side {} {})  cgroup {}",
            n.spec.name,
            n.spec.ip,
            n.spec.host_if,
            n.spec.host_ip,
            n.cgroup_dir().display()
        );
    }

    step(
        "starting the services: gateway (Go) -> orders (Rust, PostgreSQL, Redis) -> payments (Go); \
         Redis -> worker (Go)",
    );
    let redis = RedisServer::start(NODE_A.host_ip, DEMO_REDIS_PORT)?;
    let orders_bin = args.bin_dir.join("demo-orders");
    let mut services = NodeServices::start(&nodes, &orders_bin, &args.database, &redis.url())?;
    for (name, node, s) in [
        ("gateway ", &nodes.a, &services.gateway),
        ("orders  ", &nodes.a, &services.orders),
        ("payments", &nodes.b, &services.payments),
        ("worker  ", &nodes.b, &services.worker),
    ] {
        // The worker listens on nothing: its address is the Redis it takes jobs from.
        let addr = if name.trim() == "worker" {
            format!("takes jobs from Redis at {}", s.addr)
        } else {
            s.addr.clone()
        };
        println!(
            "    {name} on {}  {addr}  (PID {})",
            node.spec.name,
            s.process.pid()
        );
    }
    println!(
        "    PostgreSQL on the host, reached by orders at {}",
        args.database
    );
    println!(
        "    Redis on the host, reached by orders at {} (customer totals, fulfilment jobs) and \
         by the worker (the jobs)",
        redis.url()
    );

    step("starting one Tracery agent per node");
    let config = work.join("tracery.toml");
    let exe = |p: &Path| fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    fs::write(
        &config,
        format!(
            "[services.orders]\nexe = {:?}\n\n[services.gateway]\nexe = {:?}\n\n[services.payments]\nexe = {:?}\n\n[services.worker]\nexe = {:?}\n",
            exe(&orders_bin)?,
            exe(&fixture("demo-gateway"))?,
            exe(&fixture("demo-payments"))?,
            exe(&fixture("demo-worker"))?,
        ),
    )
    .map_err(|e| e.to_string())?;
    print!(
        "{}",
        indent(&fs::read_to_string(&config).unwrap_or_default())
    );
    let listen = format!("{}:{CONTROLLER_PORT}", NODE_A.ip);
    // Not loopback: the controller serves TLS, and agents show client certificates.
    let certs = work.join("certs");
    let made = Command::new(ctl)
        .args(["certs", "init", "--force", "--san", NODE_A.ip, "--dir"])
        .arg(&certs)
        .output()
        .map_err(|e| format!("cannot run tracery-ctl certs init: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "tracery-ctl certs init failed: {}",
            String::from_utf8_lossy(&made.stderr).trim()
        ));
    }
    println!(
        "    certificates: tracery-ctl certs init --san {} --dir {}",
        NODE_A.ip,
        certs.display()
    );
    let (controller_tls, agent_tls) = (certs.join("controller"), certs.join("agent"));
    let (controller_tls, agent_tls) = (
        controller_tls.to_str().unwrap_or_default(),
        agent_tls.to_str().unwrap_or_default(),
    );
    let controller = format!("https://{listen}");
    let agent_bin = args.bin_dir.join("tracery-agent");
    // The databases a breakpoint's --capture may read, by name.
    let shop = format!("shop={}", args.database);
    let cache = format!("cache={}", redis.url());
    let agent_a = Agent::start(
        &nodes.a,
        &agent_bin,
        &config,
        work,
        &[
            "standalone",
            "--store",
            &format!("sqlite://{}", work.join("tracery.db").display()),
            "--listen",
            &listen,
            "--tls-dir",
            controller_tls,
            "--agent-tls-dir",
            agent_tls,
            "--database",
            &shop,
            "--database",
            &cache,
            // The web view, on node-a's veth address so the host's browser reaches it;
            // plain HTTP on a link that only this machine has.
            "--ui",
            &format!("{}:{UI_PORT}", NODE_A.ip),
            "--ui-plaintext",
        ],
    )?;
    println!(
        "    {}: tracery-agent standalone --listen {listen} --tls-dir {controller_tls} --agent-tls-dir {agent_tls} --database {shop} --database {cache} --cgroup {}   (log {})",
        nodes.a.spec.name,
        nodes.a.cgroup_dir().display(),
        agent_a.log.display()
    );
    let agent_b = Agent::start(
        &nodes.b,
        &agent_bin,
        &config,
        work,
        &["run", "--controller", &controller, "--tls-dir", agent_tls],
    )?;
    println!(
        "    {}: tracery-agent run --controller {controller} --tls-dir {agent_tls} --cgroup {}   (log {})",
        nodes.b.spec.name,
        nodes.b.cgroup_dir().display(),
        agent_b.log.display()
    );
    let ctx = Demo {
        ctl,
        work,
        controller: &controller,
        check_database: &args.check_database,
        redis: &redis.addr,
    };
    let result = ctx
        .wait_for_agents(&[&nodes.a, &nodes.b])
        .and_then(|()| ctx.snapshot_part(&services.gateway))
        .and_then(|()| ctx.freeze_part(&mut services));
    if result.is_err() {
        for agent in [&agent_a, &agent_b] {
            agent.print_log_tail();
        }
    }
    result
}

/// A node's agent, killed on drop; its log goes to a file.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// Starts `tracery-agent MODE_ARGS` inside `node`, seeing only the node's cgroup.
    fn start(
        node: &Node,
        bin: &Path,
        config: &Path,
        work: &Path,
        mode_args: &[&str],
    ) -> Result<Self, String> {
        let log = work.join(format!("agent-{}.log", node.spec.name));
        let log_file = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = node.command(bin)?;
        cmd.args(mode_args)
            .arg("--config")
            .arg(config)
            .arg("--cgroup")
            .arg(node.cgroup_dir())
            // Each agent needs its own id, or the controller takes them for one.
            .arg("--data-dir")
            .arg(work.join(node.spec.name))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            // A log file, not a terminal.
            .env("NO_COLOR", "1");
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {} in {}: {e}", bin.display(), node.spec.name))?;
        Ok(Self { child, log })
    }

    fn print_log_tail(&self) {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("\n--- last lines of {}", self.log.display());
        for line in &lines[lines.len().saturating_sub(20)..] {
            eprintln!("    {line}");
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Exited already is fine; killing an agent detaches its probes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the demo reaches Tracery and PostgreSQL.
struct Demo<'a> {
    ctl: &'a Path,
    /// Where the certificates and node-a's data directory (its API token) are.
    work: &'a Path,
    controller: &'a str,
    check_database: &'a str,
    /// The demo's Redis, `IP:PORT`, for the queue evidence.
    redis: &'a str,
}

impl Demo<'_> {
    /// Waits until an agent from each node is connected; then shows them.
    fn wait_for_agents(&self, nodes: &[&Node]) -> Result<(), String> {
        // A breakpoint set before its agent is connected waits, pending, and the demo's
        // request would pass before it is armed.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let connected: Vec<String> = self
                .ctl_out(&["status", "--output", "json"])
                .ok()
                .and_then(|out| serde_json::from_str::<Value>(out.trim()).ok())
                .and_then(|v| v["agents"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter(|a| a["connected"] == true)
                .filter_map(|a| a["node"].as_str().map(str::to_string))
                .collect();
            if nodes
                .iter()
                .all(|n| connected.iter().any(|c| c == n.spec.name))
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the agents of {} were not all connected to {} within 60 s (connected: {connected:?})",
                    nodes.iter().map(|n| n.spec.name).collect::<Vec<_>>().join(" and "),
                    self.controller
                ));
            }
            thread::sleep(Duration::from_millis(200));
        }
        println!("    both agents are connected:");
        self.show(&["status"])
    }

    /// The breakpoint by service name and source line, one request, its snapshot.
    fn snapshot_part(&self, gateway: &Service) -> Result<(), String> {
        let (location, code) = probe_location();
        step(&format!(
            "setting a breakpoint on service orders at {location}"
        ));
        println!("    {code}");
        let id = self.ctl_out(&[
            "breakpoint",
            "set",
            "-q",
            "--service",
            "orders",
            "--at",
            &location,
        ])?;
        let id = id.trim().to_string();
        println!("    breakpoint {id}");
        self.wait_armed(&id)?;

        step("sending a request through the gateway");
        let reply = post(&gateway.addr, "/checkout", ORDER, None)?;
        println!("    POST /checkout -> {reply}");

        step("the snapshot the request left at the breakpoint");
        let snapshot = self.wait_snapshot(&id, Duration::from_secs(30))?;
        self.show(&["snapshot", "view", &snapshot])?;
        // The freeze below uses the same line; this breakpoint would only add snapshots.
        self.ctl_out(&["breakpoint", "delete", &id])?;
        println!("\n    (breakpoint {id} deleted)");
        Ok(())
    }

    /// Waits until an agent reports breakpoint `id` armed in a process: on a busy machine,
    /// loading a large binary's DWARF can outlast the controller's wait when setting it,
    /// and a request sent before would pass unseen.
    fn wait_armed(&self, id: &str) -> Result<(), String> {
        let id_number: Option<u64> = id.parse().ok();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(out) = self.ctl_out(&["status", "--output", "json"]) {
                let v: Value = serde_json::from_str(out.trim()).unwrap_or_default();
                let armed = v["agents"].as_array().into_iter().flatten().any(|a| {
                    a["processes"].as_array().into_iter().flatten().any(|p| {
                        p["breakpoints"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|b| b.as_u64() == id_number)
                    })
                });
                if armed {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "breakpoint {id} was not armed within 60 s; see `tracery-ctl status`"
        ))
    }

    /// The id of the first snapshot of breakpoint `id`, waiting for it.
    fn wait_snapshot(&self, id: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let list =
                self.ctl_out(&["snapshot", "list", "--breakpoint", id, "--output", "json"])?;
            if let Some(first) = list.lines().next() {
                let v: Value = serde_json::from_str(first).map_err(|e| e.to_string())?;
                return Ok(v["id"].to_string().trim_matches('"').to_string());
            }
            if Instant::now() > deadline {
                return Err(format!("no snapshot within {within:?}"));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// One value or rows (`|`-separated) from the demo database, over TCP from the host.
    fn psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .arg(self.check_database)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql -c {sql:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn ctl_out(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(self.ctl)
            .arg("--controller")
            .arg(self.controller)
            // node-a's standalone keeps its token in its --data-dir.
            .env(
                "TRACERY_TOKEN_FILE",
                self.work.join(NODE_A.name).join("token"),
            )
            .env("TRACERY_CA", self.work.join("certs/ca.crt"))
            .args(args)
            .output()
            .map_err(|e| format!("cannot run tracery-ctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "tracery-ctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn show(&self, args: &[&str]) -> Result<(), String> {
        println!("$ tracery-ctl {}", args.join(" "));
        print!("{}", self.ctl_out(args)?);
        Ok(())
    }
}

/// `pricing.rs:LINE` of the `@probe:demo_priced` marker, and that line of code.
fn probe_location() -> (String, String) {
    let (file, line) = marker_line("demo_priced");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let source = fs::read_to_string(&file).unwrap_or_default();
    let code = source.lines().nth(line as usize - 1).unwrap_or("").trim();
    (format!("{name}:{line}"), format!("{line} | {code}"))
}

fn step(what: &str) {
    println!("\n== {what}");
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

fn args() -> Result<Args, String> {
    const USAGE: &str = "usage: tracery-demo --bin-dir DIR --database URL --check-database URL";
    let mut bin_dir = None;
    let mut database = None;
    let mut check_database = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--bin-dir", Some(v)) => bin_dir = Some(PathBuf::from(v)),
            ("--database", Some(v)) => database = Some(v),
            ("--check-database", Some(v)) => check_database = Some(v),
            _ => return Err(USAGE.into()),
        }
    }
    Ok(Args {
        bin_dir: bin_dir.ok_or(USAGE)?,
        database: database.ok_or(USAGE)?,
        check_database: check_database.ok_or(USAGE)?,
    })
}

/// One HTTP/1.1 POST over std's TcpStream (the demo needs no HTTP client crate); returns
/// the JSON body.
fn post(addr: &str, path: &str, body: &str, traceparent: Option<&str>) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    // Longer than the freeze timeout: a frozen request answers after its resume.
    s.set_read_timeout(Some(Duration::from_secs(90)))
        .map_err(|e| e.to_string())?;
    let trace_header = traceparent.map_or(String::new(), |t| format!("traceparent: {t}\r\n"));
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{trace_header}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(body
        .lines()
        .rfind(|l| l.trim_start().starts_with('{'))
        .unwrap_or(body)
        .trim()
        .to_string())
}
