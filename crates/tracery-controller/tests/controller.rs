//! The controller over real gRPC: a tonic server on a loopback port with a real store, the
//! CLI side through the generated `Tracery` client, and agents as real `AgentLink` peers
//! speaking the protocol through the generated client.
//!
//! PostgreSQL tests read `TRACERY_TEST_PG_URL` (default: role `root` over the unix socket,
//! database `tracery_test`), work in a schema of their own, and fail, never skip, when
//! PostgreSQL is not there.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use sqlx::Connection;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Streaming};
use tracery_controller::{serve, ControllerError, ControllerOptions, Defaults};
use tracery_proto::v1::{
    self, agent_link_client::AgentLinkClient, agent_message::Message as Up,
    breakpoint_spec::Target, controller_message::Message as Down, tracery_client::TraceryClient,
};

const WAIT: Duration = Duration::from_secs(10);
const DEFAULT_PG_URL: &str = "postgres://root@localhost/tracery_test?host=/var/run/postgresql";

/// A controller serving on a loopback port.
struct Controller {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ControllerError>>,
}

impl Controller {
    async fn start(store_url: &str) -> Controller {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let opts = ControllerOptions {
            store_url: store_url.to_owned(),
            services: vec!["orders".into(), "payments".into()],
            defaults: Defaults::default(),
        };
        let task = tokio::spawn(serve(listener, opts, async {
            stopped.await.ok();
        }));
        Controller { addr, stop, task }
    }

    async fn client(&self) -> TraceryClient<Channel> {
        TraceryClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    async fn agent(&self, agent_id: &str) -> Agent {
        Agent::connect(self.addr, agent_id).await
    }

    /// Stops the server and waits until it returned.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the controller did not stop")
            .unwrap()
            .unwrap();
    }
}

/// A test-side agent: a real `AgentLink` peer.
struct Agent {
    up: mpsc::Sender<v1::AgentMessage>,
    down: Streaming<v1::ControllerMessage>,
}

impl Agent {
    async fn connect(addr: SocketAddr, agent_id: &str) -> Agent {
        let mut client = AgentLinkClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (up, rx) = mpsc::channel(16);
        up.send(message(Up::Hello(v1::Hello {
            agent_id: agent_id.into(),
            node: "node-1".into(),
            version: "0.1.0".into(),
            kernel_release: "6.1.0".into(),
            kernel_features: vec!["ringbuf".into()],
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

    async fn send(&self, m: Up) {
        self.up.send(message(m)).await.unwrap();
    }

    /// The next message from the controller.
    async fn next(&mut self) -> Down {
        tokio::time::timeout(WAIT, self.down.message())
            .await
            .expect("no message from the controller")
            .unwrap()
            .expect("the controller ended the session")
            .message
            .unwrap()
    }

    /// Waits for `Arm` of `id`, skipping other messages.
    async fn expect_arm(&mut self, id: u64) -> v1::Breakpoint {
        loop {
            if let Down::Arm(arm) = self.next().await {
                let bp = arm.breakpoint.unwrap();
                if bp.id == id {
                    return bp;
                }
            }
        }
    }

    async fn expect_disarm(&mut self, id: u64) {
        loop {
            if let Down::Disarm(d) = self.next().await {
                if d.breakpoint_id == id {
                    return;
                }
            }
        }
    }
}

fn message(m: Up) -> v1::AgentMessage {
    v1::AgentMessage { message: Some(m) }
}

fn spec_at(location: &str) -> v1::BreakpointSpec {
    v1::BreakpointSpec {
        target: Some(Target::Service("orders".into())),
        location: location.into(),
        ..Default::default()
    }
}

/// A hit with values of every awkward kind, so "exactly" means something.
fn snapshot(breakpoint_id: u64, qty: i64) -> v1::Snapshot {
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
    }
}

fn hit(snapshot: v1::Snapshot, sequence: u64) -> Up {
    Up::Hit(v1::Hit {
        snapshot: Some(snapshot),
        sequence,
    })
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("store.db").display())
}

async fn watch(
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

async fn next_snapshot(stream: &mut Streaming<v1::Snapshot>) -> v1::Snapshot {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("no snapshot arrived")
        .unwrap()
        .expect("the watch ended")
}

async fn list_snapshots(client: &mut TraceryClient<Channel>, breakpoint: u64) -> Vec<v1::Snapshot> {
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

async fn list_breakpoints(client: &mut TraceryClient<Channel>) -> Vec<v1::Breakpoint> {
    client
        .list_breakpoints(v1::ListBreakpointsRequest {})
        .await
        .unwrap()
        .into_inner()
        .breakpoints
}

/// Polls `Status` until `done` holds for it.
async fn status_until(
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

#[tokio::test]
async fn set_list_delete_fill_the_safe_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;

    let before = SystemTime::now();
    let bp = client
        .set_breakpoint(spec_at("orders.rs:42"))
        .await
        .unwrap()
        .into_inner();
    assert!(bp.id > 0);
    let spec = bp.spec.clone().unwrap();
    assert_eq!(spec.hit_limit, Some(100));
    assert_eq!(spec.expire_seconds, Some(3600));
    assert_eq!(spec.rate_per_second, Some(10));
    assert_eq!(spec.target, Some(Target::Service("orders".into())));
    let expires = SystemTime::try_from(bp.expires.unwrap()).unwrap();
    let from_now = expires.duration_since(before).unwrap();
    assert!(
        from_now >= Duration::from_secs(3599) && from_now <= Duration::from_secs(3601),
        "{from_now:?}"
    );

    let mut own = spec_at("orders.rs:50");
    own.hit_limit = Some(5);
    own.when = Some("qty > 10".into());
    let bp2 = client.set_breakpoint(own).await.unwrap().into_inner();
    assert_eq!(bp2.spec.as_ref().unwrap().hit_limit, Some(5));
    assert_eq!(bp2.spec.as_ref().unwrap().when.as_deref(), Some("qty > 10"));

    assert_eq!(
        list_breakpoints(&mut client).await,
        vec![bp.clone(), bp2.clone()]
    );

    client
        .delete_breakpoint(v1::DeleteBreakpointRequest { id: bp.id })
        .await
        .unwrap();
    assert_eq!(list_breakpoints(&mut client).await, vec![bp2]);
    let err = client
        .delete_breakpoint(v1::DeleteBreakpointRequest { id: bp.id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains(&format!("no breakpoint {}", bp.id)),
        "{}",
        err.message()
    );
    controller.stop().await;
}

#[tokio::test]
async fn bad_specs_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;

    let mut unknown = spec_at("x.rs:1");
    unknown.target = Some(Target::Service("inventory".into()));
    let err = client.set_breakpoint(unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "unknown service \"inventory\"; known services: orders, payments (define them in tracery.toml)"
    );

    let mut empty_when = spec_at("x.rs:1");
    empty_when.when = Some(String::new());
    let err = client.set_breakpoint(empty_when).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("--when is empty"),
        "{}",
        err.message()
    );

    let err = client.set_breakpoint(spec_at("  ")).await.unwrap_err();
    assert!(err.message().contains("pass --at"), "{}", err.message());

    assert!(list_breakpoints(&mut client).await.is_empty());
    controller.stop().await;
}

#[tokio::test]
async fn an_agent_must_say_hello_first() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = AgentLinkClient::connect(format!("http://{}", controller.addr))
        .await
        .unwrap();
    let (up, rx) = mpsc::channel(1);
    up.send(message(Up::Drops(v1::Drops {
        breakpoint_id: 1,
        count: 1,
    })))
    .await
    .unwrap();
    let err = client.session(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("must be Hello"), "{}", err.message());
    controller.stop().await;
}

#[tokio::test]
async fn arming_follows_set_delete_and_late_agents() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let bp = client
        .set_breakpoint(spec_at("orders.rs:42"))
        .await
        .unwrap()
        .into_inner();

    // Connecting after the breakpoint was set: Arm with the defaults filled in.
    let mut agent = controller.agent("node-1").await;
    let armed = agent.expect_arm(bp.id).await;
    assert_eq!(armed.spec, bp.spec);

    // Set while connected: Arm at once (no answer from the agent: pending, still set).
    let bp2 = client
        .set_breakpoint(spec_at("orders.rs:43"))
        .await
        .unwrap()
        .into_inner();
    agent.expect_arm(bp2.id).await;

    client
        .delete_breakpoint(v1::DeleteBreakpointRequest { id: bp.id })
        .await
        .unwrap();
    agent.expect_disarm(bp.id).await;
    controller.stop().await;
}

#[tokio::test]
async fn a_location_no_agent_can_arm_is_an_error_the_user_sees() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let mut agent = controller.agent("node-1").await;

    let set = tokio::spawn({
        let mut client = client.clone();
        async move { client.set_breakpoint(spec_at("orders.c:31")).await }
    });
    let Down::Arm(arm) = agent.next().await else {
        panic!("expected Arm")
    };
    let id = arm.breakpoint.unwrap().id;
    agent
        .send(Up::ArmResult(v1::ArmResult {
            breakpoint_id: id,
            pid: 4242,
            result: Some(v1::arm_result::Result::Error(
                "no code at orders.c:31; nearest lines with code: 29, 33".into(),
            )),
        }))
        .await;
    let err = set.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("no code at orders.c:31; nearest lines with code: 29, 33"),
        "{}",
        err.message()
    );
    agent.expect_disarm(id).await;
    assert!(list_breakpoints(&mut client).await.is_empty());

    // One process that armed is enough.
    let set = tokio::spawn({
        let mut client = client.clone();
        async move { client.set_breakpoint(spec_at("orders.c:29")).await }
    });
    let id = loop {
        if let Down::Arm(arm) = agent.next().await {
            break arm.breakpoint.unwrap().id;
        }
    };
    agent
        .send(Up::ArmResult(v1::ArmResult {
            breakpoint_id: id,
            pid: 4242,
            result: Some(v1::arm_result::Result::Probes(1)),
        }))
        .await;
    assert_eq!(set.await.unwrap().unwrap().into_inner().id, id);
    controller.stop().await;
}

#[tokio::test]
async fn a_hit_is_stored_once_returned_exactly_and_watched() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    hit_round_trip(&controller).await;
    controller.stop().await;
}

/// Sets a breakpoint, sends one hit twice and another once; checks store, get and watch.
/// Returns the breakpoint and the first snapshot as stored.
async fn hit_round_trip(controller: &Controller) -> (v1::Breakpoint, v1::Snapshot) {
    let mut client = controller.client().await;
    let bp = client
        .set_breakpoint(spec_at("orders.rs:39"))
        .await
        .unwrap()
        .into_inner();
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

#[tokio::test]
async fn snapshots_page_by_token() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let bp = client
        .set_breakpoint(spec_at("orders.rs:39"))
        .await
        .unwrap()
        .into_inner();
    let mut watching = watch(&mut client, Some(bp.id)).await;
    let agent = controller.agent("node-1").await;
    for seq in 1..=5 {
        agent.send(hit(snapshot(bp.id, seq as i64), seq)).await;
    }
    for _ in 0..5 {
        next_snapshot(&mut watching).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_snapshots(v1::ListSnapshotsRequest {
                filter: None,
                limit: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.snapshots.len() <= 2);
        seen.extend(page.snapshots.iter().map(|s| s.variables[0].value.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<_> = (1..=5)
        .map(|q| snapshot(bp.id, q).variables[0].value.clone())
        .collect();
    assert_eq!(seen, expected);
    controller.stop().await;
}

#[tokio::test]
async fn drops_and_health_appear_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let bp = client
        .set_breakpoint(spec_at("orders.rs:39"))
        .await
        .unwrap()
        .into_inner();
    let agent = controller.agent("node-1").await;
    // Running totals: 3, then 5 (and 5 resent) make 5, not 13.
    for count in [3, 5, 5] {
        agent
            .send(Up::Drops(v1::Drops {
                breakpoint_id: bp.id,
                count,
            }))
            .await;
    }
    let health = v1::Health {
        processes: vec![v1::ProcessProbes {
            pid: 4242,
            exe: "/usr/bin/orders".into(),
            breakpoint_ids: vec![bp.id],
            probes: 1,
        }],
        cpu_percent: 0.5,
        rss_bytes: 12 << 20,
        probe_overhead_percent: 0.1,
    };
    agent.send(Up::Health(health.clone())).await;
    agent.send(hit(snapshot(bp.id, 1), 1)).await;

    let status = status_until(&mut client, |s| {
        s.agents.first().is_some_and(|a| a.health.is_some())
            && s.breakpoints.first().is_some_and(|b| b.hits == 1)
    })
    .await;
    assert_eq!(
        status.breakpoints,
        vec![v1::BreakpointStatus {
            breakpoint_id: bp.id,
            hits: 1,
            drops: 5,
            problems: vec![],
        }]
    );
    let a = &status.agents[0];
    assert_eq!(a.hello.as_ref().unwrap().agent_id, "node-1");
    assert!(a.connected);
    assert_eq!(a.health.as_ref(), Some(&health));
    assert_eq!(list_breakpoints(&mut client).await[0].drops, 5);

    drop(agent);
    status_until(&mut client, |s| {
        s.agents.first().is_some_and(|a| !a.connected)
    })
    .await;
    controller.stop().await;
}

#[tokio::test]
async fn an_expired_breakpoint_is_disarmed_and_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let mut agent = controller.agent("node-1").await;
    let mut short = spec_at("orders.rs:39");
    short.expire_seconds = Some(1);
    let bp = client.set_breakpoint(short).await.unwrap().into_inner();
    agent.expect_arm(bp.id).await;
    agent.expect_disarm(bp.id).await;
    assert!(list_breakpoints(&mut client).await.is_empty());
    // And a late agent is not armed with it.
    let mut late = controller.agent("node-2").await;
    let keeper = client
        .set_breakpoint(spec_at("orders.rs:40"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.expect_arm(keeper.id).await.id, keeper.id);
    controller.stop().await;
}

#[tokio::test]
async fn breakpoints_and_snapshots_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    restart_persists(&url).await;
}

/// Stores a breakpoint and hits, restarts the controller on the same store, and checks
/// that everything is still there and a reconnecting agent is armed again.
async fn restart_persists(url: &str) {
    let controller = Controller::start(url).await;
    let (bp, stored) = hit_round_trip(&controller).await;
    let mut agent = controller.agent("node-1").await;
    agent.expect_arm(bp.id).await;
    controller.stop().await;

    let controller = Controller::start(url).await;
    let mut client = controller.client().await;
    let listed = list_breakpoints(&mut client).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, bp.id);
    assert_eq!(listed[0].spec, bp.spec);
    assert_eq!(listed[0].hits, 2);
    let fetched = client
        .get_snapshot(v1::GetSnapshotRequest { id: stored.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, stored);
    let mut agent = controller.agent("node-1").await;
    agent.expect_arm(bp.id).await;
    controller.stop().await;
}

#[tokio::test]
async fn postgres_store_persists_across_a_restart() {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::env::var("TRACERY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!(
        "controller_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach PostgreSQL at {base}: {e}\n\
             run the tests with `cargo xtask test`, which starts PostgreSQL and creates the \
             test database, or point TRACERY_TEST_PG_URL at one"
            )
        });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("cannot create the test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    restart_persists(&format!("{base}{sep}options[search_path]={schema}")).await;
    // A failed test leaves the schema for inspection.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_told_how_many_it_missed() {
    const HITS: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let bp = client
        .set_breakpoint(spec_at("orders.rs:39"))
        .await
        .unwrap()
        .into_inner();
    // Opened and then not read while the hits arrive.
    let mut slow = watch(&mut client, Some(bp.id)).await;
    let agent = controller.agent("node-1").await;
    // Large hits fill the gRPC flow-control window quickly, so the backlog overflows.
    let mut big = snapshot(bp.id, 0);
    big.variables.push(v1::Variable {
        name: "payload".into(),
        kind: v1::VarKind::Local.into(),
        type_name: "char[4096]".into(),
        value: Some(v1::Value {
            kind: Some(v1::value::Kind::Str(v1::value::Str {
                text: "x".repeat(4096),
                truncated: false,
            })),
        }),
        frame: None,
    });
    for seq in 1..=HITS {
        agent.send(hit(big.clone(), seq)).await;
    }
    status_until(&mut client, |s| {
        s.breakpoints.first().is_some_and(|b| b.hits == HITS)
    })
    .await;

    let mut received = 0u64;
    let err = loop {
        match tokio::time::timeout(WAIT, slow.message())
            .await
            .expect("the watch stalled")
        {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the watch ended silently after {received} of {HITS} snapshots"),
            Err(status) => break status,
        }
    };
    assert!(received < HITS);
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("missed"), "{}", err.message());
    assert!(err.message().contains("snapshot list"), "{}", err.message());
    controller.stop().await;
}
