//! Freezing one request at a breakpoint, against the real C HTTP server fixture (root:
//! loads eBPF and ptrace-seizes the server's threads).

use std::{
    io::{Read, Write},
    net::TcpStream,
    thread,
    time::{Duration, Instant},
};

use tracery_agent::{
    freeze::{
        FreezeEvent, FreezeSpec, ReleaseReason, ResumeOutcome, Suspension, TraceId, TraceScope,
    },
    BreakpointSpec, Manager, Target,
};
use tracery_dwarf::CaptureLimits;
use tracery_tests::FixtureProcess;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
/// How long the Go test keeps a goroutine's thread stopped (the issue asks for 30 s).
const GO_FREEZE: Duration = Duration::from_secs(30);

/// Sends one request on a fresh connection and returns the raw response bytes.
fn request(addr: &str, path: &str, traceparent: Option<&str>, body: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect to httpd");
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let tp = traceparent
        .map(|t| format!("traceparent: 00-{t}-b7ad6b7169203331-01\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\n{tp}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read the response");
    out
}

fn freeze_spec(pid: u32, timeout: Duration) -> BreakpointSpec {
    let (file, line) = tracery_tests::marker_line("httpd_handle");
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
            trace_id: Some(TraceId::parse(TRACE).unwrap()),
            header: None,
        },
        freeze: Some(FreezeSpec { timeout }),
        capture_paths: Vec::new(),
    }
}

/// Ticks until a request of `TRACE` is frozen (or 20 s pass).
fn wait_frozen(m: &mut Manager) -> tracery_agent::freeze::FrozenThread {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        m.tick(Duration::from_millis(20)).unwrap();
        if let Some(f) = m.frozen().into_iter().next() {
            return f;
        }
    }
    panic!("nothing frozen within 20 s: {:?}", m.status());
}

/// Ticks until frozen request `f`'s thread is stopped (or 10 s pass, which fails).
fn wait_stopped(
    m: &mut Manager,
    mut f: tracery_agent::freeze::FrozenThread,
) -> tracery_agent::freeze::FrozenThread {
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.suspension != Suspension::Stopped && Instant::now() < deadline {
        m.tick(Duration::from_millis(20)).unwrap();
        f = m.frozen().into_iter().next().expect("still frozen");
    }
    assert_eq!(f.suspension, Suspension::Stopped, "{f:?}");
    f
}

/// The scheduler state of a thread (`t`: stopped by its tracer), or `-` once it exited.
fn thread_state(pid: u32, tid: u32) -> char {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
        return '-';
    };
    // The state follows the parenthesised command name.
    stat.rsplit_once(") ").unwrap().1.chars().next().unwrap()
}

#[test]
fn a_frozen_request_stops_its_thread_only_and_resumes_intact() {
    tracery_tests::require_root();
    let (server, addr) = FixtureProcess::spawn_service(&tracery_tests::fixture("c-httpd"), &["0"]);
    let unfrozen = request(&addr, "/orders/7", Some(TRACE), "hello");
    let mut m = Manager::start().unwrap();
    m.add(freeze_spec(server.pid(), Duration::from_secs(60)))
        .unwrap();

    let a = addr.clone();
    let frozen_req = thread::spawn(move || {
        let t = Instant::now();
        (request(&a, "/orders/7", Some(TRACE), "hello"), t.elapsed())
    });
    let f = wait_frozen(&mut m);
    assert_eq!(f.trace_id.to_string(), TRACE);
    assert_eq!(f.suspension, Suspension::Stopped, "{f:?}");
    assert_eq!(
        thread_state(server.pid(), f.tid),
        't',
        "the thread is in a trace stop"
    );

    // Other requests, other threads of the same process: untouched.
    for i in 0..20 {
        let t = Instant::now();
        let r = request(&addr, &format!("/other/{i}"), None, "x");
        assert!(
            r.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&r)
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "slow: {:?}",
            t.elapsed()
        );
    }
    assert_eq!(thread_state(server.pid(), f.tid), 't', "still stopped");

    // The stopped thread's locals, read live.
    let v = m.eval(f.trace_id, "body_len").unwrap();
    assert_eq!(v, serde_json::json!(5), "{v}");
    let path = m.eval(f.trace_id, "path").unwrap();
    assert!(path.to_string().contains("/orders/7"), "{path}");
    let err = m.eval(f.trace_id, "no_such_variable").unwrap_err();
    assert!(
        err.to_string().contains("body_len"),
        "lists visible names: {err}"
    );

    thread::sleep(Duration::from_millis(300));
    assert!(!frozen_req.is_finished(), "the frozen request must wait");
    match m.resume(f.trace_id) {
        ResumeOutcome::Resumed { threads, .. } => assert_eq!(threads.len(), 1, "{threads:?}"),
        other => panic!("{other:?}"),
    }
    let (resumed, took) = frozen_req.join().unwrap();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_eq!(resumed, unfrozen, "byte-identical to the unfrozen run");
    match m.resume(f.trace_id) {
        ResumeOutcome::NotFrozen(Some(last)) => assert_eq!(last.reason, ReleaseReason::Resumed),
        other => panic!("second resume must be a no-op: {other:?}"),
    }
    let events = m.take_freeze_events();
    assert!(
        matches!(events.first(), Some(FreezeEvent::Frozen(_))),
        "{events:?}"
    );
    assert!(
        matches!(events.last(), Some(FreezeEvent::Released(_))),
        "{events:?}"
    );
}

#[test]
fn the_deadline_releases_a_frozen_request_by_itself() {
    tracery_tests::require_root();
    let (server, addr) = FixtureProcess::spawn_service(&tracery_tests::fixture("c-httpd"), &["0"]);
    let mut m = Manager::start().unwrap();
    m.add(freeze_spec(server.pid(), Duration::from_secs(2)))
        .unwrap();
    let a = addr.clone();
    let req = thread::spawn(move || request(&a, "/late", Some(TRACE), "abc"));
    let f = wait_frozen(&mut m);
    assert_eq!(f.suspension, Suspension::Stopped, "{f:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.frozen().is_empty() && Instant::now() < deadline {
        m.tick(Duration::from_millis(50)).unwrap();
    }
    assert!(m.frozen().is_empty(), "auto-resume at the deadline");
    let released = m
        .take_freeze_events()
        .into_iter()
        .find_map(|e| match e {
            FreezeEvent::Released(r) => Some(r),
            _ => None,
        })
        .expect("a release event");
    assert_eq!(released.reason, ReleaseReason::Deadline);
    let r = req.join().unwrap();
    assert!(
        r.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&r)
    );
}

#[test]
fn dropping_the_manager_lets_frozen_threads_go() {
    tracery_tests::require_root();
    let (server, addr) = FixtureProcess::spawn_service(&tracery_tests::fixture("c-httpd"), &["0"]);
    let mut m = Manager::start().unwrap();
    m.add(freeze_spec(server.pid(), Duration::from_secs(60)))
        .unwrap();
    let a = addr.clone();
    let req = thread::spawn(move || request(&a, "/bye", Some(TRACE), "abc"));
    let f = wait_frozen(&mut m);
    assert_eq!(f.suspension, Suspension::Stopped);
    drop(m);
    let r = req.join().unwrap();
    assert!(
        r.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert_ne!(thread_state(server.pid(), f.tid), 't', "detached");
}

#[test]
fn a_go_goroutine_stops_at_its_next_system_call_and_the_gc_keeps_running_for_30_s() {
    tracery_tests::require_root();
    let (server, addr) =
        FixtureProcess::spawn_service(&tracery_tests::fixture("demo-payments"), &[]);
    let pid = server.pid();
    let mut m = Manager::start().unwrap();
    m.add(BreakpointSpec {
        location: "main.charge".into(),
        ..freeze_spec(pid, Duration::from_secs(60))
    })
    .unwrap();
    let body = r#"{"order_id":7,"amount_cents":1250}"#;
    let a = addr.clone();
    let frozen_req = thread::spawn(move || request(&a, "/pay", Some(TRACE), body));
    let f = wait_frozen(&mut m);
    // The snapshot is the breakpoint; the thread stops only once the goroutine is in a
    // system call, where the runtime does not wait for it.
    let f = wait_stopped(&mut m, f);
    assert_eq!(
        stopped_threads(pid),
        1,
        "exactly one thread of the Go process is stopped"
    );

    // A 30 s freeze: the service keeps answering, and a GC forced every few seconds
    // completes each time (it would wait for a goroutine stopped in Go code).
    let frozen_at = Instant::now();
    let mut gc = num_gc(&addr);
    let (mut served, mut gcs) = (0, 0);
    while frozen_at.elapsed() < GO_FREEZE {
        for i in 0..20 {
            let body = format!(r#"{{"order_id":{i},"amount_cents":1}}"#);
            let r = request(&addr, "/pay", None, &body);
            assert!(
                r.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&r)
            );
            served += 1;
        }
        let now = num_gc(&addr);
        assert!(now > gc, "a forced GC completed: {gc} -> {now}");
        (gc, gcs) = (now, gcs + 1);
        m.tick(Duration::from_millis(10)).unwrap();
        assert_eq!(
            stopped_threads(pid),
            1,
            "the goroutine's thread is still stopped"
        );
        thread::sleep(Duration::from_secs(2));
    }
    assert!(served >= 100 && gcs >= 5, "{served} requests, {gcs} GCs");
    m.tick(Duration::from_millis(10)).unwrap();
    assert_eq!(m.frozen().len(), 1, "still frozen while the others ran");

    assert!(matches!(
        m.resume(f.trace_id),
        ResumeOutcome::Resumed { .. }
    ));
    let r = frozen_req.join().unwrap();
    assert!(
        r.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert_eq!(
        stopped_threads(pid),
        0,
        "nothing stays stopped after resume"
    );
}

/// A frozen goroutine whose next socket call is a receive stops there, inside the
/// receive (the `sock_recv_length` tracepoint stands in for the receives' entry hooks):
/// the gateway's handler, frozen before it reads its body, never calls orders.
#[test]
fn a_go_goroutine_whose_next_call_is_a_receive_stops_at_the_receive() {
    tracery_tests::require_root();
    // Stands in for orders: the gateway would connect here right after reading its body.
    let orders = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    orders.set_nonblocking(true).unwrap();
    let orders_url = format!("http://{}", orders.local_addr().unwrap());
    let (gateway, addr) = FixtureProcess::spawn_service(
        &tracery_tests::fixture("demo-gateway"),
        &["-listen", "127.0.0.1:0", "-orders", &orders_url],
    );
    let pid = gateway.pid();
    let mut m = Manager::start().unwrap();
    let (file, line) = tracery_tests::marker_line("demo_gateway_access");
    m.add(BreakpointSpec {
        location: format!("{}:{line}", file.display()),
        ..freeze_spec(pid, Duration::from_secs(60))
    })
    .unwrap();
    // The headers now, the body once the request is frozen: the handler's next socket
    // call is the read of its body.
    let body = r#"{"customer":"c","item":"book","qty":1,"unit_cents":100}"#;
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /checkout HTTP/1.1\r\nHost: test\r\ntraceparent: 00-{TRACE}-b7ad6b7169203331-01\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let f = wait_frozen(&mut m);
    s.write_all(body.as_bytes()).unwrap();
    let f = wait_stopped(&mut m, f);
    assert_eq!(stopped_threads(pid), 1, "one thread of the gateway stopped");
    thread::sleep(Duration::from_millis(500));
    assert!(
        orders.accept().is_err(),
        "the frozen handler went on to call orders: it did not stop at its receive"
    );

    assert!(matches!(
        m.resume(f.trace_id),
        ResumeOutcome::Resumed { .. }
    ));
    // Resumed, it reads its body and calls orders.
    orders.set_nonblocking(false).unwrap();
    let (mut call, _) = orders.accept().expect("the resumed handler calls orders");
    call.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = vec![0u8; 4096];
    let n = call.read(&mut got).unwrap();
    let got = String::from_utf8_lossy(&got[..n]);
    assert!(got.starts_with("POST /orders"), "{got}");
    assert_eq!(
        stopped_threads(pid),
        0,
        "nothing stays stopped after resume"
    );
}

/// Threads of `pid` stopped by their tracer.
fn stopped_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| thread_state(pid, *tid) == 't')
        .count()
}

/// Forces a GC in the Go service and returns how many have completed.
fn num_gc(addr: &str) -> u64 {
    let r = request(addr, "/debug/gc", None, "");
    let text = String::from_utf8_lossy(&r);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["num_gc"].as_u64().unwrap()
}

#[test]
fn a_trapped_hit_that_when_filters_out_is_let_go_at_once() {
    tracery_tests::require_root();
    let (server, addr) = FixtureProcess::spawn_service(&tracery_tests::fixture("c-httpd"), &["0"]);
    let mut m = Manager::start().unwrap();
    // A string comparison is checked in user space: the kernel traps the thread first.
    m.add(BreakpointSpec {
        when: Some(r#"method == "PUT""#.into()),
        ..freeze_spec(server.pid(), Duration::from_secs(60))
    })
    .unwrap();
    let a = addr.clone();
    let req = thread::spawn(move || {
        let t = Instant::now();
        (request(&a, "/not-put", Some(TRACE), "abc"), t.elapsed())
    });
    while !req.is_finished() {
        m.tick(Duration::from_millis(20)).unwrap();
    }
    let (r, took) = req.join().unwrap();
    assert!(
        r.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert!(
        took < Duration::from_secs(1),
        "resumed at once, not after the 2 s claim window: {took:?}"
    );
    assert!(m.frozen().is_empty());
    assert_eq!(m.status_of(1).unwrap().filtered, 1);
}
