//! One hit through the real kernel, for the differential tests of standard-library values:
//! the program prints `ready`, then waits for a line on stdin before it reaches its probe.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tracery_agent::{prepare, ArmOptions, Session, Snapshot};
use tracery_dwarf::CaptureLimits;

/// Starts `cmd`, arms `location` in it through a real uprobe, lets it go and returns the
/// first hit (20 s at most) with the child, which may still run (the caller ends it).
#[allow(
    clippy::zombie_processes,
    reason = "the child goes to the caller, which waits for it; a failed test ends it"
)]
pub fn one_hit(mut cmd: Command, location: &str, limits: &CaptureLimits) -> (Snapshot, Child) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the program");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut ready = String::new();
    stdout.read_line(&mut ready).expect("read its first line");
    assert_eq!(ready.trim(), "ready");

    let bp = prepare(child.id(), location, limits).expect("prepare the breakpoint");
    let mut session = Session::start().expect("load the eBPF programs");
    session
        .arm(&bp, &ArmOptions::default())
        .expect("arm the breakpoint");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(b"go\n")
        .expect("let it go");

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no hit within 20 s");
        }
        let hit = session
            .poll(Duration::from_millis(50))
            .expect("poll")
            .into_iter()
            .next();
        if let Some(s) = hit {
            return (s, child);
        }
    }
}
