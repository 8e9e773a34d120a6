//! `tracery-ctl probe --when`: conditions checked in the kernel and in user space, against
//! the real C fixture.

mod common;

use std::process::Output;

use common::*;
use serde_json::{json, Value};
use tracery_tests::FixtureProcess;

/// Runs `probe --output json` with a condition; returns the exit status's output and hits.
fn probe_when(
    pid: u32,
    location: &str,
    when: &str,
    count: u64,
    timeout: &str,
) -> (Output, Vec<Value>) {
    let out = ctl()
        .args(["probe", "--pid", &pid.to_string(), "--at", location])
        .args(["--count", &count.to_string(), "--timeout", timeout])
        .args(["--output", "json", "--when", when])
        .output()
        .expect("run tracery-ctl");
    let hits = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    (out, hits)
}

/// The kernel and user-space counts of `--when ... filtered K hits in the kernel and U in
/// user space`.
fn filtered(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("hits in the kernel and"))
        .unwrap_or_else(|| panic!("no filter report in: {stderr}"));
    // The expression itself may hold numbers: read only what follows it.
    let (_, counts) = line.rsplit_once("` filtered ").expect("filter report");
    let numbers: Vec<u64> = counts
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [kernel, user] = numbers[..] else {
        panic!("{line}")
    };
    (kernel, user)
}

#[test]
fn c_o0_kernel_and_user_conditions_both_hold() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-O0", &["serve"]);
    let (out, hits) = probe_when(
        p.pid(),
        &at("c_after_total"),
        "id == 42 && customer == \"alice\"",
        2,
        "20",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(hits.len(), 2, "{stderr}");
    for h in &hits {
        assert_eq!(var(h, "id"), &json!(42));
        assert_eq!(var(h, "customer"), &json!("alice"));
    }
    assert!(
        stderr.contains("the kernel checks `id == 42`; user space checks `customer == \"alice\"`"),
        "{stderr}"
    );
    assert_eq!(filtered(&stderr), (0, 0), "{stderr}");
}

#[test]
fn c_o0_false_kernel_condition_emits_nothing() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-O0", &["serve"]);
    let (out, hits) = probe_when(p.pid(), &at("c_after_total"), "id == 41", 1, "2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(hits.is_empty(), "{hits:?}");
    assert!(stderr.contains("user space checks nothing"), "{stderr}");
    // serve calls process_order every 20 ms: about 100 calls in 2 s, all dropped in the
    // kernel, none reaching user space.
    let (kernel, user) = filtered(&stderr);
    assert!(kernel > 10, "{stderr}");
    assert_eq!(user, 0, "{stderr}");
}

#[test]
fn c_o0_false_user_condition_filters_in_user_space() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-O0", &["serve"]);
    let (out, hits) = probe_when(
        p.pid(),
        &at("c_after_total"),
        "id == 42 && customer == \"bob\"",
        1,
        "2",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(hits.is_empty(), "{hits:?}");
    let (kernel, user) = filtered(&stderr);
    assert_eq!(kernel, 0, "{stderr}");
    assert!(user > 10, "{stderr}");
}

#[test]
fn hot_loop_false_condition_stays_in_the_kernel() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-O2", &["hot"]);
    let (out, hits) = probe_when(p.pid(), "tick", "i < 0", 1, "2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(hits.is_empty(), "{hits:?}");
    assert!(
        stderr.contains("the kernel checks `i < 0`; user space checks nothing"),
        "{stderr}"
    );
    let (kernel, user) = filtered(&stderr);
    assert!(kernel > 1000, "a tight loop for 2 s: {stderr}");
    assert_eq!(user, 0, "{stderr}");
}

#[test]
fn hot_loop_true_condition_gives_exactly_count_hits() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-O2", &["hot"]);
    let (out, hits) = probe_when(p.pid(), "tick", "i >= 0", 5, "20");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(hits.len(), 5, "{stderr}");
    for h in &hits {
        assert!(var(h, "i").as_i64().unwrap() >= 0, "{h}");
    }
    assert!(stderr.contains("detached: 5 hits captured"), "{stderr}");
}

#[test]
fn malformed_when_shows_a_caret() {
    // Parsed before any privilege or process check: no root needed.
    let out = ctl()
        .args([
            "probe",
            "--pid",
            &std::process::id().to_string(),
            "--at",
            "tick",
        ])
        .args(["--when", "order.qty > && x"])
        .output()
        .expect("run tracery-ctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "malformed --when: expected a value after `>`\n  order.qty > && x\n              ^\n"
        ),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_variable_names_the_scope() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-O0", &["serve"]);
    let out = probe_raw(p.pid(), &at("c_after_total"), 1, &["--when", "qtty > 1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown variable `qtty` in --when; in scope at this location: id, qty"),
        "{stderr}"
    );
}
