//! Authentication and namespace authorization in cluster mode, against kube's tower-test
//! mock API (no API server runs here): it answers TokenReviews for two users and an
//! expired token, and SubjectAccessReviews from RBAC rules held here, and records every
//! review so the tests assert exactly what the controller asked. The handlers, registry
//! and SQLite store are the real ones.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::client::Body;
use kube::runtime::reflector;
use serde_json::{json, Value};
use tokio::sync::watch;
use tonic::Code;
use tracery_proto::v1::{self, breakpoint_spec::Target, tracery_server::Tracery};

use crate::kubernetes::Cluster;
use crate::registry::Registry;
use crate::tracery_api::TraceryApi;
use crate::{Access, ControllerOptions, Defaults, KubernetesApi};

/// (user, verb, namespace) that RBAC allows.
const RULES: &[(&str, &str, &str)] = &[
    // alice: tracery-editor in team-a.
    ("alice", "create", "team-a"),
    ("alice", "delete", "team-a"),
    ("alice", "get", "team-a"),
    ("alice", "list", "team-a"),
    // bob: tracery-debugger in team-a (editor plus eval and freeze).
    ("bob", "create", "team-a"),
    ("bob", "freeze", "team-a"),
    ("bob", "eval", "team-a"),
];

struct Fixture {
    api: TraceryApi,
    registry: Arc<Registry>,
    /// SubjectAccessReview specs the controller sent, in order.
    reviews: Arc<Mutex<Vec<Value>>>,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

async fn fixture() -> Fixture {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let reviews = Arc::new(Mutex::new(Vec::new()));
    let recorded = reviews.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().path().to_owned();
            let body = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let answer = match path.as_str() {
                "/apis/authentication.k8s.io/v1/tokenreviews" => token_review(&body),
                "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
                    recorded.lock().unwrap().push(body["spec"].clone());
                    access_review(&body)
                }
                // The mirror of a breakpoint set by the CLI: created as sent.
                _ => body,
            };
            send.send_response(Response::new(Body::from(
                serde_json::to_vec(&answer).unwrap(),
            )));
        }
    });
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
        access: Access::Kubernetes(client.clone()),
        tls_dir: None,
        otlp_endpoint: None,
    };
    let (stop, stopped) = watch::channel(false);
    let registry = Arc::new(Registry::new(store, opts, stopped));
    let (pods, _) = reflector::store::<Pod>();
    let (services, _) = reflector::store::<Service>();
    registry.set_cluster(Arc::new(Cluster::from_stores(client, pods, services)));
    Fixture {
        api: TraceryApi::new(registry.clone()),
        registry,
        reviews,
        _dir: dir,
        _stop: stop,
    }
}

/// alice-token and bob-token are valid; expired-token is what the API server says of a
/// token past its expiry.
fn token_review(body: &Value) -> Value {
    let status = match body["spec"]["token"].as_str() {
        Some("alice-token") => json!({"authenticated": true,
            "user": {"username": "alice", "uid": "u-alice", "groups": ["team-a-devs", "system:authenticated"]}}),
        Some("bob-token") => json!({"authenticated": true,
            "user": {"username": "bob", "uid": "u-bob", "groups": ["system:authenticated"]}}),
        Some("expired-token") => json!({"authenticated": false,
            "error": "[invalid bearer token, service account token has expired]"}),
        _ => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
           "metadata": {}, "spec": body["spec"], "status": status})
}

fn access_review(body: &Value) -> Value {
    let spec = &body["spec"];
    let attrs = &spec["resourceAttributes"];
    let allowed = attrs["group"] == "tracery.dev"
        && attrs["resource"] == "breakpoints"
        && RULES.iter().any(|(user, verb, ns)| {
            spec["user"] == *user && attrs["verb"] == *verb && attrs["namespace"] == *ns
        });
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "metadata": {}, "spec": spec, "status": {"allowed": allowed}})
}

fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn spec_in(namespace: &str, freeze: bool) -> v1::BreakpointSpec {
    v1::BreakpointSpec {
        target: Some(Target::Selector(v1::LabelSelector {
            match_labels: [("app".to_owned(), "orders".to_owned())].into(),
        })),
        location: "orders.rs:42".into(),
        namespace: namespace.into(),
        freeze,
        ..Default::default()
    }
}

/// (user, verb, namespace) of each review sent, taken out of the record.
fn take_reviews(f: &Fixture) -> Vec<(String, String, String)> {
    std::mem::take(&mut *f.reviews.lock().unwrap())
        .iter()
        .map(|spec| {
            let a = &spec["resourceAttributes"];
            assert_eq!(a["group"], "tracery.dev", "{spec}");
            assert_eq!(a["resource"], "breakpoints", "{spec}");
            (
                spec["user"].as_str().unwrap_or_default().to_owned(),
                a["verb"].as_str().unwrap_or_default().to_owned(),
                a["namespace"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn r(user: &str, verb: &str, ns: &str) -> (String, String, String) {
    (user.into(), verb.into(), ns.into())
}

#[tokio::test]
async fn mock_api_a_user_allowed_in_team_a_sets_there_and_is_refused_in_team_b() {
    let f = fixture().await;
    let set = f
        .api
        .set_breakpoint(with_token("alice-token", spec_in("team-a", false)))
        .await
        .expect("alice may create breakpoints in team-a");
    let id = set.into_inner().breakpoint.unwrap().id;
    // The review carries the user as TokenReview named her, with uid and groups.
    let spec = f.reviews.lock().unwrap()[0].clone();
    assert_eq!(spec["uid"], "u-alice");
    assert_eq!(
        spec["groups"],
        json!(["team-a-devs", "system:authenticated"])
    );
    assert_eq!(take_reviews(&f), [r("alice", "create", "team-a")]);

    let refused = f
        .api
        .set_breakpoint(with_token("alice-token", spec_in("team-b", false)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused
            .message()
            .contains("alice may not create breakpoints.tracery.dev in namespace team-b")
            && refused.message().contains("tracery-editor"),
        "{}",
        refused.message()
    );
    assert_eq!(take_reviews(&f), [r("alice", "create", "team-b")]);

    // Delete is checked in the breakpoint's own namespace.
    f.api
        .delete_breakpoint(with_token(
            "alice-token",
            v1::DeleteBreakpointRequest { id },
        ))
        .await
        .expect("alice may delete in team-a");
    assert_eq!(take_reviews(&f), [r("alice", "delete", "team-a")]);
    // Only what passed reached the store: one breakpoint, now deleted.
    assert_eq!(
        f.registry.store.list_breakpoints(true).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn mock_api_freeze_and_eval_need_their_own_verbs() {
    let f = fixture().await;
    let refused = f
        .api
        .set_breakpoint(with_token("alice-token", spec_in("team-a", true)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("may not freeze"),
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains("tracery-debugger"),
        "{}",
        refused.message()
    );
    assert_eq!(
        take_reviews(&f),
        [
            r("alice", "create", "team-a"),
            r("alice", "freeze", "team-a")
        ]
    );
    f.api
        .set_breakpoint(with_token("bob-token", spec_in("team-a", true)))
        .await
        .expect("bob has freeze in team-a");
    assert_eq!(
        take_reviews(&f),
        [r("bob", "create", "team-a"), r("bob", "freeze", "team-a")]
    );

    // A trace no breakpoint of any namespace captured: checked cluster-wide.
    let eval = v1::EvalTraceRequest {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        expr: "order.card".into(),
    };
    let refused = f
        .api
        .eval_trace(with_token("alice-token", eval.clone()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("may not eval"),
        "{}",
        refused.message()
    );
    assert_eq!(take_reviews(&f), [r("alice", "eval", "")]);
    let resume = v1::ResumeTraceRequest {
        trace_id: eval.trace_id.clone(),
    };
    let refused = f
        .api
        .resume_trace(with_token("alice-token", resume))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(take_reviews(&f), [r("alice", "freeze", "")]);

    // Every call above is in the audit log, refusals included.
    let log = f.registry.store.list_audit(None, 100).await.unwrap();
    let seen: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e.who.as_str(), e.action.as_str(), e.namespace.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("alice", "freeze", "team-a"),
            ("bob", "freeze", "team-a"),
            ("alice", "eval", ""),
            ("alice", "resume", ""),
        ]
    );
    assert!(
        log[0]
            .result
            .starts_with("PermissionDenied: alice may not freeze"),
        "{}",
        log[0].result
    );
    assert_eq!(log[1].result, "ok");
}

#[tokio::test]
async fn mock_api_an_expired_or_missing_token_is_refused_with_what_to_do() {
    let f = fixture().await;
    let expired = f
        .api
        .list_breakpoints(with_token("expired-token", v1::ListBreakpointsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated);
    assert!(
        expired.message().contains("token has expired")
            && expired.message().contains("kubectl create token"),
        "{}",
        expired.message()
    );
    let none = f
        .api
        .set_breakpoint(tonic::Request::new(spec_in("team-a", false)))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    assert!(
        none.message().contains("TRACERY_TOKEN"),
        "{}",
        none.message()
    );
    // No authorization was asked for a caller nobody vouched for.
    assert!(take_reviews(&f).is_empty());
    let log = f.registry.store.list_audit(None, 100).await.unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        (log[0].who.as_str(), log[0].action.as_str()),
        ("unauthenticated", "set")
    );
}
