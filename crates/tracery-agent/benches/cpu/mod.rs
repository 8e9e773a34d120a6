//! CPU time per phase of a bench: on the whole node, in the bench's own process (the
//! in-process agent and the load clients), and in chosen processes. Latency says that a
//! phase costs more; this says who paid.

use std::{collections::BTreeMap, fs, time::Duration};

/// CPU time counters read at one moment.
#[derive(Clone, Debug)]
pub struct CpuSample {
    node_busy: Duration,
    own: Duration,
    processes: Vec<Duration>,
    /// This process's live threads by name (the agent's are long-lived; the clients'
    /// come and go, and show only in `own`).
    own_threads: BTreeMap<String, Duration>,
}

/// Adds up, per phase, the CPU time spent while the phase ran.
pub struct CpuLedger {
    /// Name and pid of each process followed.
    processes: Vec<(String, u32)>,
    by_phase: BTreeMap<char, CpuSample>,
}

impl CpuLedger {
    pub fn new(processes: Vec<(String, u32)>) -> Self {
        Self {
            processes,
            by_phase: BTreeMap::new(),
        }
    }

    pub fn sample(&self) -> CpuSample {
        CpuSample {
            node_busy: node_busy(),
            own: own_cpu(),
            processes: self
                .processes
                .iter()
                .map(|(_, pid)| process_cpu(*pid))
                .collect(),
            own_threads: threads_by_name(std::process::id()),
        }
    }

    /// Adds what was spent between `before` and now to `phase`.
    pub fn charge(&mut self, phase: char, before: &CpuSample) {
        let now = self.sample();
        let sum = self.by_phase.entry(phase).or_insert(CpuSample {
            node_busy: Duration::ZERO,
            own: Duration::ZERO,
            processes: vec![Duration::ZERO; self.processes.len()],
            own_threads: BTreeMap::new(),
        });
        for (name, t) in &now.own_threads {
            let spent = t.saturating_sub(before.own_threads.get(name).copied().unwrap_or_default());
            *sum.own_threads.entry(name.clone()).or_default() += spent;
        }
        sum.node_busy += now.node_busy.saturating_sub(before.node_busy);
        sum.own += now.own.saturating_sub(before.own);
        for (s, (n, b)) in sum
            .processes
            .iter_mut()
            .zip(now.processes.iter().zip(&before.processes))
        {
            *s += n.saturating_sub(*b);
        }
    }

    /// CPU microseconds per request, per phase.
    pub fn print(&self, requests: usize) {
        let names: Vec<&str> = self.processes.iter().map(|(n, _)| n.as_str()).collect();
        println!(
            "  CPU per request (µs; node: all cores busy, bench: the agent and the clients): \
             node, bench, {}",
            names.join(", ")
        );
        let per = |d: Duration| d.as_secs_f64() * 1e6 / requests as f64;
        for (phase, s) in &self.by_phase {
            let procs = s
                .processes
                .iter()
                .map(|d| format!("{:.0}", per(*d)))
                .collect::<Vec<_>>()
                .join(", ");
            let mut threads: Vec<_> = s.own_threads.iter().collect();
            threads.sort_by(|a, b| b.1.cmp(a.1));
            let threads = threads
                .iter()
                .take(3)
                .map(|(name, d)| format!("{name} {:.0}", per(**d)))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "    {phase}: {:.0}, {:.0}, {procs}  (busiest bench threads: {threads})",
                per(s.node_busy),
                per(s.own)
            );
        }
    }
}

/// Busy time of all cores (`/proc/stat`: user, nice, system, irq, softirq), in clock
/// ticks turned into time.
fn node_busy() -> Duration {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .enumerate()
        // user nice system idle iowait irq softirq: skip idle (3) and iowait (4).
        .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// User and system time of this process, its exited threads included.
fn own_cpu() -> Duration {
    // SAFETY: rusage is plain integers, for which all zeroes is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given, which outlives the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Time on CPU of each live thread of `pid`, summed by thread name.
fn threads_by_name(pid: u32) -> BTreeMap<String, Duration> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let path = t.path();
        let (Ok(name), Ok(stat)) = (
            fs::read_to_string(path.join("comm")),
            fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        let Some(ns) = stat.split_whitespace().next().and_then(|v| v.parse().ok()) else {
            continue;
        };
        *out.entry(name.trim().to_string()).or_default() += Duration::from_nanos(ns);
    }
    out
}

/// Time on CPU of `pid`'s live threads (`schedstat`, nanoseconds).
fn process_cpu(pid: u32) -> Duration {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    tasks
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .sum()
}
