//! Message holds on real processes: the demo's orders service (Rust, tokio, PostgreSQL over
//! TCP) is frozen at a breakpoint. Its threads are not stopped (tokio), so the freeze is
//! the hold: its query to PostgreSQL and its call to payments must not leave until resume.
//!
//! Needs root, the PostgreSQL that `cargo xtask test` starts (the demo database over TCP
//! loopback) and the `demo-orders` binary (built here when missing).

use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use tracery_agent::{
    freeze::{FreezeSpec, ReleaseReason, ResumeOutcome, Suspension, TraceId, TraceScope},
    BreakpointSpec, Manager, Target,
};
use tracery_dwarf::CaptureLimits;
use tracery_tests::{
    demo::DemoServices,
    held::{
        checkout, fresh_trace, lines_with, orders_bin, psql, rows_of, without_id, TestCgroup,
        PG_TCP,
    },
};

fn freeze_spec(id: u64, pid: u32, trace: &str, timeout: Duration) -> BreakpointSpec {
    let (file, line) = tracery_tests::marker_line("demo_priced");
    BreakpointSpec {
        id,
        target: Target::Pid(pid),
        location: format!("{}:{line}", file.file_name().unwrap().to_string_lossy()),
        when: None,
        hit_limit: 1,
        rate_per_sec: 0,
        expires_at: None,
        limits: CaptureLimits::default(),
        scope: TraceScope {
            trace_id: Some(TraceId::parse(trace).unwrap()),
            header: None,
        },
        freeze: Some(FreezeSpec { timeout }),
        capture_paths: Vec::new(),
    }
}

/// Ticks `m` until `done` holds, or panics after `limit`.
fn tick_until(m: &mut Manager, limit: Duration, what: &str, done: impl Fn(&mut Manager) -> bool) {
    let until = Instant::now() + limit;
    while !done(m) {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        m.tick(Duration::from_millis(20)).unwrap();
    }
}

#[test]
fn a_frozen_trace_sends_nothing_until_resume() {
    tracery_tests::require_root();
    let mut services = DemoServices::start(&orders_bin(), PG_TCP);
    let cg = TestCgroup::new("hold");
    cg.adopt(services.orders.process.pid());
    let gateway = services.gateway.addr.clone();

    // The unfrozen run, for comparison.
    let (status, unfrozen, _) = checkout(&gateway, &"1".repeat(32), "00f067aa0ba902b7");
    assert_eq!(status, 200, "{unfrozen}");

    let trace_owned = fresh_trace(0x4b);
    let trace = trace_owned.as_str();
    let mut m = Manager::start().unwrap();
    let status = m
        .add(freeze_spec(
            1,
            services.orders.process.pid(),
            trace,
            Duration::from_secs(60),
        ))
        .unwrap();
    // Only the note that tokio is held rather than stopped.
    assert!(
        status
            .errors
            .iter()
            .all(|(_, e)| e.contains("holding its messages")),
        "{:?}",
        status.errors
    );
    let _ = lines_with(&mut services.payments.process, trace);

    let (g, tr) = (gateway.clone(), trace_owned.clone());
    let frozen_req = thread::spawn(move || checkout(&g, &tr, "00f067aa0ba902b7"));
    let t = TraceId::parse(trace).unwrap();
    tick_until(
        &mut m,
        Duration::from_secs(20),
        "T frozen with a held message",
        |m| m.frozen().iter().any(|f| f.trace_id == t) && !m.held().is_empty(),
    );
    let f = m.frozen().into_iter().find(|f| f.trace_id == t).unwrap();
    assert!(
        matches!(&f.suspension, Suspension::Running(why) if why.contains("holding its messages")),
        "tokio is not stopped, it is held: {:?}",
        f.suspension
    );

    // Other requests flow through the same processes meanwhile.
    for i in 0..5 {
        let (s, body, took) = checkout(
            &gateway,
            &format!("{:032x}", 0xabc0 + i),
            "00f067aa0ba902b7",
        );
        assert_eq!(s, 200, "{body}");
        assert!(took < Duration::from_secs(5), "other request took {took:?}");
    }
    for _ in 0..20 {
        m.tick(Duration::from_millis(50)).unwrap();
    }
    assert!(!frozen_req.is_finished(), "the frozen request must wait");
    assert_eq!(
        rows_of(trace),
        0,
        "PostgreSQL must not have received T's INSERT"
    );
    let active = psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{trace}%' AND pid <> pg_backend_pid()"
    ));
    assert_eq!(active, "0");
    assert_eq!(
        lines_with(&mut services.payments.process, trace),
        0,
        "payments must not have received T"
    );
    let held = m.held();
    let pg: Vec<_> = held
        .iter()
        .filter(|h| h.peer.is_some_and(|p| p.port() == 5432))
        .collect();
    assert!(!pg.is_empty(), "T's query is held: {held:#?}");
    assert!(
        pg.iter()
            .all(|h| h.trace_id == t && h.pid == services.orders.process.pid()),
        "{held:#?}"
    );
    // sqlx tests a pooled connection before handing it out: T's first message to
    // PostgreSQL is that check (a Sync), and everything after it waits behind it.
    assert!(pg.iter().all(|h| h.bytes > 0 && !h.behind), "{held:#?}");

    match m.resume(t) {
        ResumeOutcome::Resumed { held: Some(r), .. } => {
            assert!(r.bytes > 0 && r.dropped_bytes == 0, "{r:?}");
            assert_eq!(r.reason, ReleaseReason::Resumed);
        }
        other => panic!("{other:?}"),
    }
    let (status, resumed, _) = frozen_req.join().unwrap();
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(
        without_id(&resumed),
        without_id(&unfrozen),
        "same response but the id"
    );
    assert_eq!(rows_of(trace), 1);
    assert_eq!(lines_with(&mut services.payments.process, trace), 1);
    assert!(m.held().is_empty());
    assert!(matches!(m.resume(t), ResumeOutcome::NotFrozen(Some(_))));
}

/// Orders in a cgroup of its own, frozen at `pricing.rs:46` for a new trace with
/// `timeout`, and that trace's request sent and held.
struct HeldRequest {
    _services: DemoServices,
    _cgroup: TestCgroup,
    m: Manager,
    trace: String,
    request: thread::JoinHandle<(u16, String, Duration)>,
}

fn held_request(tag: u8, name: &str, timeout: Duration) -> HeldRequest {
    let services = DemoServices::start(&orders_bin(), PG_TCP);
    let cgroup = TestCgroup::new(name);
    cgroup.adopt(services.orders.process.pid());
    let trace = fresh_trace(tag);
    let mut m = Manager::start().unwrap();
    m.add(freeze_spec(
        1,
        services.orders.process.pid(),
        &trace,
        timeout,
    ))
    .unwrap();
    let (g, tr) = (services.gateway.addr.clone(), trace.clone());
    let request = thread::spawn(move || checkout(&g, &tr, "00f067aa0ba902b7"));
    let t = TraceId::parse(&trace).unwrap();
    tick_until(&mut m, Duration::from_secs(20), "a held message", |m| {
        m.held().iter().any(|h| h.trace_id == t)
    });
    HeldRequest {
        _services: services,
        _cgroup: cgroup,
        m,
        trace,
        request,
    }
}

#[test]
fn held_messages_go_out_at_the_deadline() {
    tracery_tests::require_root();
    let mut h = held_request(0x5b, "deadline", Duration::from_secs(2));
    tick_until(
        &mut h.m,
        Duration::from_secs(10),
        "the deadline release",
        |m| m.held().is_empty() && m.frozen().is_empty(),
    );
    let (status, body, took) = h.request.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        took >= Duration::from_millis(1500),
        "held until the deadline: {took:?}"
    );
    assert_eq!(rows_of(&h.trace), 1);
}

#[test]
fn a_dropped_agent_lets_held_messages_go() {
    tracery_tests::require_root();
    let h = held_request(0x6b, "drop", Duration::from_secs(120));
    drop(h.m);
    let (status, body, took) = h.request.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert_eq!(rows_of(&h.trace), 1);
}

/// Sends what it reads: waits for a line on stdin, connects to ADDR, then sends each
/// further argument, one per line read.
const SENDER: &str = r#"
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
sys.stdin.readline()
s = socket.create_connection((host, int(port)))
for msg in sys.argv[2:]:
    sys.stdin.readline()
    s.sendall(msg.encode())
sys.stdin.readline()
"#;

/// Reads from `conn` until `len` bytes came or it has been quiet for `quiet`.
fn read_some(conn: &mut TcpStream, len: usize, quiet: Duration) -> Vec<u8> {
    conn.set_read_timeout(Some(quiet)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < len {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("{e}"),
        }
    }
    got
}

#[test]
fn a_message_whose_header_carries_a_frozen_trace_is_held_whoever_sends_it() {
    tracery_tests::require_root();
    let mut h = held_request(0x7b, "outbound", Duration::from_secs(60));
    let t = TraceId::parse(&h.trace).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = format!(
        "GET /other HTTP/1.1\r\nHost: x\r\ntraceparent: 00-{}-00f067aa0ba902b7-01\r\n\r\n",
        "2".repeat(32)
    );
    let frozen = format!(
        "GET /outbound HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nTraceParent: 00-{}-00f067aa0ba902b7-01\r\n\r\n",
        h.trace
    );
    // A process nobody tracks: the kernel knows no trace for it; only the header tells.
    let mut sender = Command::new("python3")
        .args(["-c", SENDER])
        .arg(listener.local_addr().unwrap().to_string())
        .args([&other, &frozen])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    h._cgroup.adopt(sender.id());
    let mut go = sender.stdin.take().unwrap();
    go.write_all(b"connect\n").unwrap();
    let (mut conn, _) = listener.accept().unwrap();

    // Another trace's message goes straight out.
    go.write_all(b"send\n").unwrap();
    let got = read_some(&mut conn, other.len(), Duration::from_secs(5));
    assert_eq!(String::from_utf8_lossy(&got), other);

    go.write_all(b"send\n").unwrap();
    tick_until(
        &mut h.m,
        Duration::from_secs(10),
        "the sender's hold",
        |m| m.held().iter().any(|x| x.pid == sender.id()),
    );
    let held = h.m.held();
    let mine: Vec<_> = held.iter().filter(|x| x.pid == sender.id()).collect();
    assert_eq!(mine.len(), 1, "{held:#?}");
    assert_eq!(mine[0].trace_id, t);
    assert_eq!(mine[0].bytes, frozen.len() as u64);
    assert_eq!(mine[0].first_line, "GET /outbound HTTP/1.1");
    assert!(
        read_some(&mut conn, 1, Duration::from_millis(300)).is_empty(),
        "nothing of the frozen trace's message may arrive before resume"
    );

    assert!(matches!(h.m.resume(t), ResumeOutcome::Resumed { .. }));
    let got = read_some(&mut conn, frozen.len(), Duration::from_secs(5));
    assert_eq!(
        String::from_utf8_lossy(&got),
        frozen,
        "released byte for byte"
    );
    go.write_all(b"done\n").unwrap();
    assert!(sender.wait().unwrap().success());
    let (status, body, _) = h.request.join().unwrap();
    assert_eq!(status, 200, "{body}");
}
