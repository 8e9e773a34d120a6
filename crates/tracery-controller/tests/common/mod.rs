//! Shared harness: a real controller on 127.0.0.1:0 and a test agent speaking AgentLink.
// Not `expect`: the test files that use every helper would leave it unfulfilled.
#![allow(dead_code, reason = "each test file uses a subset")]

pub use std::net::SocketAddr;
pub use std::path::Path;
pub use std::time::{Duration, SystemTime};

pub use sqlx::Connection;
pub use tokio::net::TcpListener;
pub use tokio::sync::{mpsc, oneshot};
pub use tokio::task::JoinHandle;
pub use tokio_stream::wrappers::ReceiverStream;
pub use tonic::transport::Channel;
pub use tonic::{Code, Streaming};
pub use tracery_controller::{serve, ControllerError, ControllerOptions, Defaults};
pub use tracery_proto::v1::{
    self, agent_link_client::AgentLinkClient, agent_message::Message as Up,
    breakpoint_spec::Target, controller_message::Message as Down, tracery_client::TraceryClient,
};

pub const WAIT: Duration = Duration::from_secs(10);
pub const DEFAULT_PG_URL: &str = "postgres://root@localhost/tracery_test?host=/var/run/postgresql";

/// A controller serving on a loopback port.
pub struct Controller {
    pub addr: SocketAddr,
    pub stop: oneshot::Sender<()>,
    pub task: JoinHandle<Result<(), ControllerError>>,
}

impl Controller {
    pub async fn start(store_url: &str) -> Controller {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let opts = ControllerOptions {
            local_agent: None,
            store_url: store_url.to_owned(),
            services: vec!["orders".into(), "payments".into()],
            defaults: Defaults::default(),
            databases: Vec::new(),
            capture_limits: Default::default(),
            kubernetes: None,
            access: tracery_controller::Access::Open,
            tls_dir: None,
            otlp_endpoint: None,
        };
        let task = tokio::spawn(serve(listener, opts, async {
            stopped.await.ok();
        }));
        Controller { addr, stop, task }
    }

    pub async fn client(&self) -> TraceryClient<Channel> {
        TraceryClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub async fn agent(&self, agent_id: &str) -> Agent {
        Agent::connect(self.addr, agent_id).await
    }

    /// An agent on its own node.
    pub async fn agent_on(&self, agent_id: &str, node: &str) -> Agent {
        Agent::connect_on(self.addr, agent_id, node).await
    }

    /// Stops the server and waits until it returned.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the controller did not stop")
            .unwrap()
            .unwrap();
    }
}

/// A test-side agent: a real `AgentLink` peer.
pub struct Agent {
    pub up: mpsc::Sender<v1::AgentMessage>,
    pub down: Streaming<v1::ControllerMessage>,
}

impl Agent {
    pub async fn connect(addr: SocketAddr, agent_id: &str) -> Agent {
        Agent::connect_on(addr, agent_id, "node-1").await
    }

    pub async fn connect_on(addr: SocketAddr, agent_id: &str, node: &str) -> Agent {
        let mut client = AgentLinkClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (up, rx) = mpsc::channel(16);
        up.send(message(Up::Hello(v1::Hello {
            agent_id: agent_id.into(),
            node: node.into(),
            version: "0.1.0".into(),
            kernel_release: "6.1.0".into(),
            kernel_features: vec!["ringbuf".into()],
            kubernetes_node: String::new(),
        })))
        .await
        .unwrap();
        let down = client
            .session(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Agent { up, down }
    }

    pub async fn send(&self, m: Up) {
        self.up.send(message(m)).await.unwrap();
    }

    /// The next message from the controller.
    pub async fn next(&mut self) -> Down {
        tokio::time::timeout(WAIT, self.down.message())
            .await
            .expect("no message from the controller")
            .unwrap()
            .expect("the controller ended the session")
            .message
            .unwrap()
    }

    /// Waits for `Arm` of `id`, skipping other messages.
    pub async fn expect_arm(&mut self, id: u64) -> v1::Breakpoint {
        loop {
            if let Down::Arm(arm) = self.next().await {
                let bp = arm.breakpoint.unwrap();
                if bp.id == id {
                    return bp;
                }
            }
        }
    }

    /// The next message `pick` accepts, skipping others (arms, holds).
    pub async fn next_matching<T>(&mut self, pick: impl Fn(Down) -> Option<T>) -> T {
        loop {
            if let Some(t) = pick(self.next().await) {
                return t;
            }
        }
    }

    /// Fails if a message `unwanted` matches arrives within `quiet`; others are skipped.
    pub async fn assert_none_within(&mut self, quiet: Duration, unwanted: impl Fn(&Down) -> bool) {
        let until = tokio::time::Instant::now() + quiet;
        while let Ok(m) = tokio::time::timeout_at(until, self.down.message()).await {
            let m = m.unwrap().expect("the controller ended the session");
            let m = m.message.unwrap();
            assert!(
                !unwanted(&m),
                "unexpected message from the controller: {m:?}"
            );
        }
    }

    pub async fn expect_disarm(&mut self, id: u64) {
        loop {
            if let Down::Disarm(d) = self.next().await {
                if d.breakpoint_id == id {
                    return;
                }
            }
        }
    }
}

pub fn message(m: Up) -> v1::AgentMessage {
    v1::AgentMessage { message: Some(m) }
}

pub fn spec_at(location: &str) -> v1::BreakpointSpec {
    v1::BreakpointSpec {
        target: Some(Target::Service("orders".into())),
        location: location.into(),
        ..Default::default()
    }
}

/// A hit with values of every awkward kind, so "exactly" means something.
pub fn snapshot(breakpoint_id: u64, qty: i64) -> v1::Snapshot {
    use v1::value::Kind;
    let value = |kind| Some(v1::Value { kind: Some(kind) });
    v1::Snapshot {
        id: 0,
        breakpoint_id,
        pid: 4242,
        tid: 4243,
        time: Some(
            (SystemTime::UNIX_EPOCH + Duration::from_nanos(1_763_000_000_123_456_789)).into(),
        ),
        location: Some(v1::Location {
            function: "orders::process_order".into(),
            file: "/src/orders.rs".into(),
            line: 39,
            address: 0x55_0000_1234,
        }),
        variables: vec![
            v1::Variable {
                name: "qty".into(),
                kind: v1::VarKind::Arg.into(),
                type_name: "i64".into(),
                value: value(Kind::Int(qty)),
                frame: None,
            },
            v1::Variable {
                name: "ratio".into(),
                kind: v1::VarKind::Local.into(),
                type_name: "f64".into(),
                value: value(Kind::Float(f64::INFINITY)),
                frame: Some("orders::inlined".into()),
            },
            v1::Variable {
                name: "big".into(),
                kind: v1::VarKind::Local.into(),
                type_name: "u128".into(),
                value: value(Kind::Uint128(
                    "340282366920938463463374607431768211455".into(),
                )),
                frame: None,
            },
            v1::Variable {
                name: "status".into(),
                kind: v1::VarKind::Local.into(),
                type_name: "&str".into(),
                value: value(Kind::Str(v1::value::Str {
                    text: "pend\u{0}ing ✓".into(),
                    truncated: true,
                })),
                frame: None,
            },
        ],
        stack: vec![v1::StackFrame {
            function: "orders::process_order".into(),
            file: Some("/src/orders.rs".into()),
            line: Some(39),
            address: 0x55_0000_1234,
            inlined: false,
        }],
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        span_id: Some("00f067aa0ba902b7".into()),
        language: v1::Language::Rust.into(),
        databases: Vec::new(),
        pod: None,
    }
}

pub fn hit(snapshot: v1::Snapshot, sequence: u64) -> Up {
    Up::Hit(v1::Hit {
        snapshot: Some(snapshot),
        sequence,
    })
}

/// An agent's answer to an arm of breakpoint `id`: armed in one process, with one probe.
pub fn armed_in_one_process(id: u64) -> Up {
    Up::ArmResult(v1::ArmResult {
        breakpoint_id: id,
        pid: 4242,
        result: Some(v1::arm_result::Result::Probes(1)),
    })
}

pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("store.db").display())
}

pub async fn watch(
    client: &mut TraceryClient<Channel>,
    breakpoint: Option<u64>,
) -> Streaming<v1::Snapshot> {
    client
        .watch_snapshots(v1::WatchSnapshotsRequest {
            filter: Some(v1::SnapshotFilter {
                breakpoint_id: breakpoint,
            }),
        })
        .await
        .unwrap()
        .into_inner()
}

pub async fn next_snapshot(stream: &mut Streaming<v1::Snapshot>) -> v1::Snapshot {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("no snapshot arrived")
        .unwrap()
        .expect("the watch ended")
}

pub async fn list_snapshots(
    client: &mut TraceryClient<Channel>,
    breakpoint: u64,
) -> Vec<v1::Snapshot> {
    client
        .list_snapshots(v1::ListSnapshotsRequest {
            filter: Some(v1::SnapshotFilter {
                breakpoint_id: Some(breakpoint),
            }),
            limit: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .snapshots
}

pub async fn list_breakpoints(client: &mut TraceryClient<Channel>) -> Vec<v1::Breakpoint> {
    client
        .list_breakpoints(v1::ListBreakpointsRequest {})
        .await
        .unwrap()
        .into_inner()
        .breakpoints
}

/// Polls `Status` until `done` holds for it.
pub async fn status_until(
    client: &mut TraceryClient<Channel>,
    done: impl Fn(&v1::StatusResponse) -> bool,
) -> v1::StatusResponse {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = client
            .status(v1::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if done(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never got there: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets a breakpoint, sends one hit for it and reads it back: (breakpoint, stored).
pub async fn hit_round_trip(controller: &Controller) -> (v1::Breakpoint, v1::Snapshot) {
    let mut client = controller.client().await;
    let bp = client
        .set_breakpoint(spec_at("orders.rs:39"))
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap();
    let mut watch_all = watch(&mut client, None).await;
    let mut watch_other = watch(&mut client, Some(bp.id + 1000)).await;
    let agent = controller.agent("node-1").await;

    let first = snapshot(bp.id, 12);
    agent.send(hit(first.clone(), 1)).await;
    agent.send(hit(first.clone(), 1)).await; // resent after a reconnect
    agent.send(hit(snapshot(bp.id, 13), 2)).await;

    let got1 = next_snapshot(&mut watch_all).await;
    let got2 = next_snapshot(&mut watch_all).await;
    assert_eq!(
        got1,
        v1::Snapshot {
            id: got1.id,
            ..first.clone()
        }
    );
    assert!(got1.id > 0 && got2.id > got1.id);
    assert_eq!(
        got2.variables[0].value,
        snapshot(bp.id, 13).variables[0].value
    );

    let stored = list_snapshots(&mut client, bp.id).await;
    assert_eq!(
        stored,
        vec![got1.clone(), got2.clone()],
        "the resent hit was stored twice"
    );

    let fetched = client
        .get_snapshot(v1::GetSnapshotRequest { id: got1.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        fetched,
        v1::Snapshot {
            id: got1.id,
            ..first
        }
    );

    let err = client
        .get_snapshot(v1::GetSnapshotRequest { id: got2.id + 100 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // The filtered watch saw none of it.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watch_other.message())
            .await
            .is_err(),
        "a watch for another breakpoint received a snapshot"
    );
    let listed = list_breakpoints(&mut client).await;
    assert_eq!(listed.iter().find(|b| b.id == bp.id).unwrap().hits, 2);
    (bp, fetched)
}
