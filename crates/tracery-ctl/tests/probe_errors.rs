//! Clear errors from `tracery-ctl probe` for the mistakes users make.

mod common;

use std::os::unix::process::CommandExt;

use common::*;
use tracery_tests::FixtureProcess;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn line_without_code_suggests_nearest_lines() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-O0", &["serve"]);
    let line = line_of("c_no_code");
    let out = probe_raw(p.pid(), &at("c_no_code"), 1, &[]);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("no code at orders.c:{line}")),
        "{err}"
    );
    // The lines just before (the `total` assignment) and after (c_after_total) have code.
    let before = (line - 1).to_string();
    let after = (line + 1).to_string();
    assert!(err.contains(&before) && err.contains(&after), "{err}");
}

#[test]
fn binary_without_dwarf() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-nodwarf", &["serve"]);
    let out = probe_raw(p.pid(), "process_order", 1, &[]);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(err.contains("no DWARF in"), "{err}");
    assert!(err.contains("rebuild with -g"), "{err}");
}

#[test]
fn pid_that_does_not_exist() {
    tracery_tests::require_root();
    // PIDs above pid_max (4194304 at most) never exist.
    let out = probe_raw(99_999_999, "main", 1, &[]);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(err.contains("no process with PID 99999999"), "{err}");
}

#[test]
fn without_root_or_cap_bpf() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-O0", &["serve"]);
    let out = ctl()
        .args([
            "probe",
            "--pid",
            &p.pid().to_string(),
            "--at",
            "process_order",
        ])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run tracery-ctl as nobody");
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(err.contains("needs root"), "{err}");
    assert!(err.contains("CAP_BPF"), "{err}");
}

#[test]
fn unknown_function_suggests_names() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-O0", &["serve"]);
    let out = probe_raw(p.pid(), "process_ordr", 1, &[]);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(err.contains("process_order"), "{err}");
}
