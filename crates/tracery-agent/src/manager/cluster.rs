//! The Manager in cluster mode: breakpoints on pods chosen by label, kept armed as the
//! controller's list of this node's pods changes, and snapshots named after their pod.

use std::collections::BTreeSet;

use tracery_model::{error::chain, PodRef};

use super::{BreakpointStatus, Manager, Target};
use crate::{
    capture::snapshot::Snapshot,
    error::AgentError,
    exec_watch::Exec,
    pods::{PodDirectory, PodSelector},
};

impl Manager {
    /// Cluster mode: replaces this node's pod list and arms pod breakpoints in the
    /// processes of pods that match now (a pod that just started here, or whose
    /// containers just started). Processes already armed stay armed: a pod's processes
    /// exit with it, and the exit disarms them. Returns the state of each breakpoint that
    /// was armed (or failed to arm) in a new process.
    pub fn set_pods(&mut self, pods: PodDirectory) -> Vec<BreakpointStatus> {
        self.pod_groups.prune();
        let mut to_arm = Vec::new();
        for bp in self.breakpoints.values() {
            let Target::Pods(selector) = &bp.spec.target else {
                continue;
            };
            if bp.ended.is_some() {
                continue;
            }
            for pid in pods.find(selector) {
                // A process that failed once (no DWARF there) would fail on every update.
                if bp.pids.contains_key(&pid) || bp.errors.iter().any(|(p, _)| *p == pid) {
                    continue;
                }
                to_arm.push((bp.spec.id, pid));
            }
        }
        let mut changed = Vec::new();
        for (id, pid) in to_arm {
            self.arm_one(id, pid);
            changed.push(id);
        }
        self.pods = Some(pods);
        self.refresh_pod_sets();
        changed.dedup();
        changed
            .iter()
            .filter_map(|id| self.status_of(*id))
            .collect()
    }

    /// This node's pods, in cluster mode.
    pub fn pods(&self) -> Option<&PodDirectory> {
        self.pods.as_ref()
    }

    /// The processes of pods `selector` chooses, for breakpoint `id`.
    pub(super) fn find_pods(
        &self,
        id: u64,
        selector: &PodSelector,
    ) -> Result<Vec<u32>, AgentError> {
        let pods = self.pods.as_ref().ok_or(AgentError::NotInCluster { id })?;
        Ok(pods.find(selector))
    }

    /// True when some pod breakpoint is bound to an executable file: only then do pod
    /// groups need learning.
    pub(super) fn pod_files_bound(&self) -> bool {
        self.breakpoints
            .values()
            .any(|b| matches!(b.spec.target, Target::Pods(_)) && !b.shared.is_empty())
    }

    /// Learns the pod groups of every process running now (sandboxes of pods whose
    /// containers have not started included), then syncs the kernel sets.
    pub(super) fn refresh_pod_sets(&mut self) {
        if self.pod_files_bound() {
            self.pod_groups.learn_all();
            self.sync_pod_sets();
        }
    }

    /// Puts into the kernel set of each pod breakpoint bound to files the groups of the
    /// pods it chooses now, and takes out the rest (pods that ended or no longer match).
    pub(super) fn sync_pod_sets(&mut self) {
        let Some(pods) = &self.pods else { return };
        for bp in self.breakpoints.values_mut() {
            let Target::Pods(selector) = &bp.spec.target else {
                continue;
            };
            if bp.shared.is_empty() {
                continue;
            }
            let wanted: BTreeSet<u64> = self
                .pod_groups
                .pod_groups(|uid| pods.selects_uid(selector, uid))
                .collect();
            let table = self.session.table();
            for &gone in bp.pod_set.difference(&wanted) {
                if let Err(e) = table.set_cgroup(bp.spec.id, gone, false) {
                    tracing::warn!(id = bp.spec.id, "pod group {gone} stays admitted: {e}");
                }
            }
            bp.pod_set.retain(|g| wanted.contains(g));
            for &group in &wanted {
                if bp.pod_set.contains(&group) {
                    continue;
                }
                match table.set_cgroup(bp.spec.id, group, true) {
                    Ok(()) => {
                        bp.pod_set.insert(group);
                    }
                    Err(e) => {
                        let why = format!("pod group {group} not admitted: {}", chain(&e));
                        if !bp.errors.iter().any(|(_, w)| *w == why) {
                            bp.errors.push((0, why));
                        }
                    }
                }
            }
        }
    }

    /// Names each hit's pod, in cluster mode, and says whether its breakpoint chose the
    /// hit's container. The kernel admits a chosen pod's every container; a `--container`
    /// choice is applied here, so a sidecar running the same file counts against the
    /// breakpoint's kernel hit limit (a rare case). The caller counts an unchosen hit as
    /// filtered and lets go of a trace it froze.
    pub(super) fn place_hits(&mut self, hits: Vec<(Snapshot, u64)>) -> Vec<(Snapshot, bool)> {
        if self.pods.is_none() {
            return hits.into_iter().map(|(s, _)| (s, true)).collect();
        }
        let mut out = Vec::with_capacity(hits.len());
        for (mut s, cgroup) in hits {
            s.pod = self.pod_of(s.pid, Some(cgroup));
            let unchosen = self.breakpoints.get(&s.breakpoint_id).is_some_and(|bp| {
                let Target::Pods(selector) = &bp.spec.target else {
                    return false;
                };
                let container = selector.container.as_deref();
                !bp.shared.is_empty()
                    && container.is_some()
                    && s.pod
                        .as_ref()
                        .is_some_and(|p| Some(p.container.as_str()) != container)
            });
            if unchosen {
                tracing::debug!(
                    pid = s.pid,
                    "hit in a container the breakpoint does not choose"
                );
            }
            out.push((s, !unchosen));
        }
        out
    }

    /// Names each snapshot's pod, in cluster mode.
    pub(super) fn tag_pods(&mut self, snaps: &mut [Snapshot]) {
        for s in snaps {
            s.pod = self.pod_of(s.pid, None);
        }
    }

    /// The pod of process `pid`, from the cgroup its hitting task was in when the hit
    /// carries one (the process may be gone), else from its `/proc` entry; `None` outside
    /// cluster mode and outside listed pods.
    fn pod_of(&mut self, pid: u32, cgroup: Option<u64>) -> Option<PodRef> {
        let pods = self.pods.as_ref()?;
        if let Some(p) = self.pod_refs.get(&pid) {
            return Some(p.clone());
        }
        if let Some(at) = cgroup.and_then(|c| self.pod_groups.resolve(c)) {
            if let Some(p) = pods.pod_ref_of(&at) {
                return Some(p);
            }
        }
        // Only a found pod is kept: one not listed yet may be on the next list. (Pods
        // found by cgroup are not kept: that lookup is as cheap, and a process caught
        // by a shared site may never be armed, so nothing would forget it.)
        let found = pods.pod_ref(pid)?;
        self.pod_refs.insert(pid, found.clone());
        Some(found)
    }

    /// Forgets the pods of processes no breakpoint is armed in any more.
    pub(super) fn forget_pod_refs(&mut self) {
        let breakpoints = &self.breakpoints;
        self.pod_refs
            .retain(|pid, _| breakpoints.values().any(|b| b.pids.contains_key(pid)));
    }
}

/// True when the process `exec` started is one `target` takes.
pub(super) fn selects_exec(target: &Target, pods: Option<&PodDirectory>, exec: &Exec) -> bool {
    match target {
        Target::Pid(_) => false,
        Target::Matching(m) => m.matches_exec(exec),
        Target::Pods(selector) => pods.is_some_and(|d| d.selects_pid(selector, exec.pid)),
    }
}
