//! The pods of one node as its agent needs them: uid (kubelet names cgroups after it),
//! name, labels, and the runtime ids of started containers.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;
use tracery_proto::v1;

/// Every live pod of `pods` scheduled on `node`, ordered by uid so an unchanged list
/// compares equal.
pub(crate) fn node_pods(pods: &[Arc<Pod>], node: &str) -> v1::NodePods {
    let mut list: Vec<v1::PodInfo> = pods
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .filter(|p| is_live(p))
        .map(|p| pod_info(p))
        .collect();
    list.sort_by(|a, b| a.uid.cmp(&b.uid));
    v1::NodePods { pods: list }
}

/// False for pods that finished (`Succeeded`, `Failed`): they have no processes left.
pub(crate) fn is_live(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed"))
}

fn pod_info(pod: &Pod) -> v1::PodInfo {
    let status = pod.status.as_ref();
    let statuses = status
        .into_iter()
        .flat_map(|s| {
            let all: [&Option<Vec<ContainerStatus>>; 3] = [
                &s.container_statuses,
                &s.init_container_statuses,
                &s.ephemeral_container_statuses,
            ];
            all.into_iter().flatten().flatten()
        })
        .filter_map(|c| {
            Some(v1::ContainerInfo {
                name: c.name.clone(),
                id: runtime_id(c.container_id.as_deref()?)?.to_owned(),
            })
        });
    v1::PodInfo {
        uid: pod.uid().unwrap_or_default(),
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        labels: pod.labels().clone().into_iter().collect(),
        containers: statuses.collect(),
    }
}

/// `containerd://3f…` → `3f…`: the id as the container's cgroup names it.
fn runtime_id(container_id: &str) -> Option<&str> {
    let id = container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id);
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn a_node_gets_its_live_pods_with_started_containers_only() {
        let pods = [
            pod(serde_json::json!({
                "metadata": {"name": "orders-1", "namespace": "shop", "uid": "u-2",
                             "labels": {"app": "orders"}},
                "spec": {"nodeName": "node-a", "containers": []},
                "status": {"phase": "Running", "containerStatuses": [
                    {"name": "app", "containerID": "containerd://abc123", "image": "i",
                     "imageID": "", "ready": true, "restartCount": 0},
                    {"name": "waiting", "image": "i", "imageID": "", "ready": false,
                     "restartCount": 0}
                ]}
            })),
            pod(serde_json::json!({
                "metadata": {"name": "done", "namespace": "shop", "uid": "u-1"},
                "spec": {"nodeName": "node-a", "containers": []},
                "status": {"phase": "Succeeded"}
            })),
            pod(serde_json::json!({
                "metadata": {"name": "elsewhere", "namespace": "shop", "uid": "u-3"},
                "spec": {"nodeName": "node-b", "containers": []}
            })),
        ];
        let got = node_pods(&pods, "node-a");
        assert_eq!(got.pods.len(), 1);
        let p = &got.pods[0];
        assert_eq!(
            (p.uid.as_str(), p.namespace.as_str(), p.name.as_str()),
            ("u-2", "shop", "orders-1")
        );
        assert_eq!(p.labels.get("app").map(String::as_str), Some("orders"));
        assert_eq!(
            p.containers,
            vec![v1::ContainerInfo {
                name: "app".into(),
                id: "abc123".into()
            }]
        );
    }
}
