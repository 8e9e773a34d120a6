//! The breakpoint manager against real processes (root: loads eBPF).

use std::time::{Duration, Instant, SystemTime};

use tracery_agent::{BreakpointSpec, Ended, Manager, Matcher, Snapshot, Target};
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
    assert!(st.processes.is_empty(), "no process runs yet: {st:?}");

    let first = FixtureProcess::spawn("c-O0", &["serve"]);
    let s = snapshot_from(&mut m, first.pid());
    assert_eq!(s.breakpoint_id, 1);
    assert_eq!(s.location.function, "level3");
    drop(first); // killed: a restart follows

    let second = FixtureProcess::spawn("c-O0", &["serve"]);
    let s = snapshot_from(&mut m, second.pid());
    assert_eq!(s.pid, second.pid());
    // The dead process was forgotten; only the new one is armed.
    let st = m.status_of(1).unwrap();
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
    assert_eq!(st.processes.len(), 2, "{st:?}");
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
