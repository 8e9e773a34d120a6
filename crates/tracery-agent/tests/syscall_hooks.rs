//! The trace tracker's raw `sys_enter`/`sys_exit` fallback (for kernels without the
//! per-syscall tracepoints; chosen here with `TRACERY_SYSCALL_HOOKS=raw`) follows requests
//! as the per-syscall hooks do. Root: loads eBPF. One test: it sets the environment.

use std::time::{Duration, Instant};

use tracery_agent::{
    capture::program_stats,
    freeze::{TraceId, TraceScope},
    BreakpointSpec, Manager, Target,
};
use tracery_dwarf::CaptureLimits;
use tracery_tests::{
    http::{Connection, Request},
    FixtureProcess,
};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// One `/pay` request on its own connection, traced when `trace` is given; expects 200.
fn pay(addr: &str, trace: Option<&str>) {
    let mut req = Request::new("POST", "/pay").body(r#"{"order_id":3,"amount_cents":100}"#);
    if let Some(t) = trace {
        req = req.header("traceparent", &format!("00-{t}-00f067aa0ba902b7-01"));
    }
    let response = Connection::open(addr).request(&req);
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn the_raw_tracepoint_fallback_follows_requests() {
    tracery_tests::require_root();
    // Read when the tracker is created, below; no other thread reads the environment.
    std::env::set_var("TRACERY_SYSCALL_HOOKS", "raw");
    let _stats = program_stats::enable().expect("turning on bpf_stats");
    let (server, addr) =
        FixtureProcess::spawn_service(&tracery_tests::fixture("demo-payments"), &[]);
    let mut m = Manager::start().unwrap();
    m.add(BreakpointSpec {
        id: 1,
        target: Target::Pid(server.pid()),
        location: "main.charge".into(),
        when: None,
        hit_limit: 1,
        rate_per_sec: 0,
        expires_at: None,
        limits: CaptureLimits::default(),
        scope: TraceScope {
            trace_id: Some(TraceId::parse(TRACE).unwrap()),
            header: None,
        },
        freeze: None,
        capture_paths: Vec::new(),
    })
    .unwrap();
    // Untraced first: only the traced request may hit the trace-scoped breakpoint.
    pay(&addr, None);
    pay(&addr, Some(TRACE));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut snaps = Vec::new();
    while snaps.is_empty() && Instant::now() < deadline {
        snaps.extend(m.tick(Duration::from_millis(50)).unwrap());
    }
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0].trace_id.as_deref(), Some(TRACE));

    let stats = m.program_stats();
    let runs = |name: &str| {
        stats
            .iter()
            .find(|p| p.name == name)
            .map_or(0, |p| p.run_count)
    };
    assert!(runs("tracery_sys_exit") > 0, "the raw hooks ran");
    assert_eq!(
        runs("tracery_syscall_exit"),
        0,
        "the per-syscall hooks did not"
    );
}
