//! The pods on this node as the controller last listed them (`NodePods`), and the label
//! selectors breakpoints choose them with.

use std::collections::{BTreeMap, HashMap};

use tracery_model::PodRef;
use tracery_proto::v1;

use super::cgroup::PodCgroup;

/// One pod on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// `metadata.uid`: kubelet names the pod's cgroup after it.
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Started containers: id (as in their cgroup name) -> name in the pod spec.
    pub containers: HashMap<String, String>,
}

/// Pods chosen by namespace and labels, and optionally one container of each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSelector {
    pub namespace: String,
    /// Each must be on the pod with this value; empty selects no pod.
    pub labels: BTreeMap<String, String>,
    /// Only this container of each pod; `None` for all of them.
    pub container: Option<String>,
}

/// A process's place in the directory: its pod and container.
#[derive(Clone, Copy, Debug)]
pub struct Placement<'a> {
    pub pod: &'a Pod,
    /// The container's name in the pod spec.
    pub container: &'a str,
}

/// This node's pods, by uid. Replaced whole on every `NodePods` from the controller.
#[derive(Clone, Debug, Default)]
pub struct PodDirectory {
    /// The Kubernetes node (`--kubernetes-node`), written into each [`PodRef`].
    node: String,
    pods: HashMap<String, Pod>,
}

impl PodSelector {
    /// True when `pod` is in the namespace and carries every label (a selector with no
    /// labels selects nothing: it would take a whole namespace by mistake).
    pub fn selects_pod(&self, pod: &Pod) -> bool {
        !self.labels.is_empty()
            && pod.namespace == self.namespace
            && self
                .labels
                .iter()
                .all(|(k, v)| pod.labels.get(k) == Some(v))
    }

    /// True when `at` is a selected pod's selected container.
    pub fn selects(&self, at: Placement<'_>) -> bool {
        self.selects_pod(at.pod) && self.container.as_deref().is_none_or(|c| c == at.container)
    }
}

impl PodDirectory {
    /// No pods yet, on Kubernetes node `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            pods: HashMap::new(),
        }
    }

    /// The directory of `node` holding `pods`.
    pub fn with_pods(node: impl Into<String>, pods: impl IntoIterator<Item = Pod>) -> Self {
        Self {
            node: node.into(),
            pods: pods.into_iter().map(|p| (p.uid.clone(), p)).collect(),
        }
    }

    /// The directory of `node` from the controller's `NodePods` list.
    pub fn from_wire(node: impl Into<String>, list: v1::NodePods) -> Self {
        Self::with_pods(node, list.pods.into_iter().map(Pod::from))
    }

    /// The Kubernetes node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How many pods are listed.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// True when no pod is listed.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The listed pod and container `cgroup` names; `None` outside a listed pod, and for
    /// a process in no listed container (a pod's sandbox, CRI-O's monitor, or a container
    /// the controller has not reported started yet).
    pub fn place(&self, cgroup: &PodCgroup) -> Option<Placement<'_>> {
        let pod = self.pods.get(&cgroup.pod_uid)?;
        let container = pod.containers.get(cgroup.container_id.as_deref()?)?;
        Some(Placement { pod, container })
    }

    /// Where process `pid` runs, as a snapshot names it.
    pub fn pod_ref(&self, pid: u32) -> Option<PodRef> {
        self.pod_ref_of(&super::cgroup_of(pid)?)
    }

    /// The listed pod and container `cgroup` names, as a snapshot names them.
    pub fn pod_ref_of(&self, cgroup: &PodCgroup) -> Option<PodRef> {
        let at = self.place(cgroup)?;
        Some(PodRef {
            namespace: at.pod.namespace.clone(),
            pod: at.pod.name.clone(),
            container: at.container.to_owned(),
            node: self.node.clone(),
        })
    }

    /// True when the pod with uid `uid` is listed and `selector` chooses it.
    pub fn selects_uid(&self, selector: &PodSelector, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| selector.selects_pod(p))
    }

    /// True when process `pid` runs in a container `selector` selects.
    pub fn selects_pid(&self, selector: &PodSelector, pid: u32) -> bool {
        super::cgroup_of(pid)
            .as_ref()
            .and_then(|c| self.place(c))
            .is_some_and(|at| selector.selects(at))
    }

    /// Every running process in a container `selector` selects, by scanning `/proc`.
    pub fn find(&self, selector: &PodSelector) -> Vec<u32> {
        // Most nodes run many pods and few are selected: skip the scan when none is.
        if !self.pods.values().any(|p| selector.selects_pod(p)) {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|pid| self.selects_pid(selector, *pid))
            .collect();
        pids.sort_unstable();
        pids
    }
}

impl From<v1::PodInfo> for Pod {
    fn from(p: v1::PodInfo) -> Self {
        Self {
            uid: p.uid,
            namespace: p.namespace,
            name: p.name,
            labels: p.labels.into_iter().collect(),
            containers: p
                .containers
                .into_iter()
                // The proto strips the scheme; tolerate one left in (`containerd://`).
                .map(|c| (strip_scheme(&c.id).to_owned(), c.name))
                .collect(),
        }
    }
}

/// `containerd://<id>` -> `<id>`, as `status.containerStatuses[].containerID` writes it.
fn strip_scheme(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: &[(&str, &str)], containers: &[(&str, &str)]) -> Pod {
        Pod {
            uid: "u".into(),
            namespace: "shop".into(),
            name: "orders-1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            containers: containers
                .iter()
                .map(|(id, n)| (id.to_string(), n.to_string()))
                .collect(),
        }
    }

    fn selector(labels: &[(&str, &str)], container: Option<&str>) -> PodSelector {
        PodSelector {
            namespace: "shop".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            container: container.map(str::to_owned),
        }
    }

    #[test]
    fn a_selector_takes_pods_with_every_label_in_its_namespace() {
        let p = pod(&[("app", "orders"), ("tier", "web")], &[("c1", "orders")]);
        assert!(selector(&[("app", "orders")], None).selects_pod(&p));
        assert!(selector(&[("app", "orders"), ("tier", "web")], None).selects_pod(&p));
        assert!(!selector(&[("app", "orders"), ("tier", "db")], None).selects_pod(&p));
        assert!(!selector(&[("app", "payments")], None).selects_pod(&p));
        assert!(
            !selector(&[], None).selects_pod(&p),
            "empty selects nothing"
        );
        let other_ns = PodSelector {
            namespace: "default".into(),
            ..selector(&[("app", "orders")], None)
        };
        assert!(!other_ns.selects_pod(&p));
        let at = |container| Placement { pod: &p, container };
        assert!(selector(&[("app", "orders")], Some("orders")).selects(at("orders")));
        assert!(!selector(&[("app", "orders")], Some("orders")).selects(at("envoy")));
        assert!(selector(&[("app", "orders")], None).selects(at("envoy")));
    }

    #[test]
    fn the_wire_list_keys_pods_by_uid_and_containers_by_bare_id() {
        let dir = PodDirectory::from_wire(
            "node-a",
            v1::NodePods {
                pods: vec![v1::PodInfo {
                    uid: "0b5c8d2e-6f1a-4c3b-9d7e-2a1b3c4d5e6f".into(),
                    namespace: "shop".into(),
                    name: "orders-1".into(),
                    labels: [("app".to_string(), "orders".to_string())].into(),
                    containers: vec![
                        v1::ContainerInfo {
                            name: "orders".into(),
                            id: "aa".repeat(32),
                        },
                        v1::ContainerInfo {
                            name: "envoy".into(),
                            id: format!("containerd://{}", "bb".repeat(32)),
                        },
                    ],
                }],
            },
        );
        assert_eq!((dir.node(), dir.len()), ("node-a", 1));
        let cgroup = |id: Option<String>| PodCgroup {
            pod_uid: "0b5c8d2e-6f1a-4c3b-9d7e-2a1b3c4d5e6f".into(),
            container_id: id,
            pod_path: None,
        };
        let at = dir.place(&cgroup(Some("bb".repeat(32)))).unwrap();
        assert_eq!((at.pod.name.as_str(), at.container), ("orders-1", "envoy"));
        // The sandbox (or any unlisted container) is in no container of the pod.
        assert!(dir.place(&cgroup(Some("cc".repeat(32)))).is_none());
        assert!(dir.place(&cgroup(None)).is_none());
        let elsewhere = PodCgroup {
            pod_uid: "1b5c8d2e-6f1a-4c3b-9d7e-2a1b3c4d5e6f".into(),
            ..cgroup(Some("aa".repeat(32)))
        };
        assert!(dir.place(&elsewhere).is_none());
    }
}
