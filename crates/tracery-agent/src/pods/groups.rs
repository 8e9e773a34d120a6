//! The cgroups of this node's pods, by cgroup id (the group directory's inode, which is
//! what the kernel reports).
//!
//! A pod breakpoint's probe sites are bound to an executable file for every process that
//! runs it, and the kernel admits only tasks in the pod groups of the pods the breakpoint
//! chooses (`CGROUP_SETS`). Those ids are learnt from the processes that run in each pod:
//! its sandbox runs before any of its containers, so a pod's group is known before its
//! first container process starts. A hit carries its task's cgroup id, which names its
//! pod and container even after the process has exited.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::PodCgroup;

/// A pod's own group (the parent of its containers' groups).
#[derive(Clone, Debug)]
struct PodGroup {
    uid: String,
    /// As `/proc/PID/cgroup` names it.
    path: String,
    dir: PathBuf,
}

/// The groups of the pods and containers seen on this node, by cgroup id.
#[derive(Debug, Default)]
pub struct PodGroups {
    pods: HashMap<u64, PodGroup>,
    containers: HashMap<u64, (PodCgroup, PathBuf)>,
    /// Groups already learnt, by path: an exec in a known group costs one file read.
    known: HashMap<String, Option<u64>>,
    /// Group ids that named no known pod's container: not looked for again on every hit
    /// until a pod is learnt or the groups are pruned.
    unknown: HashSet<u64>,
}

impl PodGroups {
    /// Learns the pod group (and container group) of process `pid`. Returns the pod
    /// group's id, and whether it was new; `None` for a process in no pod, one that has
    /// exited, or one whose group this agent cannot see (another cgroup namespace).
    pub fn learn(&mut self, pid: u32) -> Option<(u64, bool)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let own = text.lines().find_map(|l| l.strip_prefix("0::"))?.trim_end();
        let at = PodCgroup::from_path(own)?;
        // containerd's one-segment naming puts the pod and the container in one group.
        let pod_path = at.pod_path.clone().unwrap_or_else(|| own.to_owned());
        if let Some(&pod) = self.known.get(own) {
            // Learnt before (the pod's group, if this agent sees it).
            return pod.map(|id| (id, false));
        }
        let found = self.learn_path(own, at, pod_path);
        self.known.insert(own.to_owned(), found.map(|(id, _)| id));
        found
    }

    /// [`Self::learn`] for the group `own` of a process, not learnt yet.
    fn learn_path(&mut self, own: &str, at: PodCgroup, pod_path: String) -> Option<(u64, bool)> {
        let dir = crate::discovery::cgroup2_dir(&pod_path)?;
        let id = cgroup_id(&dir)?;
        let new = !self.pods.contains_key(&id);
        if new {
            self.unknown.clear();
            self.pods.insert(
                id,
                PodGroup {
                    uid: at.pod_uid.clone(),
                    path: pod_path,
                    dir,
                },
            );
        }
        if at.container_id.is_some() {
            if let Some(dir) = crate::discovery::cgroup2_dir(own) {
                if let Some(c) = cgroup_id(&dir) {
                    self.containers.insert(c, (at, dir));
                }
            }
        }
        Some((id, new))
    }

    /// Learns every process running on the node now. Returns true when a pod group was
    /// new.
    pub fn learn_all(&mut self) -> bool {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return false;
        };
        let mut new = false;
        for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
            new |= self.learn(pid).is_some_and(|(_, n)| n);
        }
        new
    }

    /// Forgets the groups whose directory is gone (their pod or container ended).
    pub fn prune(&mut self) {
        self.pods.retain(|_, p| p.dir.exists());
        self.containers.retain(|_, (_, dir)| dir.exists());
        // A group removed and made again (same name) gets a new id.
        self.known.clear();
        self.unknown.clear();
    }

    /// The ids of the pod groups of pods whose uid `chosen` accepts.
    pub fn pod_groups<'a>(
        &'a self,
        chosen: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = u64> + 'a {
        self.pods
            .iter()
            .filter(move |(_, p)| chosen(&p.uid))
            .map(|(id, _)| *id)
    }

    /// The pod (and container) of the group with id `cgroup`, as a hit reported it. A
    /// container group not learnt yet is looked for among the known pods' groups.
    pub fn resolve(&mut self, cgroup: u64) -> Option<PodCgroup> {
        if let Some((at, _)) = self.containers.get(&cgroup) {
            return Some(at.clone());
        }
        if let Some(p) = self.pods.get(&cgroup) {
            return PodCgroup::from_path(&p.path);
        }
        if self.unknown.contains(&cgroup) {
            return None;
        }
        let found = self.pods.values().find_map(|p| {
            let name = child_with_id(&p.dir, cgroup)?;
            let path = format!("{}/{name}", p.path);
            Some((PodCgroup::from_path(&path)?, p.dir.join(name)))
        });
        let Some(found) = found else {
            self.unknown.insert(cgroup);
            return None;
        };
        self.containers.insert(cgroup, found.clone());
        Some(found.0)
    }
}

/// The id the kernel gives the cgroup v2 group at `dir`: its directory's inode.
pub fn cgroup_id(dir: &Path) -> Option<u64> {
    Some(std::fs::metadata(dir).ok()?.ino())
}

/// The name of the group directly below `dir` whose id is `id`.
fn child_with_id(dir: &Path, id: u64) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find(|e| e.metadata().is_ok_and(|m| m.ino() == id))
        .and_then(|e| e.file_name().into_string().ok())
}
