//! The connection to the controller, and what to tell the user when there is none.

use std::path::{Path, PathBuf};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tracery_proto::v1::tracery_client::TraceryClient;

use crate::cluster;

/// Where `tracery-agent standalone` listens by default.
pub const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:7777";
/// Where `tracery-agent standalone` writes its API token (its default --data-dir).
pub const STANDALONE_TOKEN: &str = "/var/lib/tracery/token";
/// The name the controller's certificate is checked against behind a port-forward (a
/// SAN of the certificates `tracery-ctl certs init` writes).
pub const CLUSTER_TLS_NAME: &str = "tracery-controller.tracery-system.svc";

/// A client of the controller that sends the API token with every call.
pub type Client = TraceryClient<InterceptedService<Channel, Bearer>>;

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
    /// A file holding the API token to send. Default: the TRACERY_TOKEN variable, else
    /// the kubeconfig user's token with --context or --kubeconfig, else the standalone's
    /// /var/lib/tracery/token when this user can read it.
    #[arg(long, global = true, env = "TRACERY_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The CA certificate (PEM) the controller's certificate must be signed by; needed for
    /// an https:// --controller, and turns on TLS through a port-forward (`tracery-ctl
    /// certs init` writes one as DIR/ca.crt).
    #[arg(long, global = true, env = "TRACERY_CA", value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
}

/// Where the controller is, and how to prove who we are to it.
pub struct Controller {
    pub place: Place,
    /// The bearer token to send, if one was found.
    token: Option<String>,
    tls_ca: Option<PathBuf>,
}

/// Where the controller is.
pub enum Place {
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
    pub async fn resolve(&self) -> anyhow::Result<(Controller, Namespace)> {
        let given = self.given_token()?;
        if !self.uses_kubeconfig() {
            let url = self.url().unwrap_or(DEFAULT_CONTROLLER).to_owned();
            // The standalone's file, when readable: tracery-ctl as the standalone's user.
            let token = given.or_else(|| read_token(Path::new(STANDALONE_TOKEN)).ok());
            let controller = Controller {
                place: Place::Url(url),
                token,
                tls_ca: self.tls_ca.clone(),
            };
            return Ok((controller, self.namespace_without_kubeconfig()));
        }
        let kube = cluster::load(self.kubeconfig.as_deref(), self.context.as_deref()).await?;
        let namespace = self.namespace(Some(&kube.namespace));
        let token = given.or(kube.token);
        let service = cluster::ControllerService::new(
            kube.client,
            kube.server,
            &self.controller_namespace,
            cluster::CONTROLLER_SERVICE,
        );
        let controller = Controller {
            place: Place::Cluster(service),
            token,
            tls_ca: self.tls_ca.clone(),
        };
        Ok((controller, namespace))
    }

    /// TRACERY_TOKEN, else the file of --token-file.
    fn given_token(&self) -> anyhow::Result<Option<String>> {
        if let Some(t) = std::env::var("TRACERY_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            return Ok(Some(t.trim().to_owned()));
        }
        self.token_file
            .as_deref()
            .map(|p| {
                read_token(p).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read --token-file {} ({e}); check the path and its permissions",
                        p.display()
                    )
                })
            })
            .transpose()
    }
}

fn read_token(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

/// Adds `authorization: Bearer TOKEN` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Controller {
    fn bearer(&self) -> anyhow::Result<Bearer> {
        let value = self
            .token
            .as_ref()
            .map(|t| format!("Bearer {t}").parse::<MetadataValue<Ascii>>())
            .transpose()
            .map_err(|_| {
                anyhow::anyhow!(
                    "the API token has characters a header cannot carry; check the token file"
                )
            })?;
        Ok(Bearer(value))
    }

    /// TLS trusting the CA of --tls-ca, checking the certificate against `name` (or the
    /// URL's host when `None`).
    fn tls(&self, name: Option<&str>) -> anyhow::Result<Option<ClientTlsConfig>> {
        let Some(path) = &self.tls_ca else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read --tls-ca {} ({e}); `tracery-ctl certs init` writes DIR/ca.crt",
                path.display()
            )
        })?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        if let Some(name) = name {
            config = config.domain_name(name);
        }
        Ok(Some(config))
    }
}

/// Connects to the controller, or explains where it tried and what to do.
pub async fn connect(controller: &Controller) -> anyhow::Result<Client> {
    let bearer = controller.bearer()?;
    let channel = match &controller.place {
        Place::Url(url) => connect_url(url, controller.tls(None)?).await?,
        Place::Cluster(service) => {
            service
                .channel(controller.tls(Some(CLUSTER_TLS_NAME))?)
                .await?
        }
    };
    Ok(TraceryClient::with_interceptor(channel, bearer))
}

/// Connects to the controller at `url`, or explains where it tried and how to start one.
async fn connect_url(url: &str, tls: Option<ClientTlsConfig>) -> anyhow::Result<Channel> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|_| {
            anyhow::anyhow!("--controller {url:?} is not a URL like {DEFAULT_CONTROLLER}")
        })?
        .connect_timeout(std::time::Duration::from_secs(3));
    match tls {
        Some(tls) => {
            endpoint = endpoint.tls_config(tls).map_err(|e| {
                anyhow::anyhow!("cannot use --tls-ca for {url} ({e}); use an https:// URL")
            })?;
        }
        None if url.starts_with("https://") => anyhow::bail!(
            "{url} is https: pass --tls-ca PATH (or set TRACERY_CA) with the CA that signed \
             the controller's certificate"
        ),
        None => {}
    }
    match endpoint.connect().await {
        Ok(channel) => Ok(channel),
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
        assert!(matches!(controller.place, Place::Url(u) if u == "http://10.0.0.5:7777"));
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
        assert!(matches!(controller.place, Place::Cluster(_)));
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
