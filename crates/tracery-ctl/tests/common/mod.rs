//! Shared helpers for the CLI's end-to-end tests: run `tracery-ctl` against real fixture
//! processes and pick values out of its JSON.
// Not `expect`: the test files that use every helper would leave it unfulfilled.
#![allow(dead_code, reason = "each test file uses a different subset")]

pub mod browser;
pub mod standalone;

use std::{
    path::Path,
    process::{Command, Output},
};

use serde_json::Value;

/// `tracery-ctl` as built by this test run.
pub fn ctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tracery-ctl"))
}

/// `FILE:LINE` of a `@probe:` marker, with the file's base name.
pub fn at(marker: &str) -> String {
    let (file, line) = tracery_tests::marker_line(marker);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    format!("{name}:{line}")
}

/// The line number of a marker.
pub fn line_of(marker: &str) -> u32 {
    tracery_tests::marker_line(marker).1
}

/// Runs `tracery-ctl probe --output json` and returns every hit; panics with stderr on failure.
pub fn probe_json(pid: u32, location: &str, count: u64, extra: &[&str]) -> Vec<Value> {
    let out = probe_raw(
        pid,
        location,
        count,
        &[&["--output", "json"], extra].concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "probe failed: {stderr}");
    let hits: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    assert_eq!(
        hits.len() as u64,
        count,
        "expected {count} hits; stderr: {stderr}"
    );
    hits
}

/// Runs `tracery-ctl probe` with whatever arguments and returns its output.
pub fn probe_raw(pid: u32, location: &str, count: u64, extra: &[&str]) -> Output {
    ctl()
        .args(["probe", "--pid", &pid.to_string(), "--at", location])
        .args(["--count", &count.to_string(), "--timeout", "20"])
        .args(extra)
        .output()
        .expect("run tracery-ctl")
}

/// The entry (name, kind, type, value) of variable `name` of the probed function itself.
pub fn var_entry<'a>(hit: &'a Value, name: &str) -> &'a Value {
    find_var(hit, None, name)
}

/// The value of variable `name` of the probed function itself (not of an inlined callee).
pub fn var<'a>(hit: &'a Value, name: &str) -> &'a Value {
    &find_var(hit, None, name)["value"]
}

/// The value of variable `name` of the inlined function `frame` at the probe.
pub fn inlined_var<'a>(hit: &'a Value, frame: &str, name: &str) -> &'a Value {
    &find_var(hit, Some(frame), name)["value"]
}

fn find_var<'a>(hit: &'a Value, frame: Option<&str>, name: &str) -> &'a Value {
    hit["variables"]
        .as_array()
        .expect("variables array")
        .iter()
        .find(|v| v["name"] == name && v.get("frame").and_then(Value::as_str) == frame)
        .unwrap_or_else(|| panic!("no variable {name} (frame {frame:?}) in {hit:#}"))
}

/// True when a value is reported as not available (optimized out, unreadable...).
pub fn is_unavailable(v: &Value) -> bool {
    v.get("unavailable").is_some()
}

/// Asserts that `v` equals `expected` or is reported unavailable: never a wrong value.
pub fn exact_or_unavailable(name: &str, v: &Value, expected: &Value) {
    assert!(
        v == expected || is_unavailable(v),
        "{name}: expected {expected} or unavailable, got {v}"
    );
}

/// Asserts variable `name` of the probed function: exactly `expected` when `strict`
/// (unoptimized builds), else `expected` or reported unavailable.
pub fn check_var(hit: &Value, variant: &str, strict: bool, name: &str, expected: &Value) {
    let v = var(hit, name);
    if strict {
        assert_eq!(v, expected, "{variant}: {name}");
    } else {
        exact_or_unavailable(name, v, expected);
    }
}

/// Function names of the stack, innermost first.
pub fn stack_functions(hit: &Value) -> Vec<String> {
    hit["stack"]
        .as_array()
        .expect("stack array")
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The file base name of a path string.
pub fn base(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or(path)
}

/// The first byte of the instruction at `file_offset` as the process sees it right now.
pub fn live_byte(pid: u32, file_offset: u64) -> u8 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let m = maps
        .lines()
        .find(|l| {
            l.ends_with(exe.to_str().unwrap()) && l.split_whitespace().nth(1).unwrap().contains('x')
        })
        .expect("executable mapping");
    let mut f = m.split_whitespace();
    let start = u64::from_str_radix(f.next().unwrap().split('-').next().unwrap(), 16).unwrap();
    let off = u64::from_str_radix(f.nth(1).unwrap(), 16).unwrap();
    let addr = start + (file_offset - off);
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut b = [0u8];
    std::os::unix::fs::FileExt::read_exact_at(&mem, &mut b, addr).unwrap();
    b[0]
}
