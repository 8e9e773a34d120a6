//! Python breakpoint cost (`cargo xtask bench python`, as root).
//!
//! Runs `tests/fixtures/python/orders.py` under Debian's `/usr/bin/python3.11`.
//!
//! - Slowdown elsewhere: `GET /spin` times a CPU-bound loop (`spin`, in-process, ns) with
//!   no breakpoint (A), with a breakpoint armed on a line of `apply_discount`, another
//!   function of the same process (B), and after removing it (C). Rounds alternate A and B
//!   so drift on the shared machine hits both. Goal: B/A - 1 ≤ 5 %.
//! - Per hit: `GET /price?n=N` times N calls of the path through the breakpoint line, with
//!   no breakpoint, and with a capturing one (every call is a hit: trap, frame walk, locals
//!   copy, ring record).

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use tracery_agent::{BreakpointSpec, Manager, Target};
use tracery_dwarf::CaptureLimits;
use tracery_tests::{http, FixtureProcess};

const PYTHON: &str = "/usr/bin/python3.11";
/// Loop iterations per `/spin` sample (about 20 ms of CPU).
const SPIN: u64 = 200_000;
/// A/B rounds, each one `/spin` sample per phase.
const ROUNDS: usize = 30;
/// Calls per `/price` sample: fits the Python ring buffer, drained between samples.
const PRICE_CALLS: u64 = 50;
const PRICE_SAMPLES: usize = 20;
const GOAL: f64 = 0.05;

fn get(addr: &str, path: &str) -> u64 {
    let mut c = http::Connection::open(addr);
    let r = c.request(&http::Request::new("GET", path));
    assert_eq!(r.status, 200, "GET {path}");
    String::from_utf8(r.body).unwrap().parse().unwrap()
}

fn median(mut v: Vec<u64>) -> f64 {
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    }
}

fn spec(id: u64, pid: u32, location: &str, hit_limit: u64) -> BreakpointSpec {
    BreakpointSpec {
        id,
        target: Target::Pid(pid),
        location: location.to_owned(),
        when: None,
        hit_limit,
        rate_per_sec: 0,
        expires_at: None,
        limits: CaptureLimits::default(),
        scope: Default::default(),
        freeze: None,
        capture_paths: Vec::new(),
    }
}

fn drain(m: &mut Manager) -> usize {
    let mut n = 0;
    let end = Instant::now() + Duration::from_millis(30);
    while Instant::now() < end {
        n += m.tick(Duration::from_millis(5)).unwrap().len();
    }
    n
}

/// `/price` medians, per call, in ns; hits delivered.
fn price(addr: &str, m: &mut Manager) -> (f64, usize) {
    let mut v = Vec::new();
    let mut hits = 0;
    for _ in 0..PRICE_SAMPLES {
        v.push(get(addr, &format!("/price?n={PRICE_CALLS}")));
        hits += drain(m);
    }
    (median(v) / PRICE_CALLS as f64, hits)
}

fn main() {
    if !tracery_tests::is_root() {
        eprintln!("the Python bench opens watchpoints: run `cargo xtask bench python` as root");
        std::process::exit(1);
    }
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/python/orders.py");
    let text = std::fs::read_to_string(&script).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("total = subtotal - discount"))
        .expect("line in orders.py") as u32
        + 1;
    let location = format!("python/orders.py:{line}");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script);
    let (svc, addr) = FixtureProcess::spawn_service_command(cmd);
    let pid = svc.pid();
    let mut m = Manager::start().expect("loading the agent");
    let spin = format!("/spin?n={SPIN}");
    for _ in 0..5 {
        get(&addr, &spin);
    }

    // Slowdown of a loop elsewhere: alternate unprobed and armed rounds.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(get(&addr, &spin));
        m.add(spec(1, pid, &location, 0)).expect("arming");
        b.push(get(&addr, &spin));
        m.remove(1).unwrap();
    }
    let mut c = Vec::new();
    for _ in 0..ROUNDS {
        c.push(get(&addr, &spin));
    }
    let (a, b, c) = (median(a), median(b), median(c));
    let slowdown = b / a - 1.0;
    println!("spin loop ({SPIN} iterations, median of {ROUNDS}):");
    println!("  unprobed              {:>10.0} ns", a);
    println!(
        "  breakpoint elsewhere  {:>10.0} ns  slowdown {:+.2} % (goal <= {:.0} %)",
        b,
        slowdown * 100.0,
        GOAL * 100.0
    );
    println!(
        "  after detach          {:>10.0} ns  ({:+.2} %)",
        c,
        (c / a - 1.0) * 100.0
    );

    // Per hit.
    let (base, _) = price(&addr, &mut m);
    m.add(spec(2, pid, &location, 0)).expect("arming");
    let (hit, hits) = price(&addr, &mut m);
    m.remove(2).unwrap();
    println!(
        "per call of the breakpoint's path (median of {PRICE_SAMPLES} x {PRICE_CALLS} calls):"
    );
    println!("  no breakpoint         {:>10.0} ns", base);
    println!(
        "  capturing hit         {:>10.0} ns  = {:.1} us per hit ({hits} snapshots delivered)",
        hit,
        (hit - base) / 1000.0
    );
    drop(svc);
    if slowdown > GOAL {
        eprintln!(
            "slowdown {:.2} % above the {:.0} % goal",
            slowdown * 100.0,
            GOAL * 100.0
        );
        std::process::exit(1);
    }
}
