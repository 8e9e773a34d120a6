//! Cluster mode: which Kubernetes pod each process on this node runs in.
//!
//! The agent has no API access of its own: the controller sends it the pods of its node
//! ([`PodDirectory`], from `NodePods`), and the agent pairs them with processes through the
//! cgroup kubelet put each process in ([`PodCgroup`]). Breakpoints choose pods with a
//! [`PodSelector`]; snapshots name their pod with a [`tracery_model::PodRef`].

mod cgroup;
mod directory;
mod groups;

pub use cgroup::PodCgroup;
pub use directory::{Placement, Pod, PodDirectory, PodSelector};
pub use groups::{cgroup_id, PodGroups};

/// The pod cgroup of process `pid`, from its `/proc/PID/cgroup`; `None` when it runs in
/// no pod (or has exited).
pub fn cgroup_of(pid: u32) -> Option<PodCgroup> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    PodCgroup::from_proc_cgroup(&text)
}

/// The cgroup whose sockets a hold watches for a process in cgroup `path` (as
/// `/proc/PID/cgroup` names it): the pod's, so every container of the pod (a sidecar
/// proxy included) is held, or `path` itself outside a pod.
pub fn hold_cgroup(path: &str) -> String {
    PodCgroup::from_path(path)
        .and_then(|p| p.pod_path)
        .unwrap_or_else(|| path.to_owned())
}

/// The cgroup directory that holds every pod of this node: kubelet's `kubepods.slice`
/// (systemd driver) or `kubepods` (cgroupfs driver) under the cgroup v2 mount. An agent in
/// cluster mode watches it for holds, so a trace frozen on another node has its messages
/// held in whichever pod here it reached.
pub fn kubepods_dir() -> Option<std::path::PathBuf> {
    let root = crate::discovery::cgroup2_dir("/")?;
    ["kubepods.slice", "kubepods"]
        .iter()
        .map(|name| root.join(name))
        .find(|dir| dir.join("cgroup.procs").exists())
}
