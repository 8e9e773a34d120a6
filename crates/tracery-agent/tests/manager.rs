//! The breakpoint manager against real processes (root: loads eBPF).

use std::time::{Duration, Instant, SystemTime};

use tracery_agent::{BreakpointSpec, Ended, Manager, Matcher, NodeCgroup, Snapshot, Target};
use tracery_dwarf::CaptureLimits;
use tracery_tests::FixtureProcess;

fn spec(id: u64, target: Target) -> BreakpointSpec {
    BreakpointSpec {
        id,
        target,
        location: "level3".into(),
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

fn exe_target(variant: &str) -> Target {
    let path = std::fs::canonicalize(tracery_tests::fixture(variant)).unwrap();
    Target::Matching(Matcher::Exe(path))
}

/// Ticks until a snapshot from `pid` arrives (or 10 s pass).
fn snapshot_from(m: &mut Manager, pid: u32) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(s) = m
            .tick(Duration::from_millis(50))
            .unwrap()
            .into_iter()
            .find(|s| s.pid == pid)
        {
            return s;
        }
    }
    panic!("no snapshot from PID {pid} within 10 s: {:?}", m.status());
}

#[test]
fn arms_processes_that_start_later_and_follows_restarts() {
    tracery_tests::require_root();
    let mut m = Manager::start().unwrap();
    let st = m.add(spec(1, exe_target("c-O0"))).unwrap();
    // Bound to the file at once (other tests here may run processes of it meanwhile).
    assert_eq!(st.files.len(), 1, "{st:?}");

    let first = FixtureProcess::spawn("c-O0", &["serve"]);
    let s = snapshot_from(&mut m, first.pid());
    assert_eq!(s.breakpoint_id, 1);
    assert_eq!(s.location.function, "level3");
    drop(first); // killed: a restart follows

    let second = FixtureProcess::spawn("c-O0", &["serve"]);
    let s = snapshot_from(&mut m, second.pid());
    assert_eq!(s.pid, second.pid());
    // The dead process was forgotten; only the new one is armed. Caught by the file's
    // probe from its start, it is listed once it has lived long enough to be followed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut st = m.status_of(1).unwrap();
    while st.processes != vec![(second.pid(), 1)] && Instant::now() < deadline {
        m.tick(Duration::from_millis(50)).unwrap();
        st = m.status_of(1).unwrap();
    }
    assert_eq!(st.processes, vec![(second.pid(), 1)], "{st:?}");
    assert!(st.hits >= 2);
    assert!(m.remove(1).unwrap());
    assert!(!m.remove(1).unwrap());
}

#[test]
fn pid_target_ends_when_its_process_exits() {
    tracery_tests::require_root();
    let mut m = Manager::start().unwrap();
    let p = FixtureProcess::spawn("c-O0", &["serve"]);
    let pid = p.pid();
    m.add(spec(7, Target::Pid(pid))).unwrap();
    snapshot_from(&mut m, pid);
    drop(p);
    let deadline = Instant::now() + Duration::from_secs(5);
    while m.status_of(7).unwrap().ended.is_none() && Instant::now() < deadline {
        m.tick(Duration::from_millis(50)).unwrap();
    }
    let st = m.status_of(7).unwrap();
    assert_eq!(st.ended, Some(Ended::TargetExited), "{st:?}");
    assert_eq!(st.exited, vec![pid]);
    assert!(st.processes.is_empty());
}

#[test]
fn hit_limit_counts_across_processes_and_expiry_ends_a_breakpoint() {
    tracery_tests::require_root();
    let mut m = Manager::start().unwrap();
    let a = FixtureProcess::spawn("c-O2", &["serve"]);
    let b = FixtureProcess::spawn("c-O2", &["serve"]);
    let mut limited = spec(3, exe_target("c-O2"));
    limited.hit_limit = 5;
    let st = m.add(limited).unwrap();
    // Both (another test may run a short process of the same file meanwhile).
    for p in [&a, &b] {
        assert!(
            st.processes.iter().any(|(pid, _)| *pid == p.pid()),
            "{st:?}"
        );
    }
    let mut expiring = spec(4, exe_target("c-O2"));
    expiring.expires_at = Some(SystemTime::now() + Duration::from_millis(800));
    m.add(expiring).unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut delivered = 0;
    while Instant::now() < deadline {
        delivered += m
            .tick(Duration::from_millis(50))
            .unwrap()
            .iter()
            .filter(|s| s.breakpoint_id == 3)
            .count();
    }
    let st = m.status_of(3).unwrap();
    assert_eq!(delivered, 5, "{st:?}");
    assert_eq!(st.hits, 5);
    assert_eq!(st.ended, Some(Ended::HitLimit));
    assert!(
        st.processes.is_empty(),
        "probes detached at the limit: {st:?}"
    );
    let st = m.status_of(4).unwrap();
    assert_eq!(st.ended, Some(Ended::Expired), "{st:?}");
    assert!(st.processes.is_empty());
    drop((a, b));
}

#[test]
fn a_missing_pid_is_an_error_at_once() {
    tracery_tests::require_root();
    let mut m = Manager::start().unwrap();
    let err = m.add(spec(9, Target::Pid(99_999_999))).unwrap_err();
    assert!(
        err.to_string().contains("no process with PID 99999999"),
        "{err}"
    );
    assert!(m.status_of(9).is_none());
}

#[test]
fn when_filters_hits_in_user_space_and_counts_them() {
    tracery_tests::require_root();
    let mut m = Manager::start().unwrap();
    let p = FixtureProcess::spawn("c-O0", &["serve"]);
    // `x` is 4 on every call: `x == 4` matches, and the float literal keeps the
    // comparison in user space so it is checked (and counted) there.
    let mut matching = spec(1, Target::Pid(p.pid()));
    matching.when = Some("x == 4".into());
    let mut never = spec(2, Target::Pid(p.pid()));
    never.when = Some("x == 5.5".into());
    m.add(matching).unwrap();
    m.add(never).unwrap();
    let s = snapshot_from(&mut m, p.pid());
    assert_eq!(s.breakpoint_id, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.status_of(2).unwrap().filtered == 0 && Instant::now() < deadline {
        let snaps = m.tick(Duration::from_millis(50)).unwrap();
        assert!(snaps.iter().all(|s| s.breakpoint_id == 1), "{snaps:?}");
    }
    let st = m.status_of(2).unwrap();
    assert!(st.filtered > 0, "{st:?}");
    assert_eq!(st.hits, 0, "{st:?}");
    let err = m
        .add(BreakpointSpec {
            when: Some("x >".into()),
            ..spec(3, Target::Pid(p.pid()))
        })
        .unwrap_err();
    assert!(err.to_string().contains("malformed --when"), "{err}");
}

/// Runs `variant` in its `once` mode (one `process_order` call, exit 20 ms later) to the
/// end; returns its PID and how long it lived.
fn run_once(variant: &str) -> (u32, Duration) {
    let start = Instant::now();
    let mut child = std::process::Command::new(tracery_tests::fixture(variant))
        .arg("once")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success(), "{variant} once failed");
    (pid, start.elapsed())
}

/// Ticks for `period`, keeping the snapshots from `pid`. (Other tests run processes of
/// the same fixture meanwhile, and the breakpoints catch them too.)
fn gather(m: &mut Manager, pid: u32, period: Duration) -> Vec<Snapshot> {
    let until = Instant::now() + period;
    let mut got = Vec::new();
    while Instant::now() < until {
        got.extend(
            m.tick(Duration::from_millis(20))
                .unwrap()
                .into_iter()
                .filter(|s| s.pid == pid),
        );
    }
    got
}

#[test]
fn a_process_that_lives_20_ms_is_caught_on_its_first_run() {
    tracery_tests::require_root();
    let mut m = Manager::start().unwrap();
    // Built (and its DWARF read) before timing anything.
    tracery_tests::fixture("c-O2");
    let mut bp = spec(3, exe_target("c-O0"));
    bp.location = "process_order".into();
    let st = m.add(bp).unwrap();
    // Bound to the file at once (other tests here may run processes of it meanwhile).
    assert_eq!(st.files.len(), 1, "{st:?}");
    assert!(st.files[0].0.ends_with("c-O0/orders"), "{st:?}");
    let (file, line) = tracery_tests::marker_line("c_once_placed");
    let mut bp = spec(4, exe_target("c-O0"));
    bp.location = format!("{}:{line}", file.file_name().unwrap().to_string_lossy());
    m.add(bp).unwrap();

    let mut lives = Vec::new();
    for run in 1..=20 {
        let (pid, lived) = run_once("c-O0");
        lives.push(lived);
        // The process is gone before the agent reads its hits: everything in a snapshot
        // was taken at the hit, and its stack is read with the bias the hit carried.
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 2 && Instant::now() < deadline {
            got.extend(gather(&mut m, pid, Duration::from_millis(50)));
        }
        got.extend(gather(&mut m, pid, Duration::from_millis(200)));
        let (orders, placed): (Vec<_>, Vec<_>) =
            got.into_iter().partition(|s| s.breakpoint_id == 3);
        assert_eq!(
            orders.len(),
            1,
            "run {run}: one process_order hit: {orders:#?}"
        );
        assert_eq!(
            placed.len(),
            1,
            "run {run}: one hit of the line: {placed:#?}"
        );
        let var = |s: &Snapshot, name: &str| {
            s.variables
                .iter()
                .find(|v| v.name == name)
                .unwrap_or_else(|| panic!("run {run}: no {name} in {:#?}", s.variables))
                .value
                .clone()
        };
        // Read from the static's link-time address plus this process's bias.
        assert_eq!(
            var(&placed[0], "placed"),
            tracery_model::Value::Int(1),
            "run {run}"
        );
        let s = &orders[0];
        assert_eq!(s.location.function, "process_order");
        assert_eq!(var(s, "id"), tracery_model::Value::Int(42), "run {run}");
        assert_eq!(var(s, "qty"), tracery_model::Value::UInt(3), "run {run}");
        let callers: Vec<&str> = s.stack.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(
            callers.get(..3),
            Some(&["process_order", "once", "main"][..]),
            "run {run}: {:#?}",
            s.stack
        );
        assert!(
            s.stack[..3].iter().all(|f| f.line.is_some()),
            "run {run}: every frame has its line: {:#?}",
            s.stack
        );
    }
    // Another executable with the same function is not this breakpoint's.
    let (other, _) = run_once("c-O2");
    let stray = gather(&mut m, other, Duration::from_secs(1));
    assert!(stray.is_empty(), "c-O2 is not targeted: {stray:#?}");
    let st = m.status_of(3).unwrap();
    assert!(st.errors.is_empty(), "{st:?}");
    lives.sort();
    eprintln!(
        "20 processes caught; each lived {:?} to {:?} (median {:?})",
        lives[0], lives[19], lives[10]
    );
}

#[test]
fn a_file_probe_of_one_node_catches_only_that_nodes_processes() {
    tracery_tests::require_root();
    let nodes = tracery_tests::node::Nodes::create().unwrap();
    let mut m = Manager::start().unwrap();
    let path = std::fs::canonicalize(tracery_tests::fixture("c-O0")).unwrap();
    // As an agent started with `--cgroup` scopes `--exe`: the probe is bound to the file,
    // which node b's processes run too.
    let target = Target::Matching(Matcher::InCgroup {
        cgroup: NodeCgroup::open(nodes.a.cgroup_dir()).unwrap(),
        inner: Box::new(Matcher::Exe(path.clone())),
    });
    let mut bp = spec(5, target);
    bp.location = "process_order".into();
    m.add(bp).unwrap();
    for (node, want) in [(&nodes.a, 1), (&nodes.b, 0), (&nodes.a, 1)] {
        let mut child = node
            .command(&path)
            .unwrap()
            .arg("once")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(child.wait().unwrap().success());
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(if want == 1 { 10 } else { 1 });
        while got.len() < want && Instant::now() < deadline {
            got.extend(gather(&mut m, pid, Duration::from_millis(50)));
        }
        got.extend(gather(&mut m, pid, Duration::from_millis(300)));
        assert_eq!(got.len(), want, "{}: {got:#?}", node.spec.name);
    }
}
