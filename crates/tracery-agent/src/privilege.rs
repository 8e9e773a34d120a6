//! Whether this process may load eBPF programs and attach uprobes.

use crate::error::AgentError;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails with a message naming what is missing unless the process is root, has
/// CAP_SYS_ADMIN, or has both CAP_BPF and CAP_PERFMON.
pub fn check() -> Result<(), AgentError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(AgentError::NotPrivileged)
    }
}
