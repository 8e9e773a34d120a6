//! Reaching the controller in a Kubernetes cluster without its address: the kubeconfig's
//! context gives an API client, the controller's Service gives a ready pod, and each gRPC
//! connection is a port-forward to that pod, as `kubectl port-forward svc/...` makes one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use tokio::io::DuplexStream;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Uri};

/// The controller's Service, as `deploy/kubernetes` installs it.
pub const CONTROLLER_SERVICE: &str = "tracery-controller";
/// The namespace `deploy/kubernetes` installs the controller in.
pub const CONTROLLER_NAMESPACE: &str = "tracery-system";
/// The controller's gRPC port on its Service.
pub const CONTROLLER_PORT: u16 = 7777;

/// Why the controller could not be reached through the cluster; each message says what to
/// do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no kubeconfig at {path}; pass --kubeconfig PATH, or --controller URL to reach the \
         controller directly"
    )]
    NoKubeconfig {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    #[error(
        "no kubeconfig: KUBECONFIG is unset and there is no ~/.kube/config; pass \
         --kubeconfig PATH, or --controller URL to reach the controller directly"
    )]
    NoKubeconfigPath,
    #[error("cannot read the kubeconfig; `kubectl config view` shows what is wrong with it")]
    Kubeconfig(#[source] KubeconfigError),
    #[error("the kubeconfig has no current context; pass --context NAME (`kubectl config get-contexts` lists them)")]
    NoCurrentContext,
    #[error("no context {context:?} in the kubeconfig (it has: {}); `kubectl config get-contexts` lists them", known.join(", "))]
    ContextNotFound { context: String, known: Vec<String> },
    #[error(
        "the kubeconfig's context {context:?} is incomplete; \
         `kubectl config view --minify --context {context}` shows it"
    )]
    BadContext {
        context: String,
        #[source]
        source: KubeconfigError,
    },
    #[error("cannot make a Kubernetes client for context {context:?}")]
    Client {
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "no Service {name} in namespace {namespace}: is Tracery installed? \
         `kubectl apply -k deploy/kubernetes` installs it; if it runs in another namespace, \
         pass --controller-namespace NS"
    )]
    ServiceMissing { namespace: String, name: String },
    #[error(
        "Service {namespace}/{name} selects no pods (it has no spec.selector); reinstall \
         Tracery with `kubectl apply -k deploy/kubernetes`"
    )]
    ServiceWithoutSelector { namespace: String, name: String },
    #[error(
        "Service {namespace}/{name} has no port {CONTROLLER_PORT} (its ports: {ports}); \
         reinstall Tracery with `kubectl apply -k deploy/kubernetes`"
    )]
    NoControllerPort {
        namespace: String,
        name: String,
        ports: String,
    },
    #[error(
        "no ready pod behind Service {namespace}/{name} ({}); \
         `kubectl -n {namespace} describe pods -l {selector}` shows why",
        if pods.is_empty() { "no pod matches its selector".to_owned() } else { pods.join("; ") }
    )]
    NoReadyPod {
        namespace: String,
        name: String,
        selector: String,
        /// `pod: why it is not used`, for each pod the selector matched.
        pods: Vec<String>,
    },
    #[error(
        "the Kubernetes API server refused to let you {verb} {resource} in namespace \
         {namespace}; ask for that permission (`kubectl auth can-i {verb} {resource} -n \
         {namespace}` checks it), or pass --controller URL"
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the Kubernetes API server at {server} did not accept your credentials; \
         `kubectl cluster-info` should fail the same way (log in again, or fix the kubeconfig)"
    )]
    Unauthorized {
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "cannot reach the Kubernetes API server at {server} (to {verb} {resource} in \
         namespace {namespace}); `kubectl cluster-info` checks the same connection"
    )]
    Unreachable {
        server: String,
        verb: &'static str,
        resource: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Kubernetes API server at {server} failed to {verb} {resource} in namespace {namespace}")]
    Api {
        server: String,
        verb: &'static str,
        resource: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "no port-forward to pod {namespace}/{pod} port {port}: the API server did not \
         open it"
    )]
    PortForward {
        namespace: String,
        pod: String,
        port: u16,
        #[source]
        source: kube::Error,
    },
    #[error(
        "a port-forward to pod {namespace}/{pod} port {port} opened, but no Tracery \
         controller answered gRPC through it; `kubectl -n {namespace} logs {pod}` shows \
         what it is doing"
    )]
    Grpc {
        namespace: String,
        pod: String,
        port: u16,
        #[source]
        source: tonic::transport::Error,
    },
}

/// An API client for one kubeconfig context, and that context's namespace.
pub struct KubeContext {
    pub client: kube::Client,
    /// The context's namespace, `default` when it names none (as kubectl does).
    pub namespace: String,
    /// The API server's URL, for messages.
    pub server: String,
    /// The kubeconfig user's bearer token, sent to the controller (which checks it with a
    /// TokenReview); `None` for users that log in by certificate or an exec plugin.
    pub token: Option<String>,
}

/// Reads the kubeconfig at `path` (or `KUBECONFIG`, or `~/.kube/config`) and makes a client
/// for `context` (or the current one).
pub async fn load(path: Option<&Path>, context: Option<&str>) -> Result<KubeContext, ClusterError> {
    let kubeconfig = match path {
        Some(p) => Kubeconfig::read_from(p),
        None => Kubeconfig::read(),
    }
    .map_err(|e| match e {
        KubeconfigError::ReadConfig(_, ref p) => ClusterError::NoKubeconfig {
            path: p.clone(),
            source: e,
        },
        KubeconfigError::FindPath => ClusterError::NoKubeconfigPath,
        e => ClusterError::Kubeconfig(e),
    })?;
    from_kubeconfig(kubeconfig, context).await
}

/// [`load`] for a kubeconfig already read.
pub async fn from_kubeconfig(
    kubeconfig: Kubeconfig,
    context: Option<&str>,
) -> Result<KubeContext, ClusterError> {
    // kube's own error for a missing context does not list the ones there are.
    let name = match context {
        Some(c) => c.to_owned(),
        None => kubeconfig
            .current_context
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or(ClusterError::NoCurrentContext)?,
    };
    if !kubeconfig.contexts.iter().any(|c| c.name == name) {
        return Err(ClusterError::ContextNotFound {
            context: name,
            known: kubeconfig.contexts.iter().map(|c| c.name.clone()).collect(),
        });
    }
    let options = KubeConfigOptions {
        context: Some(name.clone()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| ClusterError::BadContext {
            context: name.clone(),
            source,
        })?;
    let namespace = config.default_namespace.clone();
    let token = config
        .auth_info
        .token
        .as_ref()
        .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned())
        .or_else(|| {
            let file = config.auth_info.token_file.as_ref()?;
            Some(std::fs::read_to_string(file).ok()?.trim().to_owned())
        });
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|source| ClusterError::Client {
        context: name,
        source,
    })?;
    Ok(KubeContext {
        client,
        namespace,
        server,
        token,
    })
}

/// The controller's Service in a cluster, reached through the API server.
#[derive(Clone)]
pub struct ControllerService {
    client: kube::Client,
    /// The API server's URL, for messages.
    server: String,
    namespace: String,
    name: String,
}

/// The pod a port-forward goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerPod {
    pub name: String,
    /// The container port behind the Service's port 7777.
    pub port: u16,
}

impl ControllerService {
    /// The Service `name` in `namespace`, through `client`.
    pub fn new(client: kube::Client, server: String, namespace: &str, name: &str) -> Self {
        Self {
            client,
            server,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// A ready pod behind the Service, and its port behind port 7777: two API requests
    /// (get the Service, list pods by its selector).
    pub async fn find_pod(&self) -> Result<ControllerPod, ClusterError> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        let service = services
            .get_opt(&self.name)
            .await
            .map_err(|e| self.api_error(e, "get", "services"))?
            .ok_or_else(|| ClusterError::ServiceMissing {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
            })?;
        let spec = service.spec.unwrap_or_default();
        let selector = spec.selector.filter(|s| !s.is_empty()).ok_or_else(|| {
            ClusterError::ServiceWithoutSelector {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
            }
        })?;
        let ports = spec.ports.unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.port == i32::from(CONTROLLER_PORT))
            .ok_or_else(|| ClusterError::NoControllerPort {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                ports: ports
                    .iter()
                    .map(|p| p.port.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let selector_text = selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut listed = pods
            .list(&ListParams::default().labels(&selector_text))
            .await
            .map_err(|e| self.api_error(e, "list", "pods"))?
            .items;
        // By name, so the same cluster state always gives the same pod.
        listed.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut unusable = Vec::new();
        for pod in &listed {
            let name = pod.metadata.name.clone().unwrap_or_default();
            match unready_reason(pod, &selector) {
                Some(why) => unusable.push(format!("{name}: {why}")),
                None => {
                    if let Some(port) = target_port(port.target_port.as_ref(), port.port, pod) {
                        return Ok(ControllerPod { name, port });
                    }
                    unusable.push(format!(
                        "{name}: no container port for the Service's target port"
                    ));
                }
            }
        }
        Err(ClusterError::NoReadyPod {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            selector: selector_text,
            pods: unusable,
        })
    }

    /// A new port-forward to a ready controller pod: its byte stream, and the pod.
    pub async fn open(&self) -> Result<(DuplexStream, ControllerPod), ClusterError> {
        let pod = self.find_pod().await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut forward = pods
            .portforward(&pod.name, &[pod.port])
            .await
            .map_err(|e| match &e {
                kube::Error::Api(s) if s.code == 403 => ClusterError::Forbidden {
                    verb: "create",
                    resource: "pods/portforward",
                    namespace: self.namespace.clone(),
                    source: e,
                },
                _ => ClusterError::PortForward {
                    namespace: self.namespace.clone(),
                    pod: pod.name.clone(),
                    port: pod.port,
                    source: e,
                },
            })?;
        let stream = forward
            .take_stream(pod.port)
            .expect("kube returns a stream for each port asked for");
        let errors = forward.take_error(pod.port);
        let (namespace, name, port) = (self.namespace.clone(), pod.name.clone(), pod.port);
        // The kubelet reports a failed forward (nothing listening, say) on a side channel,
        // not on the stream, which only closes: show it, or the gRPC error says nothing.
        tokio::spawn(async move {
            if let Some(errors) = errors {
                if let Some(message) = errors.await {
                    tracing::warn!("port-forward to pod {namespace}/{name} port {port}: {message}");
                }
            }
            if let Err(e) = forward.join().await {
                tracing::debug!("port-forward to pod {namespace}/{name} ended: {e}");
            }
        });
        Ok((stream, pod))
    }

    /// A gRPC channel to the controller; each connection it makes (the first, and each
    /// reconnect) is a new port-forward to a ready pod, so a restarted controller is found.
    /// A channel through a port-forward, over TLS when `tls` is given.
    pub async fn channel(&self, tls: Option<ClientTlsConfig>) -> Result<Channel, ClusterError> {
        // The first forward is opened here, so its errors keep their type; later ones can
        // only fail as the channel's transport errors.
        let (first, pod) = self.open().await?;
        let first = Arc::new(Mutex::new(Some(first)));
        let this = self.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let this = this.clone();
            let ready = first.lock().map(|mut s| s.take()).unwrap_or(None);
            async move {
                let stream = match ready {
                    Some(s) => s,
                    None => this.open().await?.0,
                };
                Ok::<_, ClusterError>(TokioIo::new(stream))
            }
        });
        // The host is never resolved: the connector above is the only way out.
        let endpoint = match tls {
            Some(tls) => Endpoint::from_static("https://tracery-controller")
                .tls_config(tls)
                .map_err(|source| ClusterError::Grpc {
                    namespace: self.namespace.clone(),
                    pod: pod.name.clone(),
                    port: pod.port,
                    source,
                })?,
            None => Endpoint::from_static("http://tracery-controller"),
        };
        endpoint
            .connect_timeout(std::time::Duration::from_secs(20))
            .connect_with_connector(connector)
            .await
            .map_err(|source| ClusterError::Grpc {
                namespace: self.namespace.clone(),
                pod: pod.name,
                port: pod.port,
                source,
            })
    }

    fn api_error(
        &self,
        e: kube::Error,
        verb: &'static str,
        resource: &'static str,
    ) -> ClusterError {
        match &e {
            kube::Error::Api(s) if s.code == 403 => ClusterError::Forbidden {
                verb,
                resource,
                namespace: self.namespace.clone(),
                source: e,
            },
            kube::Error::Api(s) if s.code == 401 => ClusterError::Unauthorized {
                server: self.server.clone(),
                source: e,
            },
            kube::Error::Api(_) => ClusterError::Api {
                server: self.server.clone(),
                verb,
                resource,
                namespace: self.namespace.clone(),
                source: e,
            },
            _ => ClusterError::Unreachable {
                server: self.server.clone(),
                verb,
                resource,
                namespace: self.namespace.clone(),
                source: e,
            },
        }
    }
}

/// Why `pod` cannot take the forward, or `None` when it can: it must carry the selector's
/// labels (the API server filtered by them; this guards against a wrong answer), run, be
/// Ready, and not be terminating.
fn unready_reason(pod: &Pod, selector: &BTreeMap<String, String>) -> Option<String> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    if selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
        return Some("its labels do not match the Service's selector".into());
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("terminating".into());
    }
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_else(|| "Unknown".into());
    if phase != "Running" {
        return Some(format!("phase {phase}"));
    }
    let ready = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    (!ready).then(|| "running but not Ready".into())
}

/// The container port the Service's `port` leads to in `pod`: `targetPort` as a number, or
/// as a name looked up in the pod's containers, or `port` itself when unset.
fn target_port(target: Option<&IntOrString>, port: i32, pod: &Pod) -> Option<u16> {
    let n = match target {
        None => port,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(name)) => {
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name))?
                .container_port
        }
    };
    u16::try_from(n).ok()
}

#[cfg(test)]
mod tests;
