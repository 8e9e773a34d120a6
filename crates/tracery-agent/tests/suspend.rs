//! Suspending one thread with ptrace and reading it while it is stopped (root).
//!
//! The target is this test binary run again as a helper process (`helper_process`): one
//! thread spins in [`spin`] with known locals, another counts in a sleep loop. Both
//! counters live in a static the test reads with `process_vm_readv`, so a test sees which
//! threads run. Traps are SIGCONTs sent with `tgkill` and a tracer that accepts them
//! ([`TrapSource::AnySigcont`]); the kernel-sent trap's `si_code` check is unit-tested in
//! `suspend.rs`.

use std::{
    io::{BufRead, BufReader},
    process::{Child, ChildStdout, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use serde_json::json;
use tracery_agent::{
    freeze::suspend::{read_memory, signal_thread, Tracer, TracerOptions, TrapSource, TRAP_SIGNAL},
    freeze::EvalError,
};

const HELPER_ENV: &str = "TRACERY_SUSPEND_HELPER";
const HOLDER_ENV: &str = "TRACERY_SUSPEND_HOLDER";
const IDLE_CHECK_ENV: &str = "TRACERY_SUSPEND_IDLE_CHECK";

/// Iterations of the spin loop per counter step, and of the sleep loop.
/// 0: spin loop steps, 1: sleep loop steps, 2: short-lived threads that ran.
static COUNTERS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

#[expect(
    dead_code,
    reason = "read by the tracer through DWARF, not by Rust code"
)]
struct Address {
    zip: i32,
    city: &'static str,
}

#[expect(
    dead_code,
    reason = "read by the tracer through DWARF, not by Rust code"
)]
struct Order {
    id: i32,
    qty: u32,
    items: [i32; 4],
    ship: Address,
}

/// Spins with no calls in the loop, so a stop almost always lands in this frame.
#[inline(never)]
fn spin(counter: &AtomicU64) -> ! {
    let order = Order {
        id: 42,
        qty: 3,
        items: [1, 2, 3, 4],
        ship: Address {
            zip: 1100,
            city: "Lisbon",
        },
    };
    let p = &order;
    // Far beyond a hit's capture caps.
    let big: String = (0..100_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut i: u64 = 0;
    let mut kept = p as *const Order as usize ^ big.len();
    loop {
        i += 1;
        if i == 1_000_000 {
            counter.fetch_add(1, Ordering::Relaxed);
            kept ^= counter as *const AtomicU64 as usize;
            i = 0;
        }
        if kept == 0 {
            break;
        }
    }
    unreachable!("{kept}")
}

fn thread_id() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

/// The helper process: prints `HELPER pid spin_tid sleep_tid counters_addr`, then runs.
#[test]
fn helper_process() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        tx.send(thread_id()).unwrap();
        spin(&COUNTERS[0])
    });
    let spin_tid = rx.recv().unwrap();
    std::thread::spawn(move || {
        tx2.send(thread_id()).unwrap();
        loop {
            COUNTERS[1].fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let sleep_tid = rx.recv().unwrap();
    // Thread churn, like a thread-per-connection server.
    std::thread::spawn(|| loop {
        std::thread::spawn(|| COUNTERS[2].fetch_add(1, Ordering::Relaxed))
            .join()
            .unwrap();
        std::thread::sleep(Duration::from_millis(10));
    });
    println!(
        "HELPER {} {spin_tid} {sleep_tid} {}",
        std::process::id(),
        COUNTERS.as_ptr() as usize
    );
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(0);
}

/// The holder process: seizes `pid`, traps `tid`, claims it, prints `HELD`, and waits to
/// be killed.
#[test]
fn holder_process() {
    let Some(arg) = std::env::var_os(HOLDER_ENV) else {
        return;
    };
    let arg = arg.into_string().unwrap();
    let (pid, tid) = arg.split_once(' ').unwrap();
    let (pid, tid): (u32, u32) = (pid.parse().unwrap(), tid.parse().unwrap());
    let tracer = Tracer::start_with(traps(Duration::from_secs(120))).unwrap();
    tracer.seize_process(pid).unwrap();
    signal_thread(pid, tid, TRAP_SIGNAL).unwrap();
    tracer.claim_trap(tid, Duration::from_secs(5)).unwrap();
    println!("HELD");
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(0);
}

/// Options that take any SIGCONT as a trap, so `tgkill` can stand in for the kernel.
fn traps(claim_window: Duration) -> TracerOptions {
    TracerOptions {
        traps: TrapSource::AnySigcont,
        claim_window,
        follow_clones: false,
    }
}

/// Runs one test of this binary as a child process with `env` set.
fn spawn_self(test: &str, env: (&str, &str)) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env.0, env.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

fn line_starting(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before printing {prefix:?}"
        );
        // libtest prints `test NAME ... ` before the test's own output, on the same line.
        if let Some(at) = line.find(prefix) {
            return line[at..].trim().to_string();
        }
    }
}

struct Helper {
    child: Child,
    pid: u32,
    spin_tid: u32,
    sleep_tid: u32,
    counters: u64,
}

impl Helper {
    fn spawn() -> Helper {
        let (child, mut out) = spawn_self("helper_process", (HELPER_ENV, "1"));
        let line = line_starting(&mut out, "HELPER ");
        let f: Vec<u64> = line[7..].split(' ').map(|x| x.parse().unwrap()).collect();
        Helper {
            child,
            pid: f[0] as u32,
            spin_tid: f[1] as u32,
            sleep_tid: f[2] as u32,
            counters: f[3],
        }
    }

    fn counter(&self, i: u64) -> u64 {
        let mut b = [0u8; 8];
        let n = read_memory(self.pid, self.counters + 8 * i, &mut b).unwrap();
        assert_eq!(n, 8);
        u64::from_le_bytes(b)
    }

    /// Whether counter `i` moves within `wait`.
    fn runs(&self, i: u64, wait: Duration) -> bool {
        let a = self.counter(i);
        std::thread::sleep(wait);
        self.counter(i) != a
    }

    /// The scheduler state letter of a thread (`R`, `S`, `t` for a ptrace-stop...).
    fn state(&self, tid: u32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{}/task/{tid}/stat", self.pid)).unwrap();
        stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
    }

    fn tracer_pid(&self, tid: u32) -> u32 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/task/{tid}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops the spin thread with a SIGCONT trap and claims it; returns its registers and
/// how long from the signal to the claim.
fn trap(t: &Tracer, h: &Helper, tid: u32) -> (tracery_agent::freeze::suspend::UserRegs, Duration) {
    let start = Instant::now();
    signal_thread(h.pid, tid, TRAP_SIGNAL).unwrap();
    let regs = t.claim_trap(tid, Duration::from_secs(2)).unwrap();
    (regs, start.elapsed())
}

#[test]
fn a_trapped_thread_stops_alone_and_resumes() {
    tracery_tests::require_root();
    let h = Helper::spawn();
    let t = Tracer::start_with(traps(Duration::from_secs(30))).unwrap();
    let seized = t.seize_process(h.pid).unwrap();
    assert!(t.take_new_threads().is_empty(), "clones are not followed");
    for tid in [h.pid, h.spin_tid, h.sleep_tid] {
        assert!(seized.contains(&tid), "{tid} not in {seized:?}");
    }
    // The helper churns threads, so a second seize may find a new one; it must never
    // seize an already seized thread again.
    let again = t.seize_process(h.pid).unwrap();
    assert!(
        again.iter().all(|tid| !seized.contains(tid)),
        "seizing twice re-seized {again:?} of {seized:?}"
    );
    assert!(
        h.runs(0, Duration::from_millis(100)),
        "seized threads keep running"
    );

    let mut latencies = Vec::new();
    for _ in 0..5 {
        let (regs, took) = trap(&t, &h, h.spin_tid);
        latencies.push(took);
        assert_ne!(regs.pc(), 0);
        assert_eq!(
            h.state(h.spin_tid),
            't',
            "the trapped thread is in a ptrace-stop"
        );
        assert!(t.is_stopped(h.spin_tid));
        assert!(
            !h.runs(0, Duration::from_millis(50)),
            "the trapped thread is stopped"
        );
        assert!(
            h.runs(1, Duration::from_millis(50)),
            "the other threads keep running"
        );
        assert_ne!(h.state(h.sleep_tid), 't');
        assert!(t.resume(h.spin_tid).unwrap());
        assert!(!t.resume(h.spin_tid).unwrap(), "resuming a running thread");
        assert!(
            h.runs(0, Duration::from_millis(100)),
            "resumed thread runs again"
        );
    }
    latencies.sort();
    eprintln!(
        "signal-to-claimed latency (min, median, max): {:?}",
        (latencies[0], latencies[2], latencies[4])
    );
    assert!(latencies[2] < Duration::from_millis(50), "{latencies:?}");

    t.release_process(h.pid).unwrap();
    for tid in [h.pid, h.spin_tid, h.sleep_tid] {
        assert_eq!(h.tracer_pid(tid), 0, "thread {tid} still traced");
    }
    assert_eq!(t.stats().seized, 0);
    assert!(h.runs(0, Duration::from_millis(100)));
}

#[test]
fn release_lets_a_stopped_thread_go() {
    tracery_tests::require_root();
    let h = Helper::spawn();
    let t = Tracer::start_with(traps(Duration::from_secs(30))).unwrap();
    t.seize_process(h.pid).unwrap();
    trap(&t, &h, h.spin_tid);
    assert!(!h.runs(0, Duration::from_millis(50)));
    drop(t);
    assert_eq!(h.tracer_pid(h.spin_tid), 0);
    assert!(
        h.runs(0, Duration::from_millis(100)),
        "dropping the tracer released it"
    );
}

/// Whether this kernel gives the tracer thread an io_uring `waitid` to sleep on (6.7 and
/// later, io_uring not disabled); `Err` says why not.
fn ring_waitid_expected() -> Result<(), String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|x| x.parse::<u32>().unwrap_or(0));
    let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    if (major, minor) < (6, 7) {
        return Err(format!(
            "kernel {} has no io_uring waitid (6.7+)",
            release.trim()
        ));
    }
    match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        Ok(d) if d.trim() != "0" => Err(format!(
            "io_uring is disabled (io_uring_disabled = {})",
            d.trim()
        )),
        _ => Ok(()),
    }
}

/// While a process is seized and nothing happens, the tracer thread sleeps: it wakes for
/// tracee events and commands, not on a timer (it polled every 2 ms before: ~500 wakeups a
/// second, about 20 µs of CPU per request in `cargo xtask bench freeze`).
///
/// The check runs in a process of its own ([`idle_tracer_check`]): signals the other
/// tests' processes send this one end the tracer's wait early, and would hide a wait that
/// never ends by itself.
#[test]
fn an_idle_seized_process_does_not_wake_the_tracer() {
    tracery_tests::require_root();
    if let Err(why) = ring_waitid_expected() {
        eprintln!("SKIPPED: the tracer thread polls here, as it should: {why}");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "idle_tracer_check",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(IDLE_CHECK_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("IDLE CHECK PASSED"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The body of [`an_idle_seized_process_does_not_wake_the_tracer`], run alone in a child.
#[test]
fn idle_tracer_check() {
    if std::env::var_os(IDLE_CHECK_ENV).is_none() {
        return;
    }
    let h = Helper::spawn();
    let t = Tracer::start().unwrap();
    t.seize_process(h.pid).unwrap();
    let before = t.stats();
    assert!(
        before.waits_on_events,
        "the tracer thread fell back to polling: {before:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = t.stats();
    // The stats command wakes it once; a 2 ms poll would have woken it ~250 times.
    assert!(
        after.wakeups - before.wakeups <= 3,
        "{} wakeups in 500 ms with nothing happening",
        after.wakeups - before.wakeups
    );
    // A signal to a seized thread wakes it at once, with no command to prompt a reap: the
    // thread is let go with its signal (not a trap for this tracer).
    signal_thread(h.pid, h.spin_tid, TRAP_SIGNAL).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        h.runs(0, Duration::from_millis(100)),
        "the signal was passed on"
    );
    assert_eq!(h.state(h.spin_tid), 'R');
    let s = t.stats();
    assert_eq!(s.reinjected, 1, "{s:?}");
    assert!(s.waits_on_events, "{s:?}");
    println!("IDLE CHECK PASSED");
}

#[test]
fn unclaimed_traps_are_resumed() {
    tracery_tests::require_root();
    let h = Helper::spawn();
    let t = Tracer::start_with(traps(Duration::from_millis(200))).unwrap();
    t.seize_process(h.pid).unwrap();
    signal_thread(h.pid, h.spin_tid, TRAP_SIGNAL).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(t.is_stopped(h.spin_tid));
    std::thread::sleep(Duration::from_millis(400));
    assert!(!t.is_stopped(h.spin_tid));
    assert_eq!(t.stats().unclaimed_traps, 1);
    assert!(h.runs(0, Duration::from_millis(100)));
}

#[test]
fn user_signals_and_group_stops_pass_through() {
    tracery_tests::require_root();
    let h = Helper::spawn();
    // The agent's tracer: only kernel-sent SIGCONTs are traps.
    let t = Tracer::start().unwrap();
    t.seize_process(h.pid).unwrap();
    // A tgkill'd SIGCONT is no trap: passed on, the thread runs on.
    signal_thread(h.pid, h.spin_tid, TRAP_SIGNAL).unwrap();
    assert!(matches!(
        t.claim_trap(h.spin_tid, Duration::from_millis(200)),
        Err(tracery_agent::freeze::suspend::SuspendError::NoTrap { .. })
    ));
    assert!(h.runs(0, Duration::from_millis(50)));
    // `kill -STOP` stops the whole process, `kill -CONT` lets it go, as without a tracer.
    signal_thread(h.pid, h.pid, libc::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!h.runs(0, Duration::from_millis(50)), "group-stopped");
    assert!(!h.runs(1, Duration::from_millis(50)), "group-stopped");
    signal_thread(h.pid, h.pid, libc::SIGCONT).unwrap();
    assert!(h.runs(0, Duration::from_millis(100)), "continued");
    assert!(h.runs(1, Duration::from_millis(100)), "continued");
    let s = t.stats();
    assert_eq!(s.stopped, 0);
    assert!(s.reinjected >= 2, "{s:?}");
}

#[test]
fn a_killed_tracer_leaves_the_thread_running() {
    tracery_tests::require_root();
    let h = Helper::spawn();
    let arg = format!("{} {}", h.pid, h.spin_tid);
    let (mut holder, mut out) = spawn_self("holder_process", (HOLDER_ENV, &arg));
    line_starting(&mut out, "HELD");
    assert_eq!(h.state(h.spin_tid), 't');
    assert!(
        !h.runs(0, Duration::from_millis(100)),
        "held by the other process"
    );
    assert!(h.runs(1, Duration::from_millis(50)));
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_ne!(h.state(h.spin_tid), 't');
    assert_ne!(h.state(h.spin_tid), 'T');
    assert_eq!(h.tracer_pid(h.spin_tid), 0);
    assert!(
        h.runs(0, Duration::from_millis(100)),
        "the thread runs after its tracer was killed"
    );
    assert!(h.runs(1, Duration::from_millis(50)));
}

/// Traps the spin thread until it is stopped inside `spin` (not in the counter update).
fn trap_in_spin(t: &Tracer, h: &Helper) -> tracery_agent::freeze::suspend::UserRegs {
    for _ in 0..20 {
        let (regs, _) = trap(t, h, h.spin_tid);
        match tracery_agent::freeze::eval::eval(h.pid, &regs, "order.id") {
            Ok(_) => return regs,
            Err(_) => {
                t.resume(h.spin_tid).unwrap();
            }
        }
    }
    panic!("the spin thread never stopped inside spin()");
}

#[test]
fn eval_reads_locals_of_the_stopped_thread() {
    tracery_tests::require_root();
    let h = Helper::spawn();
    let t = Tracer::start_with(traps(Duration::from_secs(30))).unwrap();
    t.seize_process(h.pid).unwrap();
    let regs = trap_in_spin(&t, &h);
    let ev = |e: &str| tracery_agent::freeze::eval::eval(h.pid, &regs, e);
    assert_eq!(ev("order.id").unwrap(), json!(42));
    assert_eq!(ev("order.qty").unwrap(), json!(3));
    assert_eq!(ev("order.items[2]").unwrap(), json!(3));
    assert_eq!(ev("order.ship.zip").unwrap(), json!(1100));
    assert_eq!(ev("order.ship.city").unwrap(), json!("Lisbon"));
    assert_eq!(ev("p->ship.zip").unwrap(), json!(1100));
    assert!(
        ev("(*p)").is_err(),
        "parentheses are not part of the grammar"
    );
    let big = ev("big").unwrap();
    let big = big.as_str().expect("a string");
    assert_eq!(big.len(), 100_000, "read whole, past the 4 KiB op cap");
    assert!(
        big.starts_with("abcdef") && big.ends_with(&"abcdefghijklmnopqrstuvwxyz"[..100_000 % 26])
    );
    let whole = ev("*p").unwrap();
    assert_eq!(whole["qty"], json!(3), "{whole}");
    match ev("nope") {
        Err(EvalError::Expression(m)) => assert!(m.contains("order"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(ev("order.nope"), Err(EvalError::Expression(_))));
    assert!(matches!(
        ev("order.items[7]"),
        Err(EvalError::Expression(_))
    ));
    // Still stopped: eval never resumes the thread.
    assert!(!h.runs(0, Duration::from_millis(50)));
    assert!(t.resume(h.spin_tid).unwrap());
    assert!(h.runs(0, Duration::from_millis(100)));
}

#[test]
fn new_threads_are_seized_when_following_clones() {
    tracery_tests::require_root();
    let h = Helper::spawn();
    let t = Tracer::start_with(TracerOptions {
        follow_clones: true,
        ..traps(Duration::from_secs(30))
    })
    .unwrap();
    t.seize_process(h.pid).unwrap();
    let before = h.counter(2);
    std::thread::sleep(Duration::from_millis(300));
    let new = t.take_new_threads();
    let ran = h.counter(2) - before;
    assert!(
        ran >= 5,
        "thread creation must go on while followed: {ran} threads ran"
    );
    assert!(
        new.len() as u64 + 1 >= ran,
        "every new thread is reported: {} reported, {ran} ran",
        new.len()
    );
    assert!(new.iter().all(|(pid, _)| *pid == h.pid), "{new:?}");
    assert!(t.take_new_threads().len() <= 2, "taken once");
    assert!(h.runs(0, Duration::from_millis(50)));
    assert!(h.runs(1, Duration::from_millis(50)));
    t.release_process(h.pid).unwrap();
    for tid in [h.pid, h.spin_tid, h.sleep_tid] {
        assert_eq!(h.tracer_pid(tid), 0, "thread {tid} still traced");
    }
    let before = h.counter(2);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        h.counter(2) > before,
        "threads are still created after release"
    );
}

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn http_request(path: &str, traceparent: bool, body: &str) -> String {
    let tp = if traceparent {
        format!("traceparent: 00-{TRACE}-b7ad6b7169203331-01\r\n")
    } else {
        String::new()
    };
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\n{tp}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn exchange(mut s: std::net::TcpStream, req: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// The real path: the capture uprobe sends the kernel trap to a seized thread of the C
/// HTTP server (one thread per connection) at `handle_request`.
#[test]
fn a_kernel_trap_stops_one_server_thread_at_the_breakpoint() {
    use std::net::TcpStream;
    use tracery_agent::{prepare, ArmOptions, Session};

    tracery_tests::require_root();
    let (server, addr) =
        tracery_tests::FixtureProcess::spawn_service(&tracery_tests::fixture("c-httpd"), &["0"]);
    let pid = server.pid();
    let state = |tid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
        stat.rsplit_once(") ").unwrap().1.chars().next().unwrap()
    };
    let req = http_request("/orders/7", true, "hello");
    let unfrozen = exchange(TcpStream::connect(&addr).unwrap(), &req);

    let tracer = Tracer::start_with(TracerOptions {
        follow_clones: true,
        ..TracerOptions::default()
    })
    .unwrap();
    let mut session = Session::start().unwrap();
    let (file, line) = tracery_tests::marker_line("httpd_handle");
    let location = format!("{}:{line}", file.file_name().unwrap().to_string_lossy());
    let bp = prepare(pid, &location, &tracery_dwarf::CaptureLimits::default()).unwrap();
    let opts = ArmOptions {
        breakpoint_id: 7,
        freeze: Some(Duration::from_secs(60)),
        ..ArmOptions::default()
    };
    session.arm(&bp, &opts).unwrap();
    tracer.seize_process(pid).unwrap();
    session.tracker().mark_seized(pid).unwrap();

    // The connection's thread is created on accept: wait until it is seized and the
    // kernel may trap it, then send the request.
    let conn = TcpStream::connect(&addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let conn_tid = loop {
        assert!(
            Instant::now() < deadline,
            "the connection's thread was not seized"
        );
        // The kernel traps any thread of a seized process; the tracer follows new ones.
        if let Some((_, t)) = tracer.take_new_threads().into_iter().next() {
            break t;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let sent = Instant::now();
    let frozen = std::thread::spawn(move || exchange(conn, &req));
    let deadline = Instant::now() + Duration::from_secs(10);
    let trapped = loop {
        assert!(Instant::now() < deadline, "no trapped hit within 10 s");
        session.poll(Duration::from_millis(5)).unwrap();
        if let Some(t) = session.take_trapped().into_iter().find(|t| t.pid == pid) {
            break t;
        }
    };
    assert_eq!(trapped.tid, conn_tid);
    let regs = tracer
        .claim_trap(trapped.tid, Duration::from_secs(1))
        .unwrap();
    eprintln!(
        "request sent -> thread claimed at the breakpoint: {:?}; stopped pc = probe + {}",
        sent.elapsed(),
        regs.pc() as i64 - bp.bias.to_proc(bp.sites[0].0.address).0 as i64
    );
    assert_eq!(state(conn_tid), 't', "stopped in a ptrace-stop");

    // (a) The process's other threads run: other connections are served meanwhile.
    for i in 0..5 {
        let r = exchange(
            TcpStream::connect(&addr).unwrap(),
            &http_request(&format!("/other/{i}"), false, "x"),
        );
        assert!(
            r.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&r)
        );
    }
    assert_eq!(state(conn_tid), 't', "still stopped");

    // (b) Locals and arguments at the breakpoint, read live.
    let ev = |e: &str| tracery_agent::freeze::eval::eval(pid, &regs, e);
    assert_eq!(ev("body_len").unwrap(), json!(5));
    assert_eq!(ev("status").unwrap(), json!(200));
    assert_eq!(ev("path").unwrap(), json!("/orders/7"));
    assert_eq!(ev("method").unwrap(), json!("POST"));
    assert_eq!(ev("body").unwrap(), json!("hello"));
    match ev("no_such_variable") {
        Err(EvalError::Expression(m)) => assert!(m.contains("body_len"), "{m}"),
        other => panic!("{other:?}"),
    }

    // (c) Resumed, the request completes as it does without the stop.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!frozen.is_finished(), "the stopped request must wait");
    assert!(tracer.resume(conn_tid).unwrap());
    let resumed = frozen.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&resumed),
        String::from_utf8_lossy(&unfrozen)
    );
    tracer.release_process(pid).unwrap();
    let r = exchange(
        TcpStream::connect(&addr).unwrap(),
        &http_request("/after", false, "x"),
    );
    assert!(r.starts_with(b"HTTP/1.1 200"));
    drop(server);
}
