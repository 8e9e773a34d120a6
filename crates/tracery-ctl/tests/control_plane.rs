//! The control plane end to end: `tracery-ctl` against a real standalone Tracery
//! (controller + agent in one process) and real fixture processes.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::Duration,
};

use common::{
    standalone::{PgSchema, Standalone},
    *,
};
use serde_json::{json, Value};
use tracery_tests::{fixture, FixtureProcess, PrivateCopy};

/// The value of `x` in `level3` of the C fixture: level1(1) -> level2(2) -> level3(4).
fn assert_level3(s: &Value) {
    assert_eq!(s["location"]["function"], "level3", "{s:#}");
    assert_eq!(var(s, "x"), &json!(4), "{s:#}");
}

/// A private copy of a fixture (see [`PrivateCopy`]) that can start processes.
struct Copy(PrivateCopy);

impl Copy {
    fn of(variant: &str) -> Self {
        Self(PrivateCopy::of(variant, "tracery-fixture"))
    }

    fn path(&self) -> &std::path::Path {
        self.0.path()
    }

    fn spawn(&self, args: &[&str]) -> FixtureProcess {
        FixtureProcess::spawn_path(self.path(), args)
    }
}

fn start(store: Option<String>) -> (Standalone, Copy) {
    let copy = Copy::of("c-O0");
    let t = Standalone::start(&[("orders", copy.path())], store);
    (t, copy)
}

#[test]
fn set_by_service_exe_and_pid_then_list_and_view_exact_values() {
    tracery_tests::require_root();
    let (t, exe) = start(None);
    let p = exe.spawn(&["serve"]);
    let exe = exe.path().to_path_buf();
    let pid = p.pid().to_string();
    let targets: [&[&str]; 3] = [
        &["--service", "orders"],
        &["--exe", exe.to_str().unwrap()],
        &["--pid", &pid],
    ];
    for target in targets {
        let mut args = target.to_vec();
        args.extend(["--at", "level3", "--hits", "2"]);
        let id = t.set(&args);
        let snaps = t.snapshots(&id, 2);
        for s in &snaps {
            assert_eq!(s["pid"], p.pid(), "{target:?}");
            assert_level3(s);
        }
        let view = t.ctl_ok(&[
            "snapshot",
            "view",
            &snaps[0]["id"].to_string(),
            "--output",
            "json",
        ]);
        let v: Value = serde_json::from_str(view.trim()).unwrap();
        assert_level3(&v);
        assert_eq!(v["stack"][0]["function"], "level3");
        assert_eq!(v["stack"][1]["function"], "level2");
        let text = t.ctl_ok(&["snapshot", "view", &snaps[0]["id"].to_string()]);
        assert!(text.contains("x: int = 4"), "{text}");
    }
    let list = t.ctl_ok(&["breakpoint", "list", "--output", "json"]);
    assert_eq!(list.lines().count(), 3, "{list}");
}

#[test]
fn watch_receives_the_hit() {
    tracery_tests::require_root();
    let (t, exe) = start(None);
    let _p = exe.spawn(&["serve"]);
    let mut watch = ctl()
        .args([
            "--controller",
            &t.url,
            "snapshot",
            "watch",
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    t.set(&["--service", "orders", "--at", "level3", "--hits", "1"]);
    let mut line = String::new();
    BufReader::new(watch.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = watch.kill();
    let _ = watch.wait();
    let s: Value = serde_json::from_str(line.trim()).unwrap();
    assert_level3(&s);
}

#[test]
fn delete_detaches() {
    tracery_tests::require_root();
    let (t, exe) = start(None);
    let p = exe.spawn(&["serve"]);
    let id = t.set(&["--pid", &p.pid().to_string(), "--at", "level3"]);
    t.snapshots(&id, 1);
    let binary = tracery_dwarf::Binary::open(fixture("c-O0")).unwrap();
    let site = tracery_dwarf::resolve(&binary, "level3").unwrap()[0].clone();
    let original = binary.bytes_at(site.address, 1).unwrap()[0];
    assert_eq!(
        live_byte(p.pid(), site.file_offset.0),
        0xcc,
        "armed: int3 in place"
    );
    t.ctl_ok(&["breakpoint", "delete", &id]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while live_byte(p.pid(), site.file_offset.0) != original {
        assert!(
            std::time::Instant::now() < deadline,
            "probe still attached 10 s after delete"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = t.ctl(&["breakpoint", "delete", &id]);
    assert!(!err.status.success());
}

/// The next `n` `rate N` lines of the hot fixture (one every 200 ms).
fn rates(p: &mut FixtureProcess, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let v = p.wait_for_line("rate ", Duration::from_secs(5));
            v.trim().parse::<f64>().unwrap()
        })
        .collect()
}

#[test]
fn delete_restores_the_unprobed_speed() {
    tracery_tests::require_root();
    let exe = Copy::of("c-O2");
    let t = Standalone::start(&[("hot", exe.path())], None);
    let mut p = exe.spawn(&["hot"]);
    let mut before = rates(&mut p, 3);
    before.sort_by(f64::total_cmp);
    let baseline = before[1];
    let id = t.set(&["--service", "hot", "--at", "tick"]);
    t.snapshots(&id, 1);
    // Lines printed while arming are still queued: drop them, then skip the window that
    // overlapped the first hit.
    while p.read_line(Duration::ZERO).is_some() {}
    let _ = rates(&mut p, 1);
    let armed = rates(&mut p, 2).into_iter().fold(0.0, f64::max);
    // Every call traps while armed (the rate limit only drops records), so the loop
    // slows by orders of magnitude; after delete it runs as before.
    assert!(
        armed < baseline / 10.0,
        "armed {armed:.0}/s vs {baseline:.0}/s"
    );
    t.ctl_ok(&["breakpoint", "delete", &id]);
    let _ = rates(&mut p, 2); // detaching happens within these windows
    let after = rates(&mut p, 5).into_iter().fold(0.0, f64::max);
    assert!(
        after > baseline / 3.0,
        "after delete {after:.0}/s vs {baseline:.0}/s before"
    );
}

#[test]
fn restart_keeps_breakpoints_and_snapshots_and_rearms() {
    tracery_tests::require_root();
    let (mut t, exe) = start(None);
    let p = exe.spawn(&["serve"]);
    let id = t.set(&["--service", "orders", "--at", "level3", "--hits", "1000"]);
    let before = t.snapshots(&id, 1);
    t.restart();
    let list = t.ctl_ok(&["breakpoint", "list", "--output", "json"]);
    assert!(list.contains(&format!("\"id\":{id}")), "{list}");
    let after = t.snapshots(&id, before.len() + 1);
    assert_eq!(after[0]["id"], before[0]["id"], "stored snapshots survive");
    assert!(after.iter().any(|s| s["pid"] == p.pid()));
}

#[test]
fn a_restarted_target_is_reattached_without_user_action() {
    tracery_tests::require_root();
    let (t, exe) = start(None);
    let first = exe.spawn(&["serve"]);
    let id = t.set(&["--service", "orders", "--at", "level3", "--hits", "1000"]);
    t.snapshots(&id, 1);
    let old = first.pid();
    drop(first);
    let second = exe.spawn(&["serve"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let snaps = t.snapshots(&id, 1);
        if snaps.iter().any(|s| s["pid"] == second.pid()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot from the restarted process"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(old, second.pid());
}

#[test]
fn when_on_a_hot_function_records_only_matching_hits() {
    tracery_tests::require_root();
    let exe = Copy::of("c-O2");
    let t = Standalone::start(&[("hot", exe.path())], None);
    let _p = exe.spawn(&["hot"]);
    // Never true: checked in the kernel, so the hot loop produces no record at all.
    let never = t.set(&["--service", "hot", "--at", "tick", "--when", "i < 0"]);
    // Always true, limited to 3.
    let always = t.set(&[
        "--service",
        "hot",
        "--at",
        "tick",
        "--when",
        "i >= 0",
        "--hits",
        "3",
    ]);
    let snaps = t.snapshots(&always, 3);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(t.snapshots(&always, 3).len(), 3, "exactly the hit limit");
    for s in &snaps {
        assert!(var(s, "i").as_i64().unwrap() >= 0, "{s:#}");
    }
    assert!(
        t.snapshots(&never, 0).is_empty(),
        "a false condition records nothing"
    );
}

/// Issue 9: right after `tracery-agent standalone` starts, before its own agent has
/// connected, a breakpoint on a line without code must fail with the agent's error, not
/// be stored unchecked; and a good one says where it was armed.
#[test]
fn a_breakpoint_set_right_after_start_is_checked_by_the_agent() {
    tracery_tests::require_root();
    let copy = Copy::of("c-O0");
    // The process runs first, so the agent has a process to try the line in.
    let p = copy.spawn(&["serve"]);
    let t = Standalone::start_unready(&[("orders", copy.path())], None);
    let line = line_of("c_no_code");
    let at = format!("orders.c:{line}");
    let out = t.ctl(&["breakpoint", "set", "--service", "orders", "--at", &at]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "accepted before the agent checked it; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(e.contains(&format!("no code at {at}")), "{e}");
    // A service by `exe` is armed in its file, so the error names the file.
    assert!(
        e.contains(&copy.path().display().to_string()),
        "the error names the file: {e}"
    );
    let listed = t.ctl_ok(&["breakpoint", "list", "--output", "json"]);
    assert!(listed.trim().is_empty(), "kept: {listed}");

    let out = t.ctl_ok(&["breakpoint", "set", "--service", "orders", "--at", "level3"]);
    assert!(
        out.starts_with("breakpoint ") && out.contains("set at level3 on service orders"),
        "{out}"
    );
    assert!(out.contains("armed on node "), "{out}");
    assert!(out.contains("in the executable file (1 site)"), "{out}");
    assert!(
        out.contains(&format!("running there now: pid {}", p.pid())),
        "{out}"
    );
    assert!(out.contains("next: "), "{out}");
    let json: Value = serde_json::from_str(&t.ctl_ok(&[
        "breakpoint",
        "set",
        "--service",
        "orders",
        "--at",
        "level2",
        "--output",
        "json",
    ]))
    .unwrap();
    assert_eq!(json["location"], "level2", "{json:#}");
    // First the file (pid 0), then each process running it now.
    assert_eq!(json["armed"][0]["pid"], json!(0), "{json:#}");
    assert!(json["armed"][0]["probes"].as_u64() >= Some(1), "{json:#}");
    assert_eq!(json["armed"][1]["pid"], json!(p.pid()), "{json:#}");
}

#[test]
fn bad_input_gets_clear_messages() {
    tracery_tests::require_root();
    let (t, exe) = start(None);
    let _p = exe.spawn(&["serve"]);
    let stderr = |out: std::process::Output| {
        assert!(
            !out.status.success(),
            "accepted; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = stderr(t.ctl(&["breakpoint", "set", "--service", "nope", "--at", "level3"]));
    assert!(
        e.contains("unknown service \"nope\"") && e.contains("orders"),
        "{e}"
    );
    let line = line_of("c_no_code").to_string();
    let e = stderr(t.ctl(&[
        "breakpoint",
        "set",
        "--service",
        "orders",
        "--at",
        &format!("orders.c:{line}"),
    ]));
    assert!(e.contains(&format!("no code at orders.c:{line}")), "{e}");
    let e = stderr(t.ctl(&[
        "breakpoint",
        "set",
        "--service",
        "orders",
        "--at",
        "level3",
        "--when",
        "x >",
    ]));
    assert!(e.contains("malformed --when") && e.contains('^'), "{e}");
    let e = stderr(
        ctl()
            .args(["--controller", "http://127.0.0.1:1", "breakpoint", "list"])
            .output()
            .unwrap(),
    );
    assert!(
        e.contains("http://127.0.0.1:1") && e.contains("tracery-agent standalone"),
        "{e}"
    );
}

#[test]
fn an_agent_that_lost_its_target_says_so() {
    tracery_tests::require_root();
    let (t, exe) = start(None);
    let p = exe.spawn(&["serve"]);
    let pid = p.pid();
    let id = t.set(&["--pid", &pid.to_string(), "--at", "level3"]);
    t.snapshots(&id, 1);
    drop(p);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st: Value = serde_json::from_str(&t.ctl_ok(&["status", "--output", "json"])).unwrap();
        let problems = st["breakpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"].as_u64() == id.parse().ok())
            .map(|b| b["problems"].to_string())
            .unwrap_or_default();
        if problems.contains(&format!("process {pid} exited")) {
            assert!(problems.contains("--service or --exe"), "{problems}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never said the target exited: {st:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = t.ctl_ok(&["status"]);
    assert!(text.contains(&format!("process {pid} exited")), "{text}");
}

#[test]
fn postgres_store_same_flow_and_restart() {
    tracery_tests::require_root();
    let schema = PgSchema::create();
    let (mut t, exe) = start(Some(schema.url()));
    let _keep = schema;
    let p = exe.spawn(&["serve"]);
    let id = t.set(&["--service", "orders", "--at", "level3", "--hits", "1000"]);
    let before = t.snapshots(&id, 2);
    for s in &before {
        assert_level3(s);
        assert_eq!(s["pid"], p.pid());
    }
    let view = t.ctl_ok(&[
        "snapshot",
        "view",
        &before[0]["id"].to_string(),
        "--output",
        "json",
    ]);
    assert_level3(&serde_json::from_str(view.trim()).unwrap());
    t.restart();
    let list = t.ctl_ok(&["breakpoint", "list", "--output", "json"]);
    assert!(list.contains(&format!("\"id\":{id}")), "{list}");
    let after = t.snapshots(&id, before.len() + 1);
    assert_eq!(
        after[0]["id"], before[0]["id"],
        "stored snapshots survive a restart"
    );
}

/// Issue 18: after `breakpoint set --exe` returns, a process that lives 20 ms and calls the
/// probed function once yields exactly one snapshot, in 20 runs of 20 (each run a new
/// process, started a little apart as a cron job or a CLI would be); a process of another
/// executable with the same function yields none.
#[test]
fn an_exe_breakpoint_catches_each_run_of_a_20_ms_process() {
    tracery_tests::require_root();
    let (t, exe) = start(None);
    let other = Copy::of("c-O2");
    let path = exe.path().to_str().unwrap().to_owned();
    let id = t.set(&["--exe", &path, "--at", "process_order", "--hits", "100"]);
    // No process runs the file yet; status shows the probes bound to it all the same.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = t.ctl_ok(&["status"]);
        let row = text
            .lines()
            .find(|l| l.contains(&path) && l.contains(" any "));
        if row.is_some_and(|r| r.contains(&format!(" {id} "))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never showed the file-bound probes: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = |path: &std::path::Path| {
        let start = std::time::Instant::now();
        let mut child = std::process::Command::new(path)
            .arg("once")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(child.wait().unwrap().success());
        (pid, start.elapsed())
    };
    let mut pids = Vec::new();
    for _ in 0..20 {
        let (pid, lived) = run(exe.path());
        assert!(lived < Duration::from_millis(200), "lived {lived:?}");
        pids.push(pid);
        // Within the default rate limit (10/s), as runs of a job would be.
        std::thread::sleep(Duration::from_millis(100));
    }
    let (stray, _) = run(other.path());
    let snaps = t.snapshots(&id, 20);
    // Anything late would have arrived with the 20th.
    std::thread::sleep(Duration::from_millis(500));
    let snaps = t.snapshots(&id, snaps.len());
    for pid in &pids {
        let n = snaps.iter().filter(|s| s["pid"] == json!(pid)).count();
        assert_eq!(n, 1, "pid {pid}: {n} snapshots");
    }
    assert!(
        !snaps.iter().any(|s| s["pid"] == json!(stray)),
        "another executable's process was caught"
    );
    assert_eq!(snaps.len(), 20);
    let one = &snaps[0];
    assert_eq!(one["location"]["function"], "process_order", "{one:#}");
    assert_eq!(var(one, "id"), &json!(42), "{one:#}");
}
