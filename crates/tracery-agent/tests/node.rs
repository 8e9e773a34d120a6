//! Node.js breakpoints against real Node processes (root: the Manager loads eBPF).
//!
//! Every test opens the inspector of a real `node` running `tests/fixtures/node/server.js`
//! with SIGUSR1. Node's inspector listens on 127.0.0.1:9229 by default, one process per
//! network namespace at a time, so the tests take turns.

use std::{
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::json;
use tracery_agent::{BreakpointSpec, Ended, Manager, Snapshot, Target};
use tracery_dwarf::CaptureLimits;
use tracery_model::{SourceLanguage, VarKind};
use tracery_tests::{http, FixtureProcess};

/// One test at a time: they share port 9229.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn server_js() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/node/server.js")
}

/// `node`, or Debian's `nodejs`.
fn node_bin() -> &'static str {
    for bin in ["node", "nodejs"] {
        if Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return bin;
        }
    }
    panic!("Node.js is not installed: run `cargo xtask setup` (it installs Debian's nodejs)");
}

/// The fixture server with `args`, and its address.
fn start_server(args: &[&str]) -> (FixtureProcess, String) {
    let mut cmd = Command::new(node_bin());
    cmd.arg(server_js()).args(args);
    FixtureProcess::spawn_service_command(cmd)
}

/// The 1-based line of `@probe:MARKER` in server.js.
fn marker(name: &str) -> u32 {
    let text = std::fs::read_to_string(server_js()).unwrap();
    let tag = format!("@probe:{name}");
    text.lines()
        .position(|l| l.contains(&tag))
        .expect("marker in server.js") as u32
        + 1
}

fn spec(id: u64, pid: u32, location: String) -> BreakpointSpec {
    BreakpointSpec {
        id,
        target: Target::Pid(pid),
        location,
        when: None,
        hit_limit: 0,
        rate_per_sec: 0,
        expires_at: None,
        limits: CaptureLimits::default(),
        scope: Default::default(),
        freeze: None,
        capture_paths: Vec::new(),
    }
}

fn discount_location() -> String {
    format!("node/server.js:{}", marker("node_discount"))
}

fn get(addr: &str, path: &str) -> String {
    let mut c = http::Connection::open(addr);
    let r = c.request(&http::Request::new("GET", path));
    assert_eq!(r.status, 200, "GET {path}");
    String::from_utf8(r.body).unwrap()
}

/// Ticks until `n` snapshots arrived (or 10 s pass), then ticks another `settle` to catch
/// any extra one.
fn collect(m: &mut Manager, n: usize, settle: Duration) -> Vec<Snapshot> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < n && Instant::now() < deadline {
        out.extend(m.tick(Duration::from_millis(20)).unwrap());
    }
    let settle_end = Instant::now() + settle;
    while Instant::now() < settle_end {
        out.extend(m.tick(Duration::from_millis(20)).unwrap());
    }
    out
}

fn port_9229_refuses() -> bool {
    TcpStream::connect_timeout(
        &"127.0.0.1:9229".parse().unwrap(),
        Duration::from_millis(300),
    )
    .is_err()
}

#[test]
fn captures_exact_values_closures_and_the_stack_three_calls_deep() {
    tracery_tests::require_root();
    let _turn = turn();
    let (server, addr) = start_server(&[]);
    let mut m = Manager::start().unwrap();
    let st = m.add(spec(1, server.pid(), discount_location())).unwrap();
    assert_eq!(st.processes, vec![(server.pid(), 1)], "{st:?}");

    assert_eq!(
        get(&addr, "/order?id=7"),
        r#"{"total":4.5,"customer":"Ada","inStock":true}"#
    );
    let snaps = collect(&mut m, 1, Duration::ZERO);
    let s = snaps.first().expect("one snapshot");
    assert_eq!(s.breakpoint_id, 1);
    assert_eq!(s.pid, server.pid());
    assert_eq!(s.language, SourceLanguage::JavaScript);
    assert_eq!(s.location.line, marker("node_discount"));
    assert!(
        s.location.file.ends_with("tests/fixtures/node/server.js"),
        "{}",
        s.location.file
    );
    assert_eq!(s.location.function, "applyDiscount");

    let vars: Vec<(String, VarKind, String, serde_json::Value, Option<String>)> = s
        .variables
        .iter()
        .map(|v| {
            (
                v.name.clone(),
                v.kind,
                v.type_name.clone(),
                v.value.to_json(),
                v.frame.clone(),
            )
        })
        .collect();
    let closure = Some("makePricer".to_owned());
    assert_eq!(
        vars,
        vec![
            (
                "customer".into(),
                VarKind::Local,
                "string".into(),
                json!("Ada"),
                None
            ),
            // Before the marked line runs: 2 × 1.5 + 1 × 3.
            (
                "total".into(),
                VarKind::Local,
                "number".into(),
                json!(6),
                None
            ),
            (
                "order".into(),
                VarKind::Arg,
                "Object".into(),
                json!({"id": 7, "customer": {"name": "Ada", "tier": "gold"},
                       "lines": [["apple", 2, 1.5], ["pear", 1, 3]]}),
                None
            ),
            (
                "items".into(),
                VarKind::Arg,
                "Array".into(),
                json!([{"sku": "apple", "qty": 2, "price": 1.5}, {"sku": "pear", "qty": 1, "price": 3}]),
                None
            ),
            (
                "stock".into(),
                VarKind::Local,
                "Map".into(),
                json!({"map": [["apple", 3], ["pear", 0]], "shown": 2, "total": 2}),
                closure.clone()
            ),
            (
                "discountRate".into(),
                VarKind::Local,
                "number".into(),
                json!(0.25),
                closure
            ),
        ]
    );
    let frames: Vec<(String, u32)> = s
        .stack
        .iter()
        .take(3)
        .map(|f| (f.function.clone(), f.line.unwrap()))
        .collect();
    let text = std::fs::read_to_string(server_js()).unwrap();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() as u32 + 1;
    assert_eq!(
        frames,
        vec![
            ("applyDiscount".into(), marker("node_discount")),
            (
                "priceOrder".into(),
                line_of("return applyDiscount(order, items);")
            ),
            (
                "handleOrder".into(),
                line_of("const priced = priceOrder(order);")
            ),
        ]
    );
    assert!(s.stack[..3]
        .iter()
        .all(|f| f.file.as_deref().is_some_and(|f| f.ends_with("server.js"))));
    // The JSON the CLI prints and the controller stores says which language it is.
    assert_eq!(s.to_json()["language"], "javascript");
}

#[test]
fn count_5_yields_exactly_5_and_delete_leaves_no_breakpoint_and_a_closed_inspector() {
    tracery_tests::require_root();
    let _turn = turn();
    let (server, addr) = start_server(&[]);
    assert!(
        port_9229_refuses(),
        "something else listens on 127.0.0.1:9229"
    );
    let mut m = Manager::start().unwrap();
    let mut limited = spec(1, server.pid(), discount_location());
    limited.hit_limit = 5;
    m.add(limited).unwrap();
    for id in 0..8 {
        get(&addr, &format!("/order?id={id}"));
    }
    let snaps = collect(&mut m, 5, Duration::from_millis(500));
    assert_eq!(snaps.len(), 5, "exactly --count 5 snapshots");
    let ids: Vec<serde_json::Value> = snaps
        .iter()
        .map(|s| {
            s.variables
                .iter()
                .find(|v| v.name == "order")
                .unwrap()
                .value
                .to_json()["id"]
                .clone()
        })
        .collect();
    assert_eq!(ids, vec![json!(0), json!(1), json!(2), json!(3), json!(4)]);
    let st = m.status_of(1).unwrap();
    assert_eq!(st.ended, Some(Ended::HitLimit));
    assert!(
        st.processes.is_empty(),
        "the V8 breakpoint is removed at the limit: {st:?}"
    );
    // Nothing else holds the process: the agent let the inspector go at the limit.
    assert!(
        wait_until(port_9229_refuses),
        "the inspector is closed at the hit limit"
    );

    // Two breakpoints; deleting one removes its V8 breakpoint, checked over CDP while the
    // other keeps the session open.
    let pid = server.pid();
    m.add(spec(2, pid, discount_location())).unwrap();
    let ping_line = {
        let text = std::fs::read_to_string(server_js()).unwrap();
        text.lines()
            .position(|l| l.contains("res.end('pong');"))
            .unwrap() as u32
            + 1
    };
    m.add(spec(3, pid, format!("server.js:{ping_line}")))
        .unwrap();
    let node = m.node().unwrap();
    let v8 = node.v8_breakpoints(2, pid);
    assert_eq!(v8.len(), 1);
    assert!(
        node.still_set_in(pid, &v8[0]).unwrap(),
        "the check sees a live breakpoint"
    );
    assert!(m.remove(2).unwrap());
    let node = m.node().unwrap();
    assert!(
        !node.still_set_in(pid, &v8[0]).unwrap(),
        "no V8 breakpoint left after delete"
    );
    assert!(
        !port_9229_refuses(),
        "breakpoint 3 still holds the inspector"
    );
    get(&addr, "/order?id=1");
    get(&addr, "/ping");
    let snaps = collect(&mut m, 1, Duration::from_millis(300));
    assert_eq!(
        snaps.iter().map(|s| s.breakpoint_id).collect::<Vec<_>>(),
        vec![3]
    );

    assert!(m.remove(3).unwrap());
    assert!(
        wait_until(port_9229_refuses),
        "port 9229 refuses connections after delete"
    );
    // The process is as it was: it serves, and SIGUSR1 opens its inspector again.
    assert_eq!(get(&addr, "/ping"), "pong");
    m.add(spec(4, pid, discount_location())).unwrap();
    get(&addr, "/order?id=3");
    assert_eq!(collect(&mut m, 1, Duration::ZERO).len(), 1);
    drop(m);
    assert!(
        wait_until(port_9229_refuses),
        "the agent's exit closes the inspector"
    );
}

#[test]
fn a_spent_rate_takes_the_breakpoint_out_of_v8_until_its_second_is_over() {
    tracery_tests::require_root();
    let _turn = turn();
    let (server, addr) = start_server(&[]);
    let pid = server.pid();
    let mut m = Manager::start().unwrap();
    let mut limited = spec(1, pid, discount_location());
    limited.rate_per_sec = 3;
    m.add(limited).unwrap();
    let v8 = m.node().unwrap().v8_breakpoints(1, pid);
    assert_eq!(v8.len(), 1);

    // The hot path, as busy as one connection makes it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, addr) = (stop.clone(), addr.clone());
        std::thread::spawn(move || {
            let mut c = http::Connection::open(&addr);
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = c.request(&http::Request::new("GET", &format!("/order?id={sent}")));
                assert_eq!(r.status, 200);
                sent += 1;
            }
            sent
        })
    };
    // The second's 3 hits, then the breakpoint is out of V8 until the second is over.
    let first = collect(&mut m, 3, Duration::from_millis(100));
    assert_eq!(first.len(), 3, "{first:#?}");
    let node = m.node().unwrap();
    assert!(
        !node.still_set_in(pid, &v8[0]).unwrap(),
        "no V8 breakpoint while the rate is spent"
    );
    // Set again each second: hits keep coming, at most 3 a second.
    let start = Instant::now();
    let mut later = Vec::new();
    while start.elapsed() < Duration::from_millis(2500) {
        later.extend(m.tick(Duration::from_millis(20)).unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = traffic.join().unwrap();
    // 2.5 s span at most 4 seconds' windows (the first one's end included).
    assert!(
        (6..=12).contains(&later.len()),
        "{} hits in 2.5 s at 3/s ({sent} requests)",
        later.len()
    );
    let st = m.status_of(1).unwrap();
    assert!(st.errors.is_empty(), "{st:?}");
    // Delete works whether the breakpoint is in V8 or quiet, and leaves none behind.
    assert!(m.remove(1).unwrap());
    assert!(wait_until(port_9229_refuses), "the inspector closes");
    eprintln!(
        "{} + {} hits of {sent} requests at --rate 3",
        first.len(),
        later.len()
    );
}

fn wait_until(f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn when_runs_in_v8_and_untranslatable_conditions_are_refused() {
    tracery_tests::require_root();
    let _turn = turn();
    let (server, addr) = start_server(&[]);
    let mut m = Manager::start().unwrap();
    let mut s = spec(1, server.pid(), discount_location());
    s.when = Some("order.id == 8 && order.customer.name == \"Ada\"".into());
    m.add(s).unwrap();
    for id in [7, 8, 9] {
        get(&addr, &format!("/order?id={id}"));
    }
    let snaps = collect(&mut m, 1, Duration::from_millis(300));
    assert_eq!(snaps.len(), 1);
    let order = snaps[0]
        .variables
        .iter()
        .find(|v| v.name == "order")
        .unwrap();
    assert_eq!(order.value.to_json()["id"], 8);

    let mut bad = spec(2, server.pid(), discount_location());
    bad.when = Some("order.paid < true".into());
    let err = tracery_model::error::chain(&m.add(bad).unwrap_err());
    assert!(
        err.contains("cannot be evaluated in JavaScript: only == and != compare with true"),
        "{err}"
    );
}

#[test]
fn errors_say_what_is_wrong_and_what_to_do() {
    tracery_tests::require_root();
    let _turn = turn();
    let (server, _addr) = start_server(&[]);
    let mut m = Manager::start().unwrap();
    let err_of =
        |m: &mut Manager, s: BreakpointSpec| tracery_model::error::chain(&m.add(s).unwrap_err());

    // A line without code: the nearest lines with code are listed.
    let text = std::fs::read_to_string(server_js()).unwrap();
    let blank = text
        .lines()
        .position(|l| l.contains("const applyDiscount = makePricer(0.25);"))
        .unwrap() as u32
        + 2;
    assert_eq!(text.lines().nth(blank as usize - 1), Some(""));
    let err = err_of(&mut m, spec(1, server.pid(), format!("server.js:{blank}")));
    assert!(
        err.contains(&format!(
            "server.js:{blank} has no code in Node process {}",
            server.pid()
        )),
        "{err}"
    );
    let listed: Vec<u32> = err
        .rsplit("lines with code nearby: ")
        .next()
        .unwrap()
        .split(", ")
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert!(
        listed.contains(&(blank - 1)) && listed.contains(&(blank + 2)),
        "{err}"
    );
    for l in listed {
        let code = text.lines().nth(l as usize - 1).unwrap().trim();
        assert!(
            !code.is_empty() && !code.starts_with("//"),
            "line {l} has code: {code:?}"
        );
    }

    // No script matches: similar script URLs are listed.
    let err = err_of(&mut m, spec(2, server.pid(), "app/serverx.js:3".into()));
    assert!(err.contains("no script of Node process"), "{err}");
    assert!(
        err.contains(&format!(
            "file://{}",
            std::fs::canonicalize(server_js()).unwrap().display()
        )),
        "{err}"
    );

    // A .js location on a process that is not Node.
    let sleeper = FixtureProcess::spawn("c-O0", &["serve"]);
    let err = err_of(&mut m, spec(3, sleeper.pid(), "server.js:3".into()));
    assert!(
        err.contains(&format!("PID {} runs", sleeper.pid())) && err.contains("not Node.js"),
        "{err}"
    );
}

#[test]
fn a_process_that_refuses_sigusr1_or_finds_its_port_taken_is_told_why() {
    tracery_tests::require_root();
    let _turn = turn();
    let mut m = Manager::start().unwrap();

    // SIGUSR1 taken by the program itself: the inspector never opens.
    let (held, _) = start_server(&["--hold-usr1"]);
    let err =
        tracery_model::error::chain(&m.add(spec(1, held.pid(), discount_location())).unwrap_err());
    assert!(
        err.contains("did not open its inspector within 3s of SIGUSR1"),
        "{err}"
    );
    assert!(
        err.contains("--disable-sigusr1") && err.contains("--inspect=127.0.0.1:0"),
        "{err}"
    );
    drop(held);

    // No handler for SIGUSR1 at all: the signal would kill it, so none is sent.
    let (dropped, dropped_addr) = start_server(&["--drop-usr1"]);
    let err = tracery_model::error::chain(
        &m.add(spec(4, dropped.pid(), discount_location()))
            .unwrap_err(),
    );
    assert!(
        err.contains("it does not handle SIGUSR1 (the signal would terminate it)"),
        "{err}"
    );
    // Still running: no signal reached it.
    get(&dropped_addr, "/ping");
    drop(dropped);

    // `--disable-sigusr1` exists from Node 22.14/23.7: said before any signal is sent.
    let has_flag = Command::new(node_bin())
        .args(["--disable-sigusr1", "-e", "0"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_flag {
        let (off, _) = start_server_with_node_args(&["--disable-sigusr1"]);
        let err = tracery_model::error::chain(
            &m.add(spec(2, off.pid(), discount_location())).unwrap_err(),
        );
        assert!(err.contains("it runs with --disable-sigusr1"), "{err}");
    } else {
        eprintln!("SKIPPED --disable-sigusr1: this Node does not have the flag (Node 22.14+ has it); the --drop-usr1 case above covers the state it leaves (no SIGUSR1 handler), and --hold-usr1 a process whose SIGUSR1 does not open the inspector");
    }

    // Port 9229 taken by another process's socket.
    let taken = TcpListener::bind("127.0.0.1:9229").expect("port 9229 free for the test");
    let (server, _) = start_server(&[]);
    let err = tracery_model::error::chain(
        &m.add(spec(3, server.pid(), discount_location()))
            .unwrap_err(),
    );
    assert!(
        err.contains(&format!("port 9229 is taken by PID {}", std::process::id())),
        "{err}"
    );
    drop(taken);
}

fn start_server_with_node_args(node_args: &[&str]) -> (FixtureProcess, String) {
    let mut cmd = Command::new(node_bin());
    cmd.args(node_args).arg(server_js());
    FixtureProcess::spawn_service_command(cmd)
}

fn fixture_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/node")
        .join(rel)
}

fn marker_in(rel: &str, name: &str) -> u32 {
    let text = std::fs::read_to_string(fixture_file(rel)).unwrap();
    let tag = format!("@probe:{name}");
    text.lines().position(|l| l.contains(&tag)).expect("marker") as u32 + 1
}

#[test]
fn es_modules_capture_and_their_inspector_closes_on_delete() {
    tracery_tests::require_root();
    let _turn = turn();
    let mut cmd = Command::new(node_bin());
    cmd.arg(fixture_file("esm.mjs"));
    let (server, addr) = FixtureProcess::spawn_service_command(cmd);
    let mut m = Manager::start().unwrap();
    let line = marker_in("esm.mjs", "esm_total");
    m.add(spec(1, server.pid(), format!("esm.mjs:{line}")))
        .unwrap();
    assert_eq!(get(&addr, "/sum?n=4"), "sum=10");
    let snaps = collect(&mut m, 1, Duration::ZERO);
    let vars: Vec<(String, VarKind, serde_json::Value)> = snaps[0]
        .variables
        .iter()
        .map(|v| (v.name.clone(), v.kind, v.value.to_json()))
        .collect();
    assert_eq!(
        vars,
        vec![
            ("parts".into(), VarKind::Local, json!([1, 2, 3, 4])),
            ("n".into(), VarKind::Arg, json!(4)),
            ("label".into(), VarKind::Arg, json!("sum")),
        ]
    );
    assert_eq!(snaps[0].stack[0].function, "total");
    assert!(m.remove(1).unwrap());
    assert!(
        wait_until(port_9229_refuses),
        "inspector.close() works in an ES module process too"
    );
    assert_eq!(get(&addr, "/sum?n=2"), "sum=3");
}

#[test]
fn typescript_lines_resolve_through_the_source_map() {
    tracery_tests::require_root();
    let _turn = turn();
    let mut cmd = Command::new(node_bin());
    cmd.arg(fixture_file("ts/dist/price.js"));
    let (server, addr) = FixtureProcess::spawn_service_command(cmd);
    let mut m = Manager::start().unwrap();
    let line = marker_in("ts/src/price.ts", "ts_cost");
    m.add(spec(1, server.pid(), format!("src/price.ts:{line}")))
        .unwrap();
    assert_eq!(get(&addr, "/"), "4.5");
    let snaps = collect(&mut m, 1, Duration::ZERO);
    let s = &snaps[0];
    assert!(
        s.location
            .file
            .ends_with("tests/fixtures/node/ts/src/price.ts"),
        "{}",
        s.location.file
    );
    assert_eq!(s.location.line, line);
    let vars: Vec<(String, serde_json::Value)> = s
        .variables
        .iter()
        .map(|v| (v.name.clone(), v.value.to_json()))
        .collect();
    assert_eq!(
        vars,
        vec![
            ("count".into(), json!(3)),
            (
                "lines".into(),
                json!([{"sku": "apple", "qty": 2}, {"sku": "pear", "qty": 1}])
            ),
            ("rate".into(), json!(1.5)),
        ]
    );
}
