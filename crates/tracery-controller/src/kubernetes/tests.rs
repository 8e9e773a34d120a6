//! Mock-API tests: no Kubernetes API server can run on this machine, so the controller's
//! requests go to kube's `tower-test` mock (as kube-rs documents), which asserts each
//! request exactly and answers with real objects. The store is a real SQLite file and the
//! agents' sessions are the registry's real channels.

use std::sync::Arc;

use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::client::Body;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tower_test::mock::{self, Handle};
use tracery_crd::Breakpoint;
use tracery_proto::v1::{self, breakpoint_spec::Target, controller_message::Message as Down};

use super::reconcile::{reconcile, Context, FINALIZER};
use super::{sync, Cluster};
use crate::registry::Registry;
use crate::{ControllerOptions, Defaults, KubernetesApi};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// A controller registry in cluster mode over a real SQLite store, with the cluster's
/// pods and Services given as objects, and API calls going to a mock.
struct Fixture {
    registry: Arc<Registry>,
    api: ApiHandle,
    pods: Writer<Pod>,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

async fn fixture(pods: &[Value], services: &[Value]) -> Fixture {
    let (service, api) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = tracery_store::Store::open(&url).await.unwrap();
    let opts = ControllerOptions {
        store_url: url,
        services: Vec::new(),
        defaults: Defaults::default(),
        local_agent: None,
        databases: Vec::new(),
        capture_limits: Default::default(),
        kubernetes: Some(KubernetesApi::new(client.clone())),
        access: crate::Access::Open,
        tls_dir: None,
        otlp_endpoint: None,
    };
    let (stop, stopped) = watch::channel(false);
    let registry = Arc::new(Registry::new(store, opts, stopped));
    let (pod_store, mut pod_writer) = reflector::store::<Pod>();
    let (service_store, mut service_writer) = reflector::store::<Service>();
    for p in pods {
        pod_writer.apply_watcher_event(&watcher::Event::Apply(
            serde_json::from_value(p.clone()).unwrap(),
        ));
    }
    for s in services {
        service_writer.apply_watcher_event(&watcher::Event::Apply(
            serde_json::from_value(s.clone()).unwrap(),
        ));
    }
    registry.set_cluster(Arc::new(Cluster::from_stores(
        client,
        pod_store,
        service_store,
    )));
    Fixture {
        registry,
        api,
        pods: pod_writer,
        _dir: dir,
        _stop: stop,
    }
}

fn pod(name: &str, uid: &str, node: &str, app: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "app"}]},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "app", "containerID": format!("containerd://{}", uid.repeat(2)),
            "image": "orders:1", "imageID": "", "ready": true, "restartCount": 0}]}
    })
}

fn orders_service() -> Value {
    json!({
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"selector": {"app": "orders"}, "ports": [{"port": 80}]}
    })
}

/// An agent session on `node`, as `AgentLink.Session` registers one.
fn agent(
    reg: &Registry,
    id: &str,
    node: &str,
) -> mpsc::UnboundedReceiver<Result<v1::ControllerMessage, tonic::Status>> {
    let (tx, rx) = mpsc::unbounded_channel();
    reg.connect(
        v1::Hello {
            agent_id: id.into(),
            node: node.into(),
            kubernetes_node: node.into(),
            ..Default::default()
        },
        tx,
    );
    rx
}

/// Messages sent so far.
fn drain(
    rx: &mut mpsc::UnboundedReceiver<Result<v1::ControllerMessage, tonic::Status>>,
) -> Vec<Down> {
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        out.extend(m.unwrap().message);
    }
    out
}

/// Answers the next API request after checking its method and path; returns its body.
async fn expect(api: &mut ApiHandle, method: Method, path: &str, answer: Value) -> Value {
    let (request, send) = api
        .next_request()
        .await
        .expect("the controller made no request");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let body = request.into_body().collect_bytes().await.unwrap();
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&answer).unwrap()))
            .unwrap(),
    );
    if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    }
}

fn set_request(target: Target) -> v1::BreakpointSpec {
    v1::BreakpointSpec {
        target: Some(target),
        location: "orders.rs:42".into(),
        namespace: "shop".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn mock_api_a_service_breakpoint_goes_to_the_agents_of_its_pods_nodes_as_their_labels() {
    let mut f = fixture(
        &[
            pod("orders-1", "u1", "node-a", "orders"),
            pod("web-1", "u2", "node-b", "web"),
        ],
        &[orders_service()],
    )
    .await;
    let mut a = agent(&f.registry, "agent-a", "node-a");
    let mut b = agent(&f.registry, "agent-b", "node-b");
    let set = crate::breakpoints::set(&f.registry, set_request(Target::Service("orders".into())))
        .await
        .unwrap();
    let id = set.breakpoint.unwrap().id;

    // node-a: its pods first, then the breakpoint as the Service's selector.
    let sent = drain(&mut a);
    let [Down::NodePods(pods), Down::Arm(arm)] = sent.as_slice() else {
        panic!("node-a got {sent:?}");
    };
    assert_eq!(pods.pods.len(), 1);
    assert_eq!(
        (pods.pods[0].name.as_str(), pods.pods[0].uid.as_str()),
        ("orders-1", "u1")
    );
    assert_eq!(pods.pods[0].containers[0].id, "u1u1");
    let spec = arm.breakpoint.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(arm.breakpoint.as_ref().unwrap().id, id);
    assert_eq!(spec.namespace, "shop");
    let Some(Target::Selector(selector)) = &spec.target else {
        panic!("target {:?}", spec.target);
    };
    assert_eq!(
        selector.match_labels,
        [("app".to_owned(), "orders".to_owned())].into()
    );
    // node-b runs no pod of the Service: its pods, and no breakpoint.
    let sent = drain(&mut b);
    assert!(
        matches!(sent.as_slice(), [Down::NodePods(p)] if p.pods[0].name == "web-1"),
        "{sent:?}"
    );

    // A new pod of the Service starts on node-b: armed there without user action.
    f.pods.apply_watcher_event(&watcher::Event::Apply(
        serde_json::from_value(pod("orders-2", "u3", "node-b", "orders")).unwrap(),
    ));
    let cluster = f.registry.cluster().unwrap().clone();
    sync(&f.registry, &cluster).await;
    let sent = drain(&mut b);
    assert!(
        matches!(sent.as_slice(), [Down::NodePods(p), Down::Arm(arm)]
            if p.pods.len() == 2 && arm.breakpoint.as_ref().unwrap().id == id),
        "{sent:?}"
    );
    // node-a had it already; nothing of its own changed.
    assert!(drain(&mut a).is_empty());
    // The router made no API call: everything came from the watched stores.
    assert!(futures::FutureExt::now_or_never(f.api.next_request()).is_none());
}

#[tokio::test]
async fn mock_api_an_unknown_service_is_refused_with_what_to_run() {
    let f = fixture(&[], &[orders_service()]).await;
    let err = crate::breakpoints::set(&f.registry, set_request(Target::Service("payments".into())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        err.message()
            .contains("no Service \"payments\" in namespace \"shop\"")
            && err.message().contains("kubectl get services -n shop"),
        "{}",
        err.message()
    );
    assert!(f.registry.live_breakpoints().await.unwrap().is_empty());
}

fn breakpoint_object(finalizers: &[&str], extra_meta: Value) -> Breakpoint {
    let mut meta = json!({
        "name": "orders-qty", "namespace": "shop", "uid": "b-1", "generation": 1,
        "resourceVersion": "10", "finalizers": finalizers,
    });
    meta.as_object_mut()
        .unwrap()
        .extend(extra_meta.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "apiVersion": "tracery.dev/v1alpha1", "kind": "Breakpoint", "metadata": meta,
        "spec": {"service": "orders", "location": "orders.rs:42", "hits": 3}
    }))
    .unwrap()
}

#[tokio::test]
async fn mock_api_reconcile_adds_the_finalizer_first() {
    let mut f = fixture(
        &[pod("orders-1", "u1", "node-a", "orders")],
        &[orders_service()],
    )
    .await;
    let object = breakpoint_object(&[], json!({}));
    let ctx = context(&f);
    let answer = serde_json::to_value(breakpoint_object(&[FINALIZER], json!({}))).unwrap();
    let (result, patch) = tokio::join!(
        reconcile(Arc::new(object), ctx),
        expect(
            &mut f.api,
            Method::PATCH,
            "/apis/tracery.dev/v1alpha1/namespaces/shop/breakpoints/orders-qty",
            answer
        ),
    );
    result.unwrap();
    assert_eq!(
        patch,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
        ])
    );
    // Nothing is armed before the finalizer guarantees a disarm on delete.
    assert!(f.registry.live_breakpoints().await.unwrap().is_empty());
}

/// The reconciler's context over the fixture's registry and mock API.
fn context(f: &Fixture) -> Arc<Context> {
    Arc::new(Context {
        registry: f.registry.clone(),
        client: f.registry.opts.kubernetes.as_ref().unwrap().client(),
    })
}

#[tokio::test]
async fn mock_api_reconcile_arms_the_breakpoint_labels_the_object_and_reports_its_pods() {
    let mut f = fixture(
        &[
            pod("orders-1", "u1", "node-a", "orders"),
            pod("orders-2", "u2", "node-b", "orders"),
        ],
        &[orders_service()],
    )
    .await;
    let _a = agent(&f.registry, "agent-a", "node-a");
    let object = breakpoint_object(&[FINALIZER], json!({}));
    let ctx = context(&f);
    let path = "/apis/tracery.dev/v1alpha1/namespaces/shop/breakpoints/orders-qty";
    let echo = serde_json::to_value(&object).unwrap();
    let api = async {
        let label = expect(&mut f.api, Method::PATCH, path, echo.clone()).await;
        let status = expect(
            &mut f.api,
            Method::PATCH,
            &format!("{path}/status"),
            echo.clone(),
        )
        .await;
        (label, status)
    };
    // The agent on node-a answers the arm as a real one would.
    let registry = f.registry.clone();
    let answer = async move {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        registry.publish_arm_result(crate::registry::ArmEvent {
            agent_id: "agent-a".into(),
            result: v1::ArmResult {
                breakpoint_id: 1,
                pid: 4242,
                result: Some(v1::arm_result::Result::Probes(1)),
            },
        });
    };
    let (result, (label, status), ()) = tokio::join!(reconcile(Arc::new(object), ctx), api, answer);
    result.unwrap();
    let live = f.registry.live_breakpoints().await.unwrap();
    assert_eq!(live.len(), 1);
    let id = live[0].id.0;
    assert_eq!(live[0].spec["hit_limit"], json!(3));
    assert_eq!(
        label,
        json!({"metadata": {"labels": {"tracery.dev/breakpoint-id": id.to_string()}}})
    );
    let status = &status["status"];
    assert_eq!(status["breakpointId"], json!(id));
    assert_eq!(status["observedGeneration"], json!(1));
    assert_eq!(
        status["pods"],
        json!([{"name": "orders-1", "node": "node-a"}, {"name": "orders-2", "node": "node-b"}])
    );
    assert_eq!(status["nodes"], json!(["node-a", "node-b"]));
    assert_eq!(status["armedPods"], json!(1));
    assert_eq!(status["hits"], json!(0));
    let ready = &status["conditions"][0];
    assert_eq!(
        (
            ready["type"].as_str(),
            ready["status"].as_str(),
            ready["reason"].as_str()
        ),
        (Some("Ready"), Some("True"), Some("Armed"))
    );
    assert_eq!(
        ready["message"],
        json!("1 of 2 pods run on a node with a connected agent")
    );
}

#[tokio::test]
async fn mock_api_deleting_the_object_disarms_its_breakpoint_then_releases_the_finalizer() {
    let mut f = fixture(&[], &[orders_service()]).await;
    let set = crate::breakpoints::set(&f.registry, set_request(Target::Service("orders".into())))
        .await
        .unwrap();
    let id = set.breakpoint.unwrap().id;
    let object = breakpoint_object(
        &[FINALIZER],
        json!({
            "deletionTimestamp": "2026-12-06T03:00:00Z",
            "labels": {"tracery.dev/breakpoint-id": id.to_string()},
        }),
    );
    let ctx = context(&f);
    let echo = serde_json::to_value(&object).unwrap();
    let (result, patch) = tokio::join!(
        reconcile(Arc::new(object), ctx),
        expect(
            &mut f.api,
            Method::PATCH,
            "/apis/tracery.dev/v1alpha1/namespaces/shop/breakpoints/orders-qty",
            echo
        ),
    );
    result.unwrap();
    assert!(f.registry.live_breakpoints().await.unwrap().is_empty());
    assert_eq!(
        patch,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ])
    );
}
