//! `tracery-ctl breakpoint set --freeze …` and `tracery-ctl trace …` end to end: flag
//! checks, what a freezing breakpoint looks like, clear answers when nothing is frozen, and
//! a real freeze, eval and resume of one request.

mod common;

use std::time::{Duration, Instant};

use common::{standalone::Standalone, *};
use serde_json::Value;
use tracery_tests::{fixture, FixtureProcess, PrivateCopy};

/// A trace id no request in these tests carries.
const NEVER: &str = "a3ce929d0e0e4736";
const NEVER_FULL: &str = "0000000000000000a3ce929d0e0e4736";

/// Runs `tracery-ctl args` against a controller that is not there: flag errors come first.
fn offline(args: &[&str]) -> (bool, String) {
    let out = ctl()
        .args(["--controller", "http://127.0.0.1:9"])
        .args(args)
        .output()
        .expect("run tracery-ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_scope_and_freeze_flags_are_refused_before_anything_is_set() {
    let set = |extra: &[&str]| {
        let mut args = vec!["breakpoint", "set", "--pid", "1", "--at", "level3"];
        args.extend_from_slice(extra);
        offline(&args)
    };
    for (extra, says) in [
        (
            &["--trace-id", "xyz"][..],
            "\"xyz\" is not a trace id: expected 32 hex digits (or 16 for a B3 64-bit id)",
        ),
        (
            &["--trace-id", "00000000000000000000000000000000"][..],
            "the all-zero trace id is invalid",
        ),
        (
            &["--header", "x-tenant"][..],
            "--header \"x-tenant\" is not NAME=VALUE",
        ),
        (
            &["--header", "x tenant=acme"][..],
            "is not an HTTP header name",
        ),
        (
            &["--freeze-timeout", "30s"][..],
            "the following required arguments were not provided",
        ),
        (
            &["--freeze", "--freeze-timeout", "11m"][..],
            "11m is longer than the 600s (10m) a request may stay frozen",
        ),
        (
            &["--freeze", "--freeze-timeout", "0s"][..],
            "a freeze timeout must be at least 1s",
        ),
    ] {
        let (ok, stderr) = set(extra);
        assert!(!ok, "{extra:?} was accepted");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert!(
            !stderr.contains("cannot reach the Tracery controller"),
            "{extra:?} was sent to the controller: {stderr}"
        );
    }
    // `--freeze-timeout` names what it needs.
    let (_, stderr) = set(&["--freeze-timeout", "30s"]);
    assert!(stderr.contains("--freeze"), "{stderr}");
    for cmd in [["trace", "view", "xyz"], ["trace", "resume", "12"]] {
        let (ok, stderr) = offline(&cmd);
        assert!(
            !ok && stderr.contains("is not a trace id"),
            "{cmd:?}: {stderr}"
        );
    }
}

/// A private copy of the C fixture that never runs, so a breakpoint on it is set (pending)
/// without touching any process.
fn idle_service() -> PrivateCopy {
    PrivateCopy::of("c-O0", "tracery-idle")
}

#[test]
fn a_freezing_breakpoint_is_listed_with_its_scope_timeout_and_one_hit() {
    tracery_tests::require_root();
    let idle = idle_service();
    let t = Standalone::start(&[("orders", idle.path())], None);
    let frozen = t.set(&[
        "--service",
        "orders",
        "--at",
        "level3",
        "--trace-id",
        NEVER,
        "--freeze",
    ]);
    let header = t.set(&[
        "--service",
        "orders",
        "--at",
        "level3",
        "--header",
        "x-tenant=acme corp",
        "--freeze",
        "--freeze-timeout",
        "90s",
        "--hits",
        "3",
    ]);
    let plain = t.set(&["--service", "orders", "--at", "level3", "--trace-id", NEVER]);
    let listed: Vec<Value> = t
        .ctl_ok(&["breakpoint", "list", "--output", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_id = |id: &str| {
        listed
            .iter()
            .find(|b| b["id"].as_u64() == id.parse().ok())
            .unwrap_or_else(|| panic!("breakpoint {id} not listed: {listed:?}"))
    };
    let f = by_id(&frozen);
    assert_eq!(f["freeze"], true, "{f}");
    assert_eq!(f["freeze_timeout_seconds"], 60, "{f}");
    assert_eq!(f["hit_limit"], 1, "{f}");
    assert_eq!(f["trace_id"], NEVER_FULL, "{f}");
    let h = by_id(&header);
    assert_eq!(
        (&h["freeze_timeout_seconds"], &h["hit_limit"]),
        (&Value::from(90), &Value::from(3)),
        "{h}"
    );
    assert_eq!(h["header"]["name"], "x-tenant");
    assert_eq!(h["header"]["value"], "acme corp");
    let n = by_id(&plain);
    assert_eq!(n["freeze"], false, "{n}");
    assert_eq!(n["hit_limit"], 100, "{n}");

    let text = t.ctl_ok(&["breakpoint", "list"]);
    assert!(text.contains("yes, 60s"), "{text}");
    assert!(text.contains("yes, 90s"), "{text}");
    assert!(text.contains(&format!("trace {NEVER_FULL}")), "{text}");
    assert!(text.contains("header x-tenant=acme corp"), "{text}");
    assert!(text.contains("0/1"), "{text}");
}

#[test]
fn with_nothing_frozen_every_trace_command_says_so() {
    tracery_tests::require_root();
    let t = Standalone::start(&[], None);
    assert_eq!(t.ctl_ok(&["trace", "list"]).trim(), "no frozen traces");
    assert_eq!(t.ctl_ok(&["trace", "list", "--output", "json"]).trim(), "");

    // Resuming what is not frozen is a no-op, not a failure.
    let out = t.ctl_ok(&["trace", "resume", NEVER]);
    assert_eq!(
        out.trim(),
        format!("trace {NEVER_FULL} was never frozen; nothing to resume")
    );
    let out = t.ctl_ok(&["trace", "resume", NEVER, "--output", "json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["resumed"], false, "{v}");
    assert_eq!(v["last_release"], Value::Null, "{v}");

    let out = t.ctl(&["trace", "eval", NEVER, "order.qty"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: trace {NEVER_FULL} was never frozen; `trace eval` reads a thread only while its trace is frozen"
        )),
        "{stderr}"
    );
    let out = t.ctl(&["trace", "view", NEVER]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "trace {NEVER_FULL} was never frozen and has no snapshots"
        )),
        "{stderr}"
    );
}

/// Polls `trace list --output json` until trace `id` has a thread whose `suspended` is
/// true and its snapshot is stored (hits and freezes travel separately); returns the trace.
fn wait_suspended(t: &Standalone, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let out = t.ctl_ok(&["trace", "list", "--output", "json"]);
        let found = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["trace_id"] == id);
        if let Some(v) = found {
            let stopped = v["threads"]
                .as_array()
                .is_some_and(|ts| ts.iter().any(|th| th["suspended"] == true));
            if stopped && v["snapshots"].as_array().is_some_and(|s| !s.is_empty()) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "trace {id} was not frozen with a stopped thread within {within:?}; trace list: {out}; status: {}",
            t.ctl_ok(&["status"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Needs the agent's freezing (kernel trap + ptrace) to be in place.
#[test]
fn freeze_resume_end_to_end() {
    tracery_tests::require_root();
    let t = Standalone::start(&[], None);
    let (server, addr) = FixtureProcess::spawn_service(&fixture("c-httpd"), &[]);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    // The server starts a thread per connection: connect first, so the thread that will
    // serve the request exists when the breakpoint is armed (and the agent seizes it).
    let mut conn = tracery_tests::http::Connection::open(&addr);
    std::thread::sleep(Duration::from_millis(200));
    let id = t.set(&[
        "--pid",
        &server.pid().to_string(),
        "--at",
        &at("httpd_handle"),
        "--trace-id",
        trace,
        "--freeze",
        "--freeze-timeout",
        "20s",
    ]);

    // The request blocks while its thread is stopped: send it aside.
    let request = std::thread::spawn(move || {
        let started = Instant::now();
        let r = conn.request(
            &tracery_tests::http::Request::new("GET", "/orders/7")
                .header("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01")),
        );
        (r.status, started.elapsed())
    });

    let frozen = wait_suspended(&t, trace, Duration::from_secs(15));
    let th = &frozen["threads"][0];
    assert_eq!(th["pid"], server.pid(), "{frozen}");
    assert!(
        th["location"].as_str().unwrap().contains("handle_request"),
        "{frozen}"
    );
    let left = th["deadline_in_seconds"].as_i64().unwrap();
    assert!((1..=20).contains(&left), "{frozen}");
    assert!(
        frozen["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["breakpoint_id"].as_u64() == id.parse().ok()),
        "the snapshot of the freeze is not listed: {frozen}"
    );
    let text = t.ctl_ok(&["trace", "list"]);
    assert!(text.contains(trace) && text.contains("yes"), "{text}");

    // `status` was computed before the probed line: 200 for a GET.
    let out = t.ctl_ok(&["trace", "eval", trace, "status", "--output", "json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["value"], 200, "{v}");
    let out = t.ctl_ok(&["trace", "eval", trace, "status"]);
    assert_eq!(out.trim(), "status = 200");

    let out = t.ctl_ok(&["trace", "resume", trace]);
    assert!(
        out.starts_with(&format!("resumed trace {trace}: released 1 thread(s)")),
        "{out}"
    );
    let (status, took) = request.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(20),
        "released by the deadline, not the resume: {took:?}"
    );

    let again = t.ctl_ok(&["trace", "resume", trace]);
    assert!(
        again.starts_with(&format!("trace {trace} is not frozen; it was released at "))
            && again.trim_end().ends_with("(resumed); nothing to resume"),
        "{again}"
    );
    assert_eq!(t.ctl_ok(&["trace", "list"]).trim(), "no frozen traces");
}

/// SIGKILL the agent (standalone: controller and agent) while a request is frozen: the
/// kernel detaches its threads and delivers the trap's SIGCONT, whose default action is to
/// carry on, so the request completes, correctly, long before its deadline.
#[test]
fn killing_the_agent_releases_a_frozen_request() {
    tracery_tests::require_root();
    let mut t = Standalone::start(&[], None);
    let (server, addr) = FixtureProcess::spawn_service(&fixture("c-httpd"), &[]);
    let trace = "51e9a1ed51e9a1ed51e9a1ed51e9a1ed";
    let request = tracery_tests::http::Request::new("POST", "/orders/9")
        .header("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))
        .body("hello");
    let unfrozen = tracery_tests::http::Connection::open(&addr).request(&request);
    t.set(&[
        "--pid",
        &server.pid().to_string(),
        "--at",
        &at("httpd_handle"),
        "--trace-id",
        trace,
        "--freeze",
        "--freeze-timeout",
        "120s",
    ]);
    let a = addr.clone();
    let frozen = std::thread::spawn(move || {
        let started = Instant::now();
        let r = tracery_tests::http::Connection::open(&a).request(&request);
        (r, started.elapsed())
    });
    wait_suspended(&t, trace, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!frozen.is_finished(), "the request waits while frozen");
    let killed = Instant::now();
    t.stop();
    let (response, took) = frozen.join().unwrap();
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "released at once by the agent's death, not by the 120 s deadline: {took:?}"
    );
    assert_eq!(response.status, unfrozen.status);
    assert_eq!(response.body, unfrozen.body, "the same answer as unfrozen");
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    assert!(
        status.lines().any(|l| l == "TracerPid:\t0"),
        "nothing traces the server any more"
    );
}
