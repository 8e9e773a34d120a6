//! The Manager in cluster mode: breakpoints on pods chosen by label, kept armed as the
//! controller's list of this node's pods changes, and snapshots named after their pod.

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

    /// Names each snapshot's pod, in cluster mode.
    pub(super) fn tag_pods(&mut self, snaps: &mut [Snapshot]) {
        let Some(pods) = &self.pods else { return };
        for s in snaps {
            s.pod = match self.pod_refs.get(&s.pid) {
                Some(p) => Some(p.clone()),
                None => pods.pod_ref(s.pid).inspect(|p| {
                    // Only a found pod is kept: one not listed yet may be on the next list.
                    self.pod_refs.insert(s.pid, p.clone());
                }),
            };
        }
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
