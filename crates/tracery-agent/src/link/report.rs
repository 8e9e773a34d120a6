//! What the agent says about itself: its identity (`Hello`) and its health (`Health`).

use std::{
    collections::BTreeMap,
    fs,
    path::Path,
    time::{Duration, Instant},
};

use tracery_proto::v1;

use crate::{manager::BreakpointStatus, sys};

/// Features [`crate::capture::loader::check_features`] requires; an agent that started has them.
const KERNEL_FEATURES: &[&str] = &[
    "uprobe",
    "ringbuf",
    "bpf_cookie",
    "bpf_loop",
    "probe_read_user",
];

/// The agent's first message. `agent_id` is stored in `data_dir/agent-id` so it survives
/// restarts; without a writable data dir it is the host name and boot id.
pub fn hello(data_dir: &Path) -> v1::Hello {
    let node = node();
    v1::Hello {
        agent_id: agent_id(data_dir, &node),
        node,
        version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        kernel_features: KERNEL_FEATURES.iter().map(|f| f.to_string()).collect(),
        kubernetes_node: String::new(),
    }
}

/// The host name, as `Hello.node` reports it.
fn node() -> String {
    read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into())
}

/// The id an agent keeping its state in `data_dir` says hello with (created on first use).
pub fn local_agent_id(data_dir: &Path) -> String {
    agent_id(data_dir, &node())
}

fn agent_id(data_dir: &Path, node: &str) -> String {
    let file = data_dir.join("agent-id");
    if let Some(id) = read_trimmed(&file).filter(|id| !id.is_empty()) {
        return id;
    }
    if let Some(uuid) = read_trimmed("/proc/sys/kernel/random/uuid") {
        let id = format!("{node}-{uuid}");
        // Written aside, then linked into place: agents starting at once (and a standalone
        // asking for its agent's id) all end up with the first one stored, never two.
        let tmp = data_dir.join(format!("agent-id.{uuid}"));
        let stored = fs::create_dir_all(data_dir)
            .and_then(|()| fs::write(&tmp, &id))
            .and_then(|()| fs::hard_link(&tmp, &file));
        let _ = fs::remove_file(&tmp);
        match stored {
            Ok(()) => return id,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if let Some(id) = read_trimmed(&file).filter(|id| !id.is_empty()) {
                    return id;
                }
            }
            Err(e) => tracing::warn!(
                path = %file.display(),
                error = %e,
                "cannot store the agent id; using host name and boot id"
            ),
        }
    }
    let boot = read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    format!("{node}-{boot}")
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Measures the agent's own CPU between two health reports.
pub struct CpuMeter {
    last_wall: Instant,
    last_cpu: Duration,
}

impl CpuMeter {
    pub fn new() -> Self {
        Self {
            last_wall: Instant::now(),
            last_cpu: sys::cpu_time(),
        }
    }

    /// CPU used since the previous call, in percent of one core.
    pub fn percent(&mut self) -> f64 {
        let (wall, cpu) = (Instant::now(), sys::cpu_time());
        let dw = wall.duration_since(self.last_wall).as_secs_f64();
        let dc = cpu.saturating_sub(self.last_cpu).as_secs_f64();
        (self.last_wall, self.last_cpu) = (wall, cpu);
        if dw > 0.0 {
            100.0 * dc / dw
        } else {
            0.0
        }
    }
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self::new()
    }
}

/// A health report from the Manager's breakpoint states. Probes bound to an executable
/// file are reported as pid 0 with the file's path, so they show while no process runs it.
pub fn health(breakpoints: &[BreakpointStatus], cpu: &mut CpuMeter) -> v1::Health {
    let mut by_pid: BTreeMap<u32, v1::ProcessProbes> = BTreeMap::new();
    let mut by_file: BTreeMap<&str, v1::ProcessProbes> = BTreeMap::new();
    for bp in breakpoints {
        for (path, probes) in &bp.files {
            let f = by_file.entry(path).or_insert_with(|| v1::ProcessProbes {
                pid: 0,
                exe: path.clone(),
                ..Default::default()
            });
            f.breakpoint_ids.push(bp.id);
            f.probes += u32::try_from(*probes).unwrap_or(u32::MAX);
        }
        for (pid, probes) in &bp.processes {
            let p = by_pid.entry(*pid).or_insert_with(|| v1::ProcessProbes {
                pid: *pid,
                exe: fs::read_link(format!("/proc/{pid}/exe"))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                ..Default::default()
            });
            p.breakpoint_ids.push(bp.id);
            p.probes += u32::try_from(*probes).unwrap_or(u32::MAX);
        }
    }
    v1::Health {
        processes: by_file.into_values().chain(by_pid.into_values()).collect(),
        cpu_percent: cpu.percent(),
        rss_bytes: rss_bytes(),
        // Needs a per-hit cost measurement the agent does not make yet.
        probe_overhead_percent: 0.0,
    }
}

/// Resident memory of this process (`VmRSS` in `/proc/self/status`).
fn rss_bytes() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_id_is_stored_and_reused() {
        let dir = std::env::temp_dir().join(format!("tracery-agent-id-{}", std::process::id()));
        let first = hello(&dir).agent_id;
        assert_eq!(hello(&dir).agent_id, first);
        assert!(!first.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn health_reports_this_process() {
        let mut cpu = CpuMeter::new();
        let h = health(
            &[BreakpointStatus {
                id: 3,
                files: vec![("/srv/orders".into(), 1)],
                processes: vec![(std::process::id(), 2)],
                hits: 0,
                filtered: 0,
                kernel_drops: 0,
                over_limit: 0,
                errors: vec![],
                exited: vec![],
                ended: None,
            }],
            &mut cpu,
        );
        assert!(h.rss_bytes > 0);
        assert_eq!(h.processes.len(), 2);
        // The file first, as pid 0, with its path: shown while no process runs it.
        assert_eq!(
            (h.processes[0].pid, h.processes[0].exe.as_str()),
            (0, "/srv/orders")
        );
        assert_eq!(h.processes[0].probes, 1);
        assert_eq!(h.processes[1].breakpoint_ids, vec![3]);
        assert_eq!(h.processes[1].probes, 2);
        assert!(!h.processes[1].exe.is_empty());
    }
}
