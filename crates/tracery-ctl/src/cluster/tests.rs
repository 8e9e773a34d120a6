//! No Kubernetes API server can run on this machine, so controller discovery is
//! tested against kube's tower-test mock API (`mock_api_...`): the exact requests are
//! asserted and answered with real k8s-openapi objects. The port-forward's byte stream
//! needs a real API server and kubelet, so no test here carries gRPC through one; only
//! the API server's refusal of the port-forward is tested.

use super::*;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::json;
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

const SELECTOR: &str = "app.kubernetes.io/name";
const SERVICE_URL: &str = "/api/v1/namespaces/tracery-system/services/tracery-controller";
const PODS_URL: &str =
    "/api/v1/namespaces/tracery-system/pods?&labelSelector=app.kubernetes.io%2Fname%3Dtracery-controller";

fn controller_svc() -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "tracery-controller", "namespace": "tracery-system"},
        "spec": {
            "selector": {SELECTOR: "tracery-controller"},
            "ports": [{"name": "grpc", "port": 7777, "targetPort": "grpc"}],
        },
    }))
    .unwrap()
}

fn pod(name: &str, app: &str, phase: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "tracery-system",
            "labels": {SELECTOR: app},
        },
        "spec": {"containers": [{
            "name": "controller",
            "image": "tracery-controller:dev",
            "ports": [{"name": "grpc", "containerPort": 7777}],
        }]},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        },
    }))
    .unwrap()
}

fn pod_list(pods: &[Pod]) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {"resourceVersion": "42"},
        "items": pods,
    })
}

/// The API server's `Status` body for a refusal.
fn failure(code: u16, reason: &str, message: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// Answers the client's requests in order: each must be a GET of the given path and
/// gets that status and body. A request beyond the script finds the mock closed and
/// fails the client, so the script is the exact list of requests.
async fn serve(mut handle: Handle, script: Vec<(&'static str, u16, serde_json::Value)>) {
    for (path, status, body) in script {
        let (request, send) = handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("the client never asked for {path}"));
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().to_string(), path);
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    }
}

fn controller_service(
    script: Vec<(&'static str, u16, serde_json::Value)>,
) -> (ControllerService, tokio::task::JoinHandle<()>) {
    let (mock_service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(mock_service, "default");
    let server = tokio::spawn(serve(handle, script));
    let service = ControllerService::new(
        client,
        "https://mock-api".into(),
        CONTROLLER_NAMESPACE,
        CONTROLLER_SERVICE,
    );
    (service, server)
}

#[tokio::test]
async fn mock_api_discovery_picks_the_ready_pod_of_the_controller_service() {
    let pods = [
        // Listed first and matching, but not Ready: skipped.
        pod(
            "tracery-controller-5d8c7-aaaaa",
            "tracery-controller",
            "Running",
            false,
        ),
        // Ready, but another app's pod (a wrong answer from the API server): skipped.
        pod("other-app-0", "other-app", "Running", true),
        pod(
            "tracery-controller-5d8c7-bbbbb",
            "tracery-controller",
            "Running",
            true,
        ),
    ];
    let (service, server) = controller_service(vec![
        (
            SERVICE_URL,
            200,
            serde_json::to_value(controller_svc()).unwrap(),
        ),
        (PODS_URL, 200, pod_list(&pods)),
    ]);
    let found = service.find_pod().await.unwrap();
    assert_eq!(
        found,
        ControllerPod {
            name: "tracery-controller-5d8c7-bbbbb".into(),
            port: 7777,
        }
    );
    drop(service);
    server.await.unwrap();
}

#[tokio::test]
async fn mock_api_a_missing_service_asks_whether_tracery_is_installed() {
    let (service, server) = controller_service(vec![(
        SERVICE_URL,
        404,
        failure(
            404,
            "NotFound",
            r#"services "tracery-controller" not found"#,
        ),
    )]);
    let e = service.find_pod().await.unwrap_err();
    assert!(
        matches!(&e, ClusterError::ServiceMissing { namespace, name }
            if namespace == "tracery-system" && name == "tracery-controller"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "no Service tracery-controller in namespace tracery-system: is Tracery installed? \
         `kubectl apply -k deploy/kubernetes` installs it; if it runs in another \
         namespace, pass --controller-namespace NS"
    );
    drop(service);
    server.await.unwrap();
}

#[tokio::test]
async fn mock_api_no_ready_pod_names_each_pod_and_why() {
    let mut terminating = pod(
        "tracery-controller-5d8c7-ccccc",
        "tracery-controller",
        "Running",
        true,
    );
    terminating.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-12-06T02:00:00Z")).unwrap());
    let pods = [
        pod(
            "tracery-controller-5d8c7-aaaaa",
            "tracery-controller",
            "Pending",
            false,
        ),
        pod(
            "tracery-controller-5d8c7-bbbbb",
            "tracery-controller",
            "Running",
            false,
        ),
        terminating,
    ];
    let (service, server) = controller_service(vec![
        (
            SERVICE_URL,
            200,
            serde_json::to_value(controller_svc()).unwrap(),
        ),
        (PODS_URL, 200, pod_list(&pods)),
    ]);
    let e = service.find_pod().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "no ready pod behind Service tracery-system/tracery-controller \
         (tracery-controller-5d8c7-aaaaa: phase Pending; \
         tracery-controller-5d8c7-bbbbb: running but not Ready; \
         tracery-controller-5d8c7-ccccc: terminating); \
         `kubectl -n tracery-system describe pods -l \
         app.kubernetes.io/name=tracery-controller` shows why"
    );
    drop(service);
    server.await.unwrap();

    let (service, server) = controller_service(vec![
        (
            SERVICE_URL,
            200,
            serde_json::to_value(controller_svc()).unwrap(),
        ),
        (PODS_URL, 200, pod_list(&[])),
    ]);
    let e = service.find_pod().await.unwrap_err().to_string();
    assert!(e.contains("(no pod matches its selector)"), "{e}");
    drop(service);
    server.await.unwrap();
}

#[tokio::test]
async fn mock_api_a_forbidden_service_read_names_the_permission() {
    let (service, server) = controller_service(vec![(
        SERVICE_URL,
        403,
        failure(
            403,
            "Forbidden",
            r#"services "tracery-controller" is forbidden: User "dev" cannot get resource "services""#,
        ),
    )]);
    let e = service.find_pod().await.unwrap_err();
    assert!(
        e.to_string().contains(
            "refused to let you get services in namespace tracery-system; ask for that \
             permission (`kubectl auth can-i get services -n tracery-system` checks it)"
        ),
        "{e}"
    );
    drop(service);
    server.await.unwrap();
}

#[tokio::test]
async fn mock_api_a_refused_port_forward_names_the_rbac_permission() {
    let pods = [pod(
        "tracery-controller-5d8c7-bbbbb",
        "tracery-controller",
        "Running",
        true,
    )];
    let (mock_service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(mock_service, "default");
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.uri().to_string(), SERVICE_URL);
        send.send_response(Response::new(Body::from(
            serde_json::to_vec(&controller_svc()).unwrap(),
        )));
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.uri().to_string(), PODS_URL);
        send.send_response(Response::new(Body::from(
            serde_json::to_vec(&pod_list(&pods)).unwrap(),
        )));
        // The port-forward: a WebSocket upgrade of the pod's portforward subresource.
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), Method::GET);
        assert_eq!(
            request.uri().to_string(),
            "/api/v1/namespaces/tracery-system/pods/tracery-controller-5d8c7-bbbbb/portforward?&ports=7777"
        );
        assert_eq!(request.headers()[http::header::UPGRADE], "websocket");
        send.send_response(
            Response::builder()
                .status(403)
                .body(Body::from(
                    serde_json::to_vec(&failure(
                        403,
                        "Forbidden",
                        r#"pods "tracery-controller-5d8c7-bbbbb" is forbidden: User "dev" cannot create resource "pods/portforward""#,
                    ))
                    .unwrap(),
                ))
                .unwrap(),
        );
    });
    let service = ControllerService::new(
        client,
        "https://mock-api".into(),
        CONTROLLER_NAMESPACE,
        CONTROLLER_SERVICE,
    );
    let e = service.open().await.unwrap_err();
    assert!(
        matches!(
            &e,
            ClusterError::Forbidden {
                verb: "create",
                resource: "pods/portforward",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("`kubectl auth can-i create pods/portforward -n tracery-system`"),
        "{e}"
    );
    drop(service);
    server.await.unwrap();
}

#[test]
fn a_named_target_port_is_looked_up_in_the_pod() {
    let mut p = pod("c", "tracery-controller", "Running", true);
    p.spec.as_mut().unwrap().containers[0]
        .ports
        .as_mut()
        .unwrap()[0]
        .container_port = 8777;
    let named = IntOrString::String("grpc".into());
    assert_eq!(target_port(Some(&named), 7777, &p), Some(8777));
    assert_eq!(
        target_port(Some(&IntOrString::Int(9000)), 7777, &p),
        Some(9000)
    );
    assert_eq!(target_port(None, 7777, &p), Some(7777));
    let missing = IntOrString::String("http".into());
    assert_eq!(target_port(Some(&missing), 7777, &p), None);
}

const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev
  cluster:
    server: https://127.0.0.1:6443
contexts:
- name: dev
  context:
    cluster: dev
    user: dev
    namespace: shop
- name: staging
  context:
    cluster: dev
    user: dev
users:
- name: dev
  user:
    token: not-a-real-token
"#;

#[tokio::test]
async fn the_namespace_defaults_to_the_contexts() {
    let k = from_kubeconfig(Kubeconfig::from_yaml(KUBECONFIG).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(
        (k.namespace.as_str(), k.server.as_str()),
        ("shop", "https://127.0.0.1:6443/")
    );
    // A context without a namespace means `default`, as in kubectl.
    let k = from_kubeconfig(Kubeconfig::from_yaml(KUBECONFIG).unwrap(), Some("staging"))
        .await
        .unwrap();
    assert_eq!(k.namespace, "default");
}

#[tokio::test]
async fn an_unknown_context_lists_the_known_ones() {
    let Err(e) = from_kubeconfig(Kubeconfig::from_yaml(KUBECONFIG).unwrap(), Some("prod")).await
    else {
        panic!("context prod was found");
    };
    assert_eq!(
        e.to_string(),
        "no context \"prod\" in the kubeconfig (it has: dev, staging); \
         `kubectl config get-contexts` lists them"
    );
    let mut no_current = Kubeconfig::from_yaml(KUBECONFIG).unwrap();
    no_current.current_context = None;
    let Err(e) = from_kubeconfig(no_current, None).await else {
        panic!("a context was chosen");
    };
    assert!(matches!(e, ClusterError::NoCurrentContext), "{e:?}");
}

#[tokio::test]
async fn a_missing_kubeconfig_says_which_path() {
    let path = Path::new("/nonexistent/tracery/kubeconfig");
    let Err(e) = load(Some(path), None).await else {
        panic!("a kubeconfig was read");
    };
    assert!(
        e.to_string().starts_with(
            "no kubeconfig at /nonexistent/tracery/kubeconfig; pass --kubeconfig PATH"
        ),
        "{e}"
    );
}
