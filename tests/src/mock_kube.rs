//! A stand-in for the Kubernetes API server in cluster-mode tests, because none can run on
//! this machine. It answers a real `kube::Client` over tower-test's mock transport, as
//! kube-rs documents for testing:
//! - lists return the objects it holds (namespace and `labelSelector` filters applied);
//! - watches stay open until an object of their kind changes, then deliver that event and
//!   end, and kube's watcher opens the next one, as after a server-side timeout;
//! - creates and patches are recorded for assertions. Creates are stored; patches are
//!   answered with the stored object unchanged.
//!
//! Everything else a test runs (controller, agents, processes, eBPF) is real.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use tower_test::mock::{self, SendResponse};

/// One request the mock answered, for assertions.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

/// The mock API server: its objects, its open watches and what it was asked.
#[derive(Clone, Default)]
pub struct MockApi {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// By (resource plural, namespace, name).
    objects: BTreeMap<(String, String, String), Value>,
    watches: Vec<(String, Option<String>, SendResponse<Response<Body>>)>,
    recorded: Vec<Recorded>,
    version: u64,
}

impl MockApi {
    /// A client of a new mock holding `objects` (pods, Services, Breakpoints as JSON).
    pub fn start(objects: &[Value]) -> (kube::Client, MockApi) {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let api = MockApi::default();
        for o in objects {
            api.apply(o.clone());
        }
        let server = api.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the mock API");
            rt.block_on(async move {
                while let Some((request, send)) = handle.next_request().await {
                    server.answer(request, send).await;
                }
            });
        });
        (kube::Client::new(service, "default"), api)
    }

    /// Adds or replaces an object, and tells open watches of its kind.
    pub fn apply(&self, mut object: Value) {
        let mut s = self.state.lock().unwrap();
        s.version += 1;
        object["metadata"]["resourceVersion"] = json!(s.version.to_string());
        let key = key_of(&object);
        let event = if s.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        s.objects.insert(key.clone(), object.clone());
        let (resource, namespace, _) = key;
        let watches = std::mem::take(&mut s.watches);
        for (r, ns, send) in watches {
            if r == resource && ns.as_ref().is_none_or(|ns| *ns == namespace) {
                let line = json!({"type": event, "object": object}).to_string() + "\n";
                send.send_response(ok(line.into_bytes()));
            } else {
                s.watches.push((r, ns, send));
            }
        }
    }

    /// Requests answered so far, oldest first.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().recorded.clone()
    }

    async fn answer(&self, request: Request<Body>, send: SendResponse<Response<Body>>) {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let target = parse_path(&path);
        let mut s = self.state.lock().unwrap();
        s.recorded.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
        });
        let Some((resource, namespace, name)) = target else {
            send.send_response(status(404, &format!("no such path {path}")));
            return;
        };
        let watch = query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1");
        match (method, name) {
            (Method::GET, None) if watch => s.watches.push((resource, namespace, send)),
            (Method::GET, None) => {
                let selector = query_param(&query, "labelSelector");
                let items: Vec<Value> = s
                    .objects
                    .iter()
                    .filter(|((r, ns, _), _)| {
                        *r == resource && namespace.as_ref().is_none_or(|n| n == ns)
                    })
                    .map(|(_, o)| o.clone())
                    .filter(|o| selector.as_deref().is_none_or(|sel| has_labels(o, sel)))
                    .collect();
                let list = json!({
                    "apiVersion": "v1", "kind": "List",
                    "metadata": {"resourceVersion": s.version.to_string()},
                    "items": items,
                });
                send.send_response(ok(list.to_string().into_bytes()));
            }
            (Method::GET | Method::PATCH, Some(name)) => {
                let ns = namespace.unwrap_or_default();
                match s.objects.get(&(resource, ns, name.clone())) {
                    Some(o) => send.send_response(ok(o.to_string().into_bytes())),
                    None => send.send_response(status(404, &format!("{name} not found"))),
                }
            }
            (Method::POST, None) => {
                drop(s);
                let mut object = body;
                object["metadata"]["namespace"] = json!(namespace.unwrap_or_default());
                object["metadata"]["uid"] = json!(format!("mock-{}", self.recorded().len()));
                self.apply(object.clone());
                send.send_response(ok(object.to_string().into_bytes()));
            }
            (Method::DELETE, Some(name)) => {
                let ns = namespace.unwrap_or_default();
                let gone = s.objects.remove(&(resource, ns, name.clone()));
                match gone {
                    Some(o) => send.send_response(ok(o.to_string().into_bytes())),
                    None => send.send_response(status(404, &format!("{name} not found"))),
                }
            }
            (m, _) => send.send_response(status(405, &format!("{m} is not mocked"))),
        }
    }
}

/// (resource plural, namespace, name) of a stored object.
fn key_of(object: &Value) -> (String, String, String) {
    let kind = object["kind"].as_str().unwrap_or_default();
    let plural = match kind {
        "Pod" => "pods".to_owned(),
        "Service" => "services".to_owned(),
        other => format!("{}s", other.to_lowercase()),
    };
    let meta = &object["metadata"];
    (
        plural,
        meta["namespace"].as_str().unwrap_or("default").to_owned(),
        meta["name"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `/api/v1/namespaces/NS/pods/NAME`, `/apis/G/V/pods` → (resource, namespace, name).
fn parse_path(path: &str) -> Option<(String, Option<String>, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match parts.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    match rest {
        [resource] => Some(((*resource).to_owned(), namespace, None)),
        [resource, name] | [resource, name, "status"] => {
            Some(((*resource).to_owned(), namespace, Some((*name).to_owned())))
        }
        _ => None,
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == name).then(|| v.replace("%3D", "=").replace("%2C", ","))
    })
}

/// True when `object` carries every `k=v` of `selector`.
fn has_labels(object: &Value, selector: &str) -> bool {
    selector.split(',').all(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn ok(body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(200)
        .body(Body::from(body))
        .expect("a plain response")
}

fn status(code: u16, message: &str) -> Response<Body> {
    let body = json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": message, "code": code,
    });
    Response::builder()
        .status(code)
        .body(Body::from(body.to_string().into_bytes()))
        .expect("a plain response")
}
