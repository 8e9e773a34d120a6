//! The connection to the controller, and what to tell the user when there is none.

use std::path::PathBuf;

use tonic::transport::Channel;
use tracery_proto::v1::tracery_client::TraceryClient;

use crate::cluster;

/// Where `tracery-agent standalone` listens by default.
pub const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:7777";

/// The global flags that say where the controller is and which namespace is meant.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Controller and Kubernetes")]
pub struct Args {
    /// The controller's gRPC address. It wins over --context and --kubeconfig; without
    /// any of the three, http://127.0.0.1:7777 (`tracery-agent standalone`).
    #[arg(long, global = true, env = "TRACERY_CONTROLLER", value_name = "URL")]
    pub controller: Option<String>,
    /// Reach the controller in this kubeconfig context's cluster, with no address: through
    /// the API server, by a port-forward to a ready pod of the Service
    /// tracery-controller, as `kubectl port-forward` does (needs `create` on
    /// pods/portforward there). Ignored when --controller or TRACERY_CONTROLLER is set.
    #[arg(long, global = true, env = "TRACERY_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// The kubeconfig for --context (default: $KUBECONFIG, else ~/.kube/config). Given
    /// alone, reach the controller through the kubeconfig's current context, as
    /// --context does. KUBECONFIG alone does not: it only says where --context looks.
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The namespace of the tracery-controller Service, with --context or --kubeconfig.
    #[arg(long, global = true, value_name = "NS", default_value = cluster::CONTROLLER_NAMESPACE)]
    pub controller_namespace: String,
    /// Kubernetes namespace of --service and --selector targets; `breakpoint list -n NS`
    /// shows only that namespace's (default: the kubeconfig context's namespace with
    /// --context or --kubeconfig, else none sent, which the controller reads as
    /// `default`).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
}

/// Where the controller is.
pub enum Controller {
    /// A gRPC address.
    Url(String),
    /// A Service in a cluster, reached by port-forward through the API server.
    Cluster(cluster::ControllerService),
}

/// The Kubernetes namespace commands use: given with `-n`, from the kubeconfig context, or
/// none (empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    /// Given with `-n`: a command may then refuse a target it does not apply to, or show
    /// only that namespace.
    pub explicit: bool,
}

impl Args {
    /// Whether the controller is reached through the kubeconfig rather than an address.
    pub fn uses_kubeconfig(&self) -> bool {
        self.url().is_none() && (self.context.is_some() || self.kubeconfig.is_some())
    }

    /// `--controller`; an empty TRACERY_CONTROLLER counts as unset, as shells leave it.
    fn url(&self) -> Option<&str> {
        self.controller.as_deref().filter(|u| !u.is_empty())
    }

    /// The namespace when no kubeconfig is read: `-n`, or none.
    pub fn namespace_without_kubeconfig(&self) -> Namespace {
        self.namespace(None)
    }

    /// `-n` if given, else the kubeconfig context's namespace, else none.
    fn namespace(&self, context_namespace: Option<&str>) -> Namespace {
        match &self.namespace {
            Some(n) => Namespace {
                name: n.clone(),
                explicit: true,
            },
            None => Namespace {
                name: context_namespace.unwrap_or_default().to_owned(),
                explicit: false,
            },
        }
    }

    /// The controller and namespace these flags name; reads the kubeconfig only when the
    /// controller is reached through it (see [`Args::uses_kubeconfig`]).
    pub async fn resolve(&self) -> Result<(Controller, Namespace), cluster::ClusterError> {
        if !self.uses_kubeconfig() {
            let url = self.url().unwrap_or(DEFAULT_CONTROLLER).to_owned();
            return Ok((Controller::Url(url), self.namespace_without_kubeconfig()));
        }
        let kube = cluster::load(self.kubeconfig.as_deref(), self.context.as_deref()).await?;
        let namespace = self.namespace(Some(&kube.namespace));
        let service = cluster::ControllerService::new(
            kube.client,
            kube.server,
            &self.controller_namespace,
            cluster::CONTROLLER_SERVICE,
        );
        Ok((Controller::Cluster(service), namespace))
    }
}

/// Connects to the controller, or explains where it tried and what to do.
pub async fn connect(controller: &Controller) -> anyhow::Result<TraceryClient<Channel>> {
    match controller {
        Controller::Url(url) => connect_url(url).await,
        Controller::Cluster(service) => Ok(TraceryClient::new(service.channel().await?)),
    }
}

/// Connects to the controller at `url`, or explains where it tried and how to start one.
async fn connect_url(url: &str) -> anyhow::Result<TraceryClient<Channel>> {
    let endpoint = Channel::from_shared(url.to_string())
        .map_err(|_| {
            anyhow::anyhow!("--controller {url:?} is not a URL like {DEFAULT_CONTROLLER}")
        })?
        .connect_timeout(std::time::Duration::from_secs(3));
    match endpoint.connect().await {
        Ok(channel) => Ok(TraceryClient::new(channel)),
        Err(e) => Err(anyhow::anyhow!(
            "cannot reach the Tracery controller at {url} ({e}); start one on this machine \
             with `sudo tracery-agent standalone`, pass --controller URL (or set \
             TRACERY_CONTROLLER), or --context NAME to reach one in a Kubernetes cluster"
        )),
    }
}

/// Turns a gRPC error into the controller's own message.
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", s.message())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The global flags alone, as `tracery-ctl` takes them.
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        args: Args,
    }

    fn parse(flags: &[&str]) -> Args {
        Flags::try_parse_from(std::iter::once("tracery-ctl").chain(flags.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn an_address_wins_over_the_kubeconfig() {
        assert!(parse(&["--context", "dev"]).uses_kubeconfig());
        assert!(parse(&["--kubeconfig", "/tmp/k"]).uses_kubeconfig());
        assert!(parse(&["--controller", "", "--context", "dev"]).uses_kubeconfig());
        assert!(
            !parse(&["--controller", "http://10.0.0.5:7777", "--context", "dev"]).uses_kubeconfig()
        );
        assert_eq!(parse(&[]).controller_namespace, "tracery-system");
    }

    #[tokio::test]
    async fn without_a_kubeconfig_the_namespace_is_only_what_n_says() {
        let (controller, ns) = parse(&["--controller", "http://10.0.0.5:7777"])
            .resolve()
            .await
            .unwrap();
        assert!(matches!(controller, Controller::Url(u) if u == "http://10.0.0.5:7777"));
        assert_eq!(ns, Namespace::default());
        let (_, ns) = parse(&["--controller", "http://10.0.0.5:7777", "-n", "shop"])
            .resolve()
            .await
            .unwrap();
        assert_eq!(
            ns,
            Namespace {
                name: "shop".into(),
                explicit: true
            }
        );
    }

    #[tokio::test]
    async fn with_a_kubeconfig_the_namespace_defaults_to_its_contexts() {
        let dir = std::env::temp_dir().join(format!("tracery-ctl-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: dev\n\
             clusters: [{name: dev, cluster: {server: 'https://127.0.0.1:6443'}}]\n\
             contexts: [{name: dev, context: {cluster: dev, user: dev, namespace: shop}}]\n\
             users: [{name: dev, user: {token: not-a-real-token}}]\n",
        )
        .unwrap();
        let kubeconfig = path.to_str().unwrap();
        let (controller, ns) = parse(&["--kubeconfig", kubeconfig])
            .resolve()
            .await
            .unwrap();
        assert!(matches!(controller, Controller::Cluster(_)));
        assert_eq!(
            ns,
            Namespace {
                name: "shop".into(),
                explicit: false
            }
        );
        let (_, ns) = parse(&["--kubeconfig", kubeconfig, "-n", "payments"])
            .resolve()
            .await
            .unwrap();
        assert_eq!(ns.name, "payments");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
