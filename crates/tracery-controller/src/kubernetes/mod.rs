//! Cluster mode: `--service` names a Kubernetes Service, the pods it selects are read from
//! the API and followed as they start, restart or move, each agent is sent the pods of its
//! node (so agents need no API access), and `Breakpoint` objects are reconciled.

mod node_pods;
pub(crate) mod reconcile;
mod routing;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;
use tracery_crd::{Breakpoint, BreakpointSpec as CrdSpec, TargetPod};
use tracery_proto::v1;

use crate::registry::Registry;
use crate::spec::{StoredSpec, StoredTarget};

pub(crate) use node_pods::node_pods;
pub(crate) use routing::sync;

/// Label on `Breakpoint` objects naming the controller's breakpoint id, so `tracery-ctl
/// breakpoint delete` finds the object of a breakpoint by id.
pub(crate) const ID_LABEL: &str = tracery_crd::BREAKPOINT_ID_ANNOTATION;

/// How long start-up waits for the first list of pods and Services.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// A namespace and the labels its pods must carry.
pub(crate) type PodSelector = (String, BTreeMap<String, String>);

/// A connection to the Kubernetes API for cluster mode ([`ControllerOptions::kubernetes`]).
///
/// [`ControllerOptions::kubernetes`]: crate::ControllerOptions::kubernetes
#[derive(Clone)]
pub struct KubernetesApi {
    client: Client,
}

impl KubernetesApi {
    /// Uses `client`: `kube::Client::try_default()` in a pod, or a mock in tests.
    pub fn new(client: Client) -> Self {
        KubernetesApi { client }
    }

    /// The API client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }
}

impl std::fmt::Debug for KubernetesApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubernetesApi")
    }
}

/// The cluster as the controller follows it: every pod and Service, kept current by
/// watches.
pub(crate) struct Cluster {
    client: Client,
    pods: Store<Pod>,
    services: Store<Service>,
    /// Bumped on every pod or Service change; the router wakes on it.
    changes: watch::Sender<u64>,
    /// What each agent session has been sent.
    sent: routing::SentByAgent,
}

/// What [`start`] runs; aborted when the controller stops.
pub(crate) struct ClusterTasks(Vec<JoinHandle<()>>);

impl Drop for ClusterTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts following pods and Services, routing breakpoints to the agents of their pods'
/// nodes, and reconciling `Breakpoint` objects. Fails when the first lists do not arrive
/// (no API access, missing RBAC).
pub(crate) async fn start(
    api: &KubernetesApi,
    registry: Arc<Registry>,
) -> Result<ClusterTasks, String> {
    let client = api.client.clone();
    let changes = watch::channel(0u64).0;
    let (pods, pod_task) = follow::<Pod>(&client, &changes);
    let (services, service_task) = follow::<Service>(&client, &changes);
    let ready = async {
        pods.wait_until_ready().await.ok();
        services.wait_until_ready().await.ok();
    };
    if tokio::time::timeout(SYNC_TIMEOUT, ready).await.is_err() {
        pod_task.abort();
        service_task.abort();
        return Err(format!(
            "cannot list pods and Services through the Kubernetes API within {}s; check the \
             controller's RBAC (deploy/kubernetes/rbac.yaml) and its log",
            SYNC_TIMEOUT.as_secs()
        ));
    }
    let cluster = Arc::new(Cluster {
        client: client.clone(),
        pods,
        services,
        changes,
        sent: Default::default(),
    });
    registry.set_cluster(cluster.clone());
    let router = tokio::spawn(routing::run(registry.clone(), cluster.clone()));
    let reconciler = tokio::spawn(reconcile::run(registry, client));
    tracing::info!("cluster mode: following pods, Services and Breakpoint objects");
    Ok(ClusterTasks(vec![
        pod_task,
        service_task,
        router,
        reconciler,
    ]))
}

/// A store of every `K` in the cluster, kept by a watch; each change bumps `changes`.
fn follow<K>(client: &Client, changes: &watch::Sender<u64>) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let changes = changes.clone();
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        // Managed fields are most of a pod's size and nothing here reads them.
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changes.send_modify(|n| *n += 1),
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying")
                }
            }
        }
    });
    (store, task)
}

impl Cluster {
    /// Builds a cluster view over existing stores (tests fill them without a watch).
    #[cfg(test)]
    pub(crate) fn from_stores(client: Client, pods: Store<Pod>, services: Store<Service>) -> Self {
        Cluster {
            client,
            pods,
            services,
            changes: watch::channel(0).0,
            sent: Default::default(),
        }
    }

    /// Refuses a `Service` target that does not exist, before anything is stored.
    pub fn check_target(&self, spec: &StoredSpec) -> Result<(), Status> {
        match self.selector(spec) {
            Some(Err(e)) => Err(Status::not_found(e)),
            _ => Ok(()),
        }
    }

    /// The namespace and pod labels a spec targets; `None` for `--exe` and `--pid`.
    pub fn selector(&self, spec: &StoredSpec) -> Option<Result<PodSelector, String>> {
        let namespace = spec.namespace.clone().unwrap_or_else(|| "default".into());
        match &spec.target {
            StoredTarget::Selector(labels) => Some(Ok((namespace, labels.clone()))),
            StoredTarget::Service(name) => {
                let key = ObjectRef::<Service>::new(name).within(&namespace);
                let Some(service) = self.services.get(&key) else {
                    return Some(Err(format!(
                        "no Service {name:?} in namespace {namespace:?}; `kubectl get services \
                         -n {namespace}` lists them (pass -n for another namespace)"
                    )));
                };
                let labels = service
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.clone())
                    .unwrap_or_default();
                if labels.is_empty() {
                    return Some(Err(format!(
                        "Service {namespace}/{name} has no selector, so it chooses no pods; \
                         target the pods with --selector LABEL=VALUE instead"
                    )));
                }
                Some(Ok((namespace, labels)))
            }
            StoredTarget::Exe(_) | StoredTarget::Pid(_) => None,
        }
    }

    /// Running pods of `namespace` carrying every label of `labels`, by name.
    pub fn pods_matching(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<TargetPod> {
        let mut pods: Vec<TargetPod> = self
            .pods
            .state()
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(namespace))
            .filter(|p| node_pods::is_live(p))
            .filter(|p| {
                let own = p.labels();
                labels.iter().all(|(k, v)| own.get(k) == Some(v))
            })
            .map(|p| TargetPod {
                name: p.name_any(),
                node: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
            })
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }

    /// The pods on `node`, as its agent is sent them.
    pub fn node_pods(&self, node: &str) -> v1::NodePods {
        node_pods(&self.pods.state(), node)
    }

    /// Wakes the router (a breakpoint or an agent changed, not only the cluster).
    pub fn poke(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Creates a `Breakpoint` object for a breakpoint set with `tracery-ctl`, so `kubectl
    /// get breakpoints` shows it too. Failures are logged: the breakpoint itself is set.
    pub async fn mirror(&self, bp: &v1::Breakpoint) {
        let Some(spec) = bp.spec.as_ref() else { return };
        let Some(crd_spec) = CrdSpec::from_proto(spec) else {
            return; // --exe and --pid have no Kubernetes form.
        };
        let namespace = if spec.namespace.is_empty() {
            "default"
        } else {
            &spec.namespace
        };
        let mut object = Breakpoint::new(&format!("tracery-{}", bp.id), crd_spec);
        object
            .labels_mut()
            .insert(ID_LABEL.to_owned(), bp.id.to_string());
        let api = Api::<Breakpoint>::namespaced(self.client.clone(), namespace);
        if let Err(e) = api.create(&PostParams::default(), &object).await {
            tracing::warn!(breakpoint = bp.id, error = %e, "cannot create its Breakpoint object");
        }
    }

    /// Deletes the `Breakpoint` objects of breakpoint `id` (set by the CLI or by kubectl).
    pub async fn unmirror(&self, id: u64) {
        let api = Api::<Breakpoint>::all(self.client.clone());
        let list = match api
            .list(&ListParams::default().labels(&format!("{ID_LABEL}={id}")))
            .await
        {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(breakpoint = id, error = %e, "cannot list its Breakpoint objects");
                return;
            }
        };
        for object in list {
            let ns = object.namespace().unwrap_or_default();
            let api = Api::<Breakpoint>::namespaced(self.client.clone(), &ns);
            if let Err(e) = api
                .delete(&object.name_any(), &DeleteParams::default())
                .await
            {
                tracing::warn!(breakpoint = id, error = %e, "cannot delete its Breakpoint object");
            }
        }
    }

    /// Nodes of `pods`, without the unscheduled.
    pub fn nodes_of(pods: &[TargetPod]) -> BTreeSet<String> {
        pods.iter()
            .filter(|p| !p.node.is_empty())
            .map(|p| p.node.clone())
            .collect()
    }
}
