//! The hold keeper is not a single point of loss: `tracery-hold-keeper` is SIGKILLed
//! while it holds a request of the demo's orders service (its query to PostgreSQL), or
//! while it is writing a large held message back, and every held byte still goes out,
//! in order, exactly once.
//!
//! Needs root, the PostgreSQL that `cargo xtask test` starts, and `demo-orders`.

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpListener,
    process::{Command, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use tracery_agent::{
    freeze::{FreezeSpec, ReleaseReason, ResumeOutcome, TraceId, TraceScope},
    BreakpointSpec, Manager, Target,
};
use tracery_dwarf::CaptureLimits;
use tracery_tests::{
    demo::DemoServices,
    held::{checkout, fresh_trace, orders_bin, psql, rows_of, TestCgroup, PG_TCP},
};

/// The keeper is found as this process's child: one test at a time has one.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn freeze_spec(pid: u32, trace: &str, timeout: Duration) -> BreakpointSpec {
    let (file, line) = tracery_tests::marker_line("demo_priced");
    BreakpointSpec {
        id: 1,
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

fn tick_until(m: &mut Manager, limit: Duration, what: &str, done: impl Fn(&mut Manager) -> bool) {
    let until = Instant::now() + limit;
    while !done(m) {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        m.tick(Duration::from_millis(20)).unwrap();
    }
}

/// Live `tracery-hold-keeper` processes started by this process.
fn keepers() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<u32>().ok()));
        if comm.ends_with("(tracery-hold-ke") && ppid == Some(me) && state != Some("Z") {
            out.push(pid);
        }
    }
    out
}

/// SIGKILLs the one keeper, and ticks for a while. Returns the keeper the agent started
/// instead, if it did (checked last by the tests, after what matters to the request).
fn kill_keeper(m: &mut Manager) -> Option<u32> {
    let old = keepers();
    assert_eq!(old.len(), 1, "one keeper runs: {old:?}");
    // SAFETY: kill(2) on a child process of this test; no pointers.
    assert_eq!(unsafe { libc::kill(old[0] as i32, libc::SIGKILL) }, 0);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        m.tick(Duration::from_millis(20)).unwrap();
        let new = keepers();
        if !new.is_empty() && new != old {
            assert_eq!(new.len(), 1, "{new:?}");
            return Some(new[0]);
        }
    }
    None
}

/// Joins `request`, failing (not hanging) after `limit`.
fn join_within<T>(request: thread::JoinHandle<T>, limit: Duration, what: &str) -> T {
    let until = Instant::now() + limit;
    while !request.is_finished() {
        assert!(
            Instant::now() < until,
            "{what} did not complete in {limit:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    request.join().unwrap()
}

/// Orders frozen for a new trace, that trace's request sent, and its first message to
/// PostgreSQL held. Returns the agent, the trace, the request, and the client port of the
/// held PostgreSQL connection.
struct HeldQuery {
    services: DemoServices,
    _cgroup: TestCgroup,
    m: Manager,
    trace: String,
    request: thread::JoinHandle<(u16, String, Duration)>,
    pg_port: u16,
}

fn held_query(tag: u8, name: &str, timeout: Duration) -> HeldQuery {
    let services = DemoServices::start(&orders_bin(), PG_TCP);
    let cgroup = TestCgroup::new(name);
    cgroup.adopt(services.orders.process.pid());
    let trace = fresh_trace(tag);
    let mut m = Manager::start().unwrap();
    m.add(freeze_spec(services.orders.process.pid(), &trace, timeout))
        .unwrap();
    let (g, tr) = (services.gateway.addr.clone(), trace.clone());
    let request = thread::spawn(move || checkout(&g, &tr, "00f067aa0ba902b7"));
    let t = TraceId::parse(&trace).unwrap();
    let is_pg = |h: &tracery_agent::freeze::HeldMessage| {
        h.trace_id == t && h.peer.is_some_and(|p| p.port() == 5432)
    };
    tick_until(&mut m, Duration::from_secs(20), "a held query", |m| {
        m.held().iter().any(is_pg)
    });
    let pg_port = m
        .held()
        .iter()
        .find(|h| is_pg(h))
        .unwrap()
        .local
        .unwrap()
        .port();
    HeldQuery {
        services,
        _cgroup: cgroup,
        m,
        trace,
        request,
        pg_port,
    }
}

/// The PostgreSQL connection orders' held query was on is still up, and orders goes on
/// working: a connection left half-written would have been closed by the server.
fn connection_still_usable(q: &HeldQuery) {
    let alive = psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE client_port = {}",
        q.pg_port
    ));
    assert_eq!(alive, "1", "the held connection is still open");
    for i in 0..3 {
        let trace = fresh_trace(0xc0 + i);
        let (status, body, _) = checkout(&q.services.gateway.addr, &trace, "00f067aa0ba902b7");
        assert_eq!(status, 200, "{body}");
        assert_eq!(rows_of(&trace), 1);
    }
    let alive = psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE client_port = {}",
        q.pg_port
    ));
    assert_eq!(alive, "1", "the held connection is still open");
}

#[test]
fn a_killed_keeper_loses_no_held_query_on_resume() {
    tracery_tests::require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut q = held_query(0x8b, "keeper-resume", Duration::from_secs(60));
    let t = TraceId::parse(&q.trace).unwrap();
    let new_keeper = kill_keeper(&mut q.m);

    // Still held, by the new keeper.
    for _ in 0..10 {
        q.m.tick(Duration::from_millis(50)).unwrap();
    }
    assert!(!q.request.is_finished(), "the request must still wait");
    assert_eq!(rows_of(&q.trace), 0, "nothing reached PostgreSQL yet");

    match q.m.resume(t) {
        ResumeOutcome::Resumed { held: Some(r), .. } => {
            assert!(r.bytes > 0 && r.dropped_bytes == 0, "{r:?}");
            assert_eq!(r.reason, ReleaseReason::Resumed);
        }
        other => panic!("{other:?}"),
    }
    let request = std::mem::replace(
        &mut q.request,
        thread::spawn(|| (0, String::new(), Duration::ZERO)),
    );
    let (status, body, _) = join_within(request, Duration::from_secs(30), "the resumed request");
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows_of(&q.trace), 1, "one row: not lost, not sent twice");
    connection_still_usable(&q);
    assert!(q.m.held().is_empty());
    assert!(new_keeper.is_some(), "the agent started another keeper");
}

#[test]
fn a_killed_keeper_loses_no_held_query_at_the_deadline() {
    tracery_tests::require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut q = held_query(0x9b, "keeper-deadline", Duration::from_secs(4));
    let new_keeper = kill_keeper(&mut q.m);
    assert!(!q.request.is_finished(), "the request must still wait");
    tick_until(
        &mut q.m,
        Duration::from_secs(15),
        "the deadline release",
        |m| m.held().is_empty() && m.frozen().is_empty(),
    );
    let request = std::mem::replace(
        &mut q.request,
        thread::spawn(|| (0, String::new(), Duration::ZERO)),
    );
    let (status, body, took) =
        join_within(request, Duration::from_secs(30), "the released request");
    assert_eq!(status, 200, "{body}");
    assert!(
        took >= Duration::from_secs(3),
        "held until the deadline: {took:?}"
    );
    assert_eq!(rows_of(&q.trace), 1, "one row: not lost, not sent twice");
    connection_still_usable(&q);
    assert!(new_keeper.is_some(), "the agent started another keeper");
}

/// Connects to ADDR once a line comes on stdin; at the next line sends one message of
/// HEADER then BODY_LEN numbered bytes; at the next, sends TAIL.
const BIG_SENDER: &str = r#"
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
header, body_len, tail = sys.argv[2].encode(), int(sys.argv[3]), sys.argv[4].encode()
body = b"".join(b"%09d\n" % i for i in range(body_len // 10))
sys.stdin.readline()
s = socket.create_connection((host, int(port)))
sys.stdin.readline()
s.sendall(header + body)
sys.stdin.readline()
s.sendall(tail)
sys.stdin.readline()
"#;

#[test]
fn a_keeper_killed_mid_release_goes_on_from_the_first_unwritten_byte() {
    tracery_tests::require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut q = held_query(0xab, "keeper-midway", Duration::from_secs(60));
    let t = TraceId::parse(&q.trace).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let header = format!(
        "POST /big HTTP/1.1\r\nHost: x\r\ntraceparent: 00-{}-00f067aa0ba902b7-01\r\n\r\n",
        q.trace
    );
    // Far more than the socket buffers take while the peer does not read.
    let body_len = 8 << 20;
    let body: Vec<u8> = (0..body_len / 10)
        .flat_map(|i| format!("{i:09}\n").into_bytes())
        .collect();
    let mut message = header.clone().into_bytes();
    message.extend_from_slice(&body);
    let tail = "tail after the held message\n";
    let mut sender = Command::new("python3")
        .args(["-c", BIG_SENDER])
        .arg(listener.local_addr().unwrap().to_string())
        .args([&header, &body_len.to_string(), tail])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    q._cgroup.adopt(sender.id());
    let mut go = sender.stdin.take().unwrap();
    go.write_all(b"connect\n").unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    go.write_all(b"send\n").unwrap();
    tick_until(&mut q.m, Duration::from_secs(20), "the big hold", |m| {
        m.held()
            .iter()
            .filter(|h| h.pid == sender.id())
            .map(|h| h.bytes)
            .sum::<u64>()
            == message.len() as u64
    });

    // The release fills the socket buffers and waits for the peer; kill it there, then
    // read, while the agent starts another keeper that goes on.
    let len = message.len();
    let reader = thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(10);
        let mut probe = [0u8; 1];
        conn.set_nonblocking(true).unwrap();
        while !matches!(conn.peek(&mut probe), Ok(1)) {
            assert!(Instant::now() < until, "the release never began");
            thread::sleep(Duration::from_millis(10));
        }
        thread::sleep(Duration::from_millis(300));
        let k = keepers();
        assert_eq!(k.len(), 1, "{k:?}");
        // SAFETY: kill(2) on a child process of this test; no pointers.
        assert_eq!(unsafe { libc::kill(k[0] as i32, libc::SIGKILL) }, 0);
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut got = vec![0u8; len];
        conn.read_exact(&mut got).unwrap();
        (conn, got)
    });
    let released = match q.m.resume(t) {
        ResumeOutcome::Resumed { held: Some(r), .. } => r,
        other => panic!("{other:?}"),
    };
    let (mut conn, got) = join_within(reader, Duration::from_secs(40), "the release");
    assert_eq!(released.dropped_bytes, 0, "{released:?}");
    // Byte for byte: a repeat or a gap would shift the numbered lines.
    let first_diff = got.iter().zip(&message).position(|(a, b)| a != b);
    assert_eq!(
        first_diff, None,
        "the held message arrived altered from there"
    );
    go.write_all(b"tail\n").unwrap();
    let mut after = vec![0u8; tail.len()];
    conn.read_exact(&mut after).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&after),
        tail,
        "then the next message"
    );
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut extra = [0u8; 64];
    match conn.read(&mut extra) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("nothing more may arrive: {other:?}"),
    }
    go.write_all(b"done\n").unwrap();
    assert!(sender.wait().unwrap().success());
    let request = std::mem::replace(
        &mut q.request,
        thread::spawn(|| (0, String::new(), Duration::ZERO)),
    );
    let (status, body, _) = join_within(request, Duration::from_secs(30), "the orders request");
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows_of(&q.trace), 1);
}
