//! The exec tracepoint reports processes as they start (root: loads eBPF).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use tracery_agent::{Matcher, ProbeTable};

#[test]
fn reports_a_started_process_with_its_path() {
    tracery_tests::require_root();
    let mut table = ProbeTable::load().expect("load eBPF");
    let mut watcher = table.watch_execs().expect("attach exec tracepoint");
    let mut child = Command::new("/bin/sleep").arg("0.5").spawn().unwrap();
    let pid = child.id();
    let expected = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = None;
    while seen.is_none() && Instant::now() < deadline {
        for e in watcher.poll(Duration::from_millis(200)).unwrap() {
            if e.pid == pid {
                seen = Some(e);
            }
        }
    }
    child.wait().unwrap();
    let e = seen.expect("no exec event for the child within 5 s");
    // The tracepoint gives the path as exec'd; /proc resolves symlinks. Both must name
    // the same file, and the service matcher must accept the process by its exe.
    assert_eq!(
        std::fs::canonicalize(&e.path).unwrap(),
        std::fs::canonicalize(&expected).unwrap()
    );
    assert!(Matcher::Exe(expected).matches_exec(&e));
}
