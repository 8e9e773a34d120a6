//! A user-space stand-in for the kernel capture path, for tests without eBPF.
//!
//! [`capture`] runs a fixture, stops it with a software breakpoint (INT3 written into the
//! test's own child through ptrace; restored before anything is read) the first time it
//! reaches a probe address, and then executes the plan's fetch ops against the stopped
//! process's memory with `tracery_dwarf::emulate`, as the kernel would:
//!
//! - the data area starts filled with 0xAA, standing in for the stale per-CPU scratch
//!   buffer, so a decoder that trusts unwritten bytes fails the tests;
//! - the stack copy takes `stack_bytes` from `rsp`, halving on faults.
//!
//! The real kernel path is covered by the lead's root-only end-to-end tests.
#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::{
    collections::HashSet,
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use tracery_common::{
    regs::{pt, NUM_REGS},
    HitHeader, OpResult, ProbeConfig, DATA_CAP, MAX_OPS, STACK_CAP,
};
use tracery_dwarf::{Binary, CapturePlan, LoadBias, ObjAddr};
use tracery_tests::FixtureProcess;

#[path = "sys.rs"]
mod sys;

/// How long a fixture may take to reach the probe address.
const HIT_TIMEOUT: Duration = Duration::from_secs(20);

/// One emulated hit: what the ring buffer would carry.
pub struct Hit {
    pub header: HitHeader,
    /// Data area then stack copy, as after the header in a ring-buffer record.
    pub data: Vec<u8>,
    pub bias: LoadBias,
}

/// How to run the program under test.
pub struct Run<'a> {
    /// A fixture variant, or a program path.
    pub program: Program<'a>,
    pub args: &'a [&'a str],
    /// Send one line on stdin once the breakpoint is planted (programs that wait to start).
    pub start_line: bool,
}

/// The program to run.
pub enum Program<'a> {
    Fixture(&'a str),
    Path(&'a Path),
}

/// Runs fixture `variant` in serve mode, stops it at `plan.address()` and captures `plan`.
pub fn capture(variant: &str, binary: &Binary, plan: &CapturePlan) -> Hit {
    let run = Run {
        program: Program::Fixture(variant),
        args: &["serve"],
        start_line: false,
    };
    capture_with(&run, binary, plan.address(), |bias| plan.relocate(bias))
}

/// Runs `run`, stops it at `address` and captures the config made from the load bias.
pub fn capture_with(
    run: &Run<'_>,
    binary: &Binary,
    address: ObjAddr,
    config: impl FnOnce(LoadBias) -> ProbeConfig,
) -> Hit {
    // One capture at a time: parallel test threads would fight over CPU and timing.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut process = match run.program {
        Program::Fixture(v) => FixtureProcess::spawn(v, run.args),
        Program::Path(p) => FixtureProcess::spawn_path(p, run.args),
    };
    let pid = process.pid() as i32;
    let bias = load_bias(pid, binary);
    let target = bias.to_proc(address).0;
    let cfg = config(bias);
    let mut tracer = Tracer::attach(pid);
    let mut start = || {
        if run.start_line {
            process.send_line("go");
        }
    };
    let (tid, regs) = tracer.run_to(target, &mut start);
    let read = |addr: u64, len: usize| sys::read_memory(pid, addr, len);
    let (header, data) = run_plan(&cfg, &regs, pid as u32, tid as u32, read);
    tracer.detach();
    drop(process);
    Hit { header, data, bias }
}

/// Runs fixture `variant` in serve mode, stops it at `first.address()` and captures `first`;
/// then single-steps that one thread, the others still stopped, to `second.address()` and
/// captures `second` there. Returns both hits and the instructions stepped.
pub fn capture_then_step(
    variant: &str,
    binary: &Binary,
    first: &CapturePlan,
    second: &CapturePlan,
) -> (Hit, Hit, usize) {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let process = FixtureProcess::spawn(variant, &["serve"]);
    let pid = process.pid() as i32;
    let bias = load_bias(pid, binary);
    let mut tracer = Tracer::attach(pid);
    let (tid, regs) = tracer.run_to(bias.to_proc(first.address()).0, &mut || {});
    let read = |addr: u64, len: usize| sys::read_memory(pid, addr, len);
    let (header, data) = run_plan(&first.relocate(bias), &regs, pid as u32, tid as u32, read);
    let one = Hit { header, data, bias };
    let to = bias.to_proc(second.address()).0;
    let mut steps = 0;
    let regs = loop {
        let r = sys::get_regs(tid).unwrap();
        if r.rip == to {
            break pt_regs(&r);
        }
        assert!(
            steps < 32,
            "{variant}: {to:#x} not reached in {steps} steps (at {:#x})",
            r.rip
        );
        sys::single_step(tid).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(
                Instant::now() < deadline,
                "{variant}: the single step never stopped"
            );
            match sys::wait_tid(tid).unwrap() {
                Some(w) if libc::WIFSTOPPED(w.status) => {
                    assert_eq!(
                        libc::WSTOPSIG(w.status),
                        libc::SIGTRAP,
                        "{variant}: a signal while stepping"
                    );
                    break;
                }
                Some(w) => panic!(
                    "{variant}: thread {tid} ended while stepping ({:#x})",
                    w.status
                ),
                None => thread::sleep(Duration::from_micros(100)),
            }
        }
        steps += 1;
    };
    let (header, data) = run_plan(&second.relocate(bias), &regs, pid as u32, tid as u32, read);
    tracer.detach();
    drop(process);
    (one, Hit { header, data, bias }, steps)
}

/// The load bias of `binary` in process `pid`, from its first mapping in /proc/PID/maps.
fn load_bias(pid: i32, binary: &Binary) -> LoadBias {
    let want = fs::canonicalize(binary.path()).unwrap();
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || Path::new(f[5]) != want {
            continue;
        }
        let start = u64::from_str_radix(f[0].split('-').next().unwrap(), 16).unwrap();
        let offset = u64::from_str_radix(f[2], 16).unwrap();
        return binary.load_bias(start, offset);
    }
    panic!("{} is not mapped in pid {pid}", want.display());
}

/// All threads of one traced process.
struct Tracer {
    pid: i32,
    threads: HashSet<i32>,
    breakpoint: Option<(u64, u64)>,
}

fn thread_ids(pid: i32) -> Vec<i32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

impl Tracer {
    /// Seizes every thread (new ones follow through `PTRACE_O_TRACECLONE`).
    fn attach(pid: i32) -> Self {
        let mut threads = HashSet::new();
        for tid in thread_ids(pid) {
            if sys::seize(tid).is_ok() {
                threads.insert(tid);
            }
        }
        assert!(!threads.is_empty(), "cannot ptrace pid {pid}");
        Self {
            pid,
            threads,
            breakpoint: None,
        }
    }

    /// The next stop or exit of any traced thread, polling each one.
    fn poll(&mut self) -> Option<sys::WaitStatus> {
        let tids: Vec<i32> = self.threads.iter().copied().collect();
        for tid in tids {
            match sys::wait_tid(tid) {
                Ok(Some(w)) => {
                    if libc::WIFEXITED(w.status) || libc::WIFSIGNALED(w.status) {
                        self.threads.remove(&tid);
                    } else if (w.status >> 16) & 0xff == libc::PTRACE_EVENT_CLONE {
                        // The new thread is traced too; its first stop comes on its own.
                        if let Ok(new) = sys::event_msg(tid) {
                            self.threads.insert(new as i32);
                        }
                    }
                    return Some(w);
                }
                Ok(None) => {}
                Err(_) => {
                    self.threads.remove(&tid);
                }
            }
        }
        None
    }

    /// Stops every thread and waits until each reported its stop.
    fn stop_all(&mut self, already: Option<i32>) {
        let mut pending: HashSet<i32> = self
            .threads
            .iter()
            .copied()
            .filter(|t| Some(*t) != already)
            .collect();
        for &t in &pending {
            let _ = sys::interrupt(t);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pending.is_empty() && Instant::now() < deadline {
            match self.poll() {
                Some(w) => {
                    if !libc::WIFSTOPPED(w.status) {
                        pending.remove(&w.tid);
                        continue;
                    }
                    if (w.status >> 16) & 0xff == libc::PTRACE_EVENT_CLONE {
                        // Stopped at the clone; the child may need stopping too.
                        for &t in &self.threads {
                            if Some(t) != already && t != w.tid && !pending.contains(&t) {
                                let _ = sys::interrupt(t);
                            }
                        }
                    }
                    self.rewind_if_trapped(w.tid);
                    pending.remove(&w.tid);
                }
                None => thread::sleep(Duration::from_micros(200)),
            }
        }
    }

    /// A thread that executed our INT3 has `rip` one past it: put it back on the instruction.
    fn rewind_if_trapped(&self, tid: i32) {
        if let Some((addr, _)) = self.breakpoint {
            if let Ok(mut regs) = sys::get_regs(tid) {
                if regs.rip == addr + 1 {
                    regs.rip = addr;
                    let _ = sys::set_regs(tid, &regs);
                }
            }
        }
    }

    /// Plants a breakpoint at `addr`, runs until a thread reaches it, stops everything and
    /// removes the breakpoint. Returns the thread and its `pt_regs` as a uprobe sees them.
    fn run_to(&mut self, addr: u64, started: &mut dyn FnMut()) -> (i32, [u64; NUM_REGS]) {
        self.stop_all(None);
        let any = *self.threads.iter().next().unwrap();
        let word = sys::peek(any, addr).expect("read code at the probe address");
        sys::poke(any, addr, (word & !0xff) | 0xcc).expect("plant the breakpoint");
        self.breakpoint = Some((addr, word));
        for &t in &self.threads {
            let _ = sys::cont(t, 0);
        }
        started();
        let deadline = Instant::now() + HIT_TIMEOUT;
        let hit = loop {
            assert!(
                Instant::now() < deadline,
                "pid {} never reached {addr:#x}",
                self.pid
            );
            let Some(w) = self.poll() else {
                thread::sleep(Duration::from_micros(200));
                continue;
            };
            if libc::WIFEXITED(w.status) || libc::WIFSIGNALED(w.status) {
                assert!(
                    !self.threads.is_empty(),
                    "pid {} exited before the probe",
                    self.pid
                );
                continue;
            }
            if !libc::WIFSTOPPED(w.status) {
                continue;
            }
            let sig = libc::WSTOPSIG(w.status);
            let event = (w.status >> 16) & 0xff;
            if sig == libc::SIGTRAP && event == 0 {
                let regs = sys::get_regs(w.tid).unwrap();
                if regs.rip == addr + 1 {
                    break w.tid;
                }
                let _ = sys::cont(w.tid, 0);
            } else if event != 0 || sig == libc::SIGSTOP {
                // Clone events, new threads' first stop, interrupts: not signals to deliver.
                let _ = sys::cont(w.tid, 0);
            } else {
                // A real signal (Go preempts with SIGURG): deliver it.
                let _ = sys::cont(w.tid, sig);
            }
        };
        self.stop_all(Some(hit));
        let mut regs = sys::get_regs(hit).unwrap();
        regs.rip = addr;
        sys::set_regs(hit, &regs).unwrap();
        sys::poke(hit, addr, word).expect("remove the breakpoint");
        self.breakpoint = None;
        (hit, pt_regs(&regs))
    }

    fn detach(&mut self) {
        for &t in &self.threads {
            let _ = sys::detach(t);
        }
        self.threads.clear();
    }
}

/// `user_regs_struct` begins with the same 21 words, in the same order, as `pt_regs`.
fn pt_regs(r: &libc::user_regs_struct) -> [u64; NUM_REGS] {
    [
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx,
        r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss,
    ]
}

/// Executes `cfg` like the kernel: returns the header and the data + stack bytes.
pub fn run_plan(
    cfg: &ProbeConfig,
    regs: &[u64; NUM_REGS],
    pid: u32,
    tid: u32,
    read: impl Fn(u64, usize) -> Option<Vec<u8>>,
) -> (HitHeader, Vec<u8>) {
    let mut header = HitHeader {
        breakpoint_id: cfg.breakpoint_id,
        seq: 0,
        ktime_ns: 0,
        slot: 0,
        pid,
        tid,
        data_len: 0,
        stack_offset: 0,
        stack_len: 0,
        flags: 0,
        _pad: 0,
        cgroup_id: 0,
        trace_id: [0; 16],
        span_id: [0; 8],
        regs: *regs,
        results: [OpResult::default(); MAX_OPS],
    };
    let mut buf = vec![0xAAu8; DATA_CAP + STACK_CAP];
    let mem = |addr: u64, out: &mut [u8]| match read(addr, out.len()) {
        Some(bytes) => {
            out.copy_from_slice(&bytes);
            true
        }
        None => false,
    };
    tracery_dwarf::emulate::run_ops(cfg, &mut header, &mut buf, &mem);
    let data_len = ((cfg.data_size as usize + 7) & !7).min(DATA_CAP);
    let mut want = (cfg.stack_bytes as usize).min(STACK_CAP);
    let mut stack_len = 0;
    while want >= 512 {
        if let Some(bytes) = read(regs[pt::RSP as usize], want) {
            buf[data_len..data_len + want].copy_from_slice(&bytes);
            stack_len = want;
            break;
        }
        want /= 2;
    }
    header.data_len = data_len as u32;
    header.stack_offset = data_len as u32;
    header.stack_len = stack_len as u32;
    buf.truncate(data_len + stack_len);
    (header, buf)
}
