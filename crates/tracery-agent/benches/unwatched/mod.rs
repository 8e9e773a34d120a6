//! The cost of a system call in a process nobody watches, while a breakpoint that needs
//! the trace tracker is armed elsewhere on the node (`cargo xtask bench freeze`).

use std::time::Instant;

use tracery_agent::{capture::program_stats, BreakpointSpec, Manager, ProgramStats};

/// The cost of a system call in a process nobody watches, while a breakpoint that needs
/// tracking is armed elsewhere on the node, against the same with nothing armed.
pub struct UnwatchedCost {
    armed_ns: f64,
    idle_ns: f64,
    /// The same for a 1-byte write to /dev/null: a system call the tracker hooks.
    io_armed_ns: f64,
    io_idle_ns: f64,
    /// The same for a 1-byte read of /dev/zero: not hooked where `sock/sock_recv_length`
    /// parses receives.
    read_armed_ns: f64,
    read_idle_ns: f64,
    /// The same for a 1-byte TCP send over loopback and its receive: both pass the
    /// node-wide `sock_{send,recv}_length` tracepoints.
    tcp_armed_ns: f64,
    tcp_idle_ns: f64,
    /// Runs of the syscall programs while nothing was armed (0: detached).
    idle_runs: u64,
    programs: Vec<ProgramStats>,
    calls: u64,
}

const SYSCALLS: u64 = 1_000_000;

/// Times `getppid` (a system call glibc does not cache) in this, unwatched, process.
fn time_syscalls() -> f64 {
    time_calls(|| {
        std::hint::black_box(std::os::unix::process::parent_id());
    })
}

/// Times a 1-byte `write` to /dev/null in this, unwatched, process.
fn time_io_syscalls() -> f64 {
    use std::io::Write;
    let mut null = std::fs::File::options()
        .write(true)
        .open("/dev/null")
        .expect("opening /dev/null");
    time_calls(|| {
        null.write_all(b"x").expect("writing /dev/null");
    })
}

/// Times a 1-byte `read` of /dev/zero in this, unwatched, process.
fn time_read_syscalls() -> f64 {
    use std::io::Read;
    let mut zero = std::fs::File::open("/dev/zero").expect("opening /dev/zero");
    let mut b = [0u8; 1];
    time_calls(|| {
        zero.read_exact(&mut b).expect("reading /dev/zero");
    })
}

/// Times a 1-byte TCP send over loopback and the receive of that byte, in this, unwatched,
/// process: what a database server or a cache pays per message.
fn time_tcp_round() -> f64 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding loopback");
    let mut tx = std::net::TcpStream::connect(listener.local_addr().expect("local address"))
        .expect("connecting over loopback");
    tx.set_nodelay(true).expect("TCP_NODELAY");
    let (mut rx, _) = listener.accept().expect("accepting");
    let mut b = [0u8; 1];
    // A loopback round is some µs: fewer rounds than the plain calls.
    time_n_calls(SYSCALLS / 10, || {
        tx.write_all(b"x").expect("sending");
        rx.read_exact(&mut b).expect("receiving");
    })
}

fn time_calls(call: impl FnMut()) -> f64 {
    time_n_calls(SYSCALLS, call)
}

fn time_n_calls(n: u64, mut call: impl FnMut()) -> f64 {
    // Best of three: the figure of interest is the fixed cost, not the VM's hiccups.
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                call();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::MAX, f64::min)
}

/// Measures with `armed` (a breakpoint that needs tracking, in another process) armed,
/// then with nothing armed once `wait_untracked` returns. The times are taken with
/// `bpf_stats` off; the programs' runs are counted in a pass of their own.
pub fn syscall_cost(
    m: &mut Manager,
    armed: BreakpointSpec,
    wait_untracked: impl Fn(&mut Manager),
) -> UnwatchedCost {
    let id = armed.id;
    m.add(armed).expect("arming the breakpoint");
    let armed_ns = time_syscalls();
    let io_armed_ns = time_io_syscalls();
    let read_armed_ns = time_read_syscalls();
    let tcp_armed_ns = time_tcp_round();
    let stats = program_stats::enable().expect("turning on bpf_stats");
    let before = m.program_stats();
    time_syscalls();
    let after = m.program_stats();
    m.remove(id).expect("removing the breakpoint");
    wait_untracked(m);
    // Counting, to show that nothing runs; with nothing attached it costs nothing.
    let idle_before = m.program_stats();
    let idle_ns = time_syscalls();
    let io_idle_ns = time_io_syscalls();
    let read_idle_ns = time_read_syscalls();
    let tcp_idle_ns = time_tcp_round();
    let idle_runs: u64 = m
        .program_stats()
        .iter()
        .filter(|p| p.name.starts_with("tracery_sys"))
        .filter_map(|a| {
            Some(
                a.since(idle_before.iter().find(|b| b.name == a.name)?)
                    .run_count,
            )
        })
        .sum();
    let programs = after
        .iter()
        .filter_map(|a| Some(a.since(before.iter().find(|b| b.name == a.name)?)))
        .filter(|p| p.name.starts_with("tracery_sys"))
        .collect();
    drop(stats);
    UnwatchedCost {
        armed_ns,
        idle_ns,
        io_armed_ns,
        io_idle_ns,
        read_armed_ns,
        read_idle_ns,
        tcp_armed_ns,
        tcp_idle_ns,
        idle_runs,
        programs,
        calls: 3 * SYSCALLS,
    }
}

impl UnwatchedCost {
    pub fn print(&self) {
        println!(
            "  a system call in an unwatched process: {:.0} ns with a breakpoint armed in \
             orders, {:.0} ns with nothing armed (+{:.0} ns)",
            self.armed_ns,
            self.idle_ns,
            self.armed_ns - self.idle_ns
        );
        println!(
            "  a 1-byte write to /dev/null there (a hooked system call): {:.0} ns armed, \
             {:.0} ns with nothing armed (+{:.0} ns)",
            self.io_armed_ns,
            self.io_idle_ns,
            self.io_armed_ns - self.io_idle_ns
        );
        println!(
            "  a 1-byte read of /dev/zero there (not a socket: unhooked): {:.0} ns armed, \
             {:.0} ns with nothing armed (+{:.0} ns)",
            self.read_armed_ns,
            self.read_idle_ns,
            self.read_armed_ns - self.read_idle_ns
        );
        println!(
            "  a 1-byte TCP send over loopback and its receive there (the node-wide socket \
             tracepoints): {:.0} ns armed, {:.0} ns with nothing armed (+{:.0} ns)",
            self.tcp_armed_ns,
            self.tcp_idle_ns,
            self.tcp_armed_ns - self.tcp_idle_ns
        );
        println!(
            "    with nothing armed the syscall programs ran {} times",
            self.idle_runs
        );
        for p in &self.programs {
            println!(
                "    {}: {} runs for {} getppid calls, {:.0} ns per run (bpf_stats on)",
                p.name,
                p.run_count,
                self.calls,
                p.ns_per_call()
            );
        }
    }
}
