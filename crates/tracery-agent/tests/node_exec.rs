//! A Node breakpoint on a service (not a PID) is armed in Node processes that start after
//! it was set: the agent's exec watch sees the process, waits until Node handles SIGUSR1
//! and has loaded the script, then opens its inspector (root: the Manager loads eBPF).

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use tracery_agent::{BreakpointSpec, Manager, Matcher, Snapshot, Target};
use tracery_dwarf::CaptureLimits;
use tracery_model::SourceLanguage;
use tracery_tests::{http, FixtureProcess};

fn server_js() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/node/server.js")
}

/// `node`, or Debian's `nodejs`.
fn node_bin() -> &'static str {
    ["node", "nodejs"]
        .into_iter()
        .find(|bin| {
            Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Node.js is not installed: run `cargo xtask setup` (it installs Debian's nodejs)")
}

fn discount_line() -> u32 {
    let text = std::fs::read_to_string(server_js()).unwrap();
    text.lines()
        .position(|l| l.contains("@probe:node_discount"))
        .expect("marker in server.js") as u32
        + 1
}

/// Ticks until `f` holds or `within` passes; the snapshots that arrived meanwhile.
fn tick_until(
    m: &mut Manager,
    within: Duration,
    mut f: impl FnMut(&mut Manager, &[Snapshot]) -> bool,
) -> (bool, Vec<Snapshot>) {
    let deadline = Instant::now() + within;
    let mut snaps = Vec::new();
    loop {
        snaps.extend(m.tick(Duration::from_millis(20)).unwrap());
        if f(m, &snaps) {
            return (true, snaps);
        }
        if Instant::now() > deadline {
            return (false, snaps);
        }
    }
}

#[test]
fn a_node_process_started_after_the_breakpoint_is_armed_and_captures() {
    tracery_tests::require_root();
    // Only this test's processes: a marker argument no other process has.
    let tag = format!("--tracery-exec-test={}", std::process::id());
    let mut m = Manager::start().unwrap();
    let st = m
        .add(BreakpointSpec {
            id: 1,
            target: Target::Matching(Matcher::Cmdline(tag.clone())),
            location: format!("node/server.js:{}", discount_line()),
            when: None,
            hit_limit: 0,
            rate_per_sec: 0,
            expires_at: None,
            limits: CaptureLimits::default(),
            scope: Default::default(),
            freeze: None,
            capture_paths: Vec::new(),
        })
        .unwrap();
    assert!(
        st.processes.is_empty(),
        "no process runs the service yet: {st:?}"
    );

    let mut cmd = Command::new(node_bin());
    cmd.arg(server_js()).arg(&tag);
    let (server, addr) = FixtureProcess::spawn_service_command(cmd);
    let pid = server.pid();
    let (armed, _) = tick_until(&mut m, Duration::from_secs(20), |m, _| {
        m.status()
            .iter()
            .any(|s| s.id == 1 && s.processes.iter().any(|(p, n)| *p == pid && *n > 0))
    });
    let status = m.status();
    assert!(armed, "not armed in new process {pid}: {status:?}");
    assert!(status.iter().all(|s| s.errors.is_empty()), "{status:?}");

    let mut c = http::Connection::open(&addr);
    let r = c.request(&http::Request::new("GET", "/order?id=7"));
    assert_eq!(r.status, 200);
    let (got, snaps) = tick_until(&mut m, Duration::from_secs(10), |_, s| !s.is_empty());
    assert!(got, "no snapshot from the new process");
    let s = &snaps[0];
    assert_eq!(s.pid, pid);
    assert_eq!(s.language, SourceLanguage::JavaScript);
    assert_eq!(s.location.line, discount_line());
    let customer = s
        .variables
        .iter()
        .find(|v| v.name == "customer")
        .unwrap_or_else(|| panic!("no `customer` in {:#?}", s.variables));
    assert_eq!(
        customer.value.to_json(),
        serde_json::json!("Ada"),
        "{customer:#?}"
    );
    m.remove(1).unwrap();
    drop(server);
}
