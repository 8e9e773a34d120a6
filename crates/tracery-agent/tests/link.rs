//! The agent link against the real controller, served in-process as standalone mode does
//! (root: loads eBPF), with the real C fixture as the target.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tracery_agent::{link, LinkOptions, Services};
use tracery_controller::{ControllerError, ControllerOptions, Defaults};
use tracery_proto::v1::{
    self, breakpoint_spec::Target, tracery_client::TraceryClient, SnapshotFilter,
};
use tracery_tests::FixtureProcess;

/// A controller serving `store` on `addr` until the sender is used or dropped.
struct Controller {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ControllerError>>,
}

impl Controller {
    async fn start(addr: SocketAddr, store: &Path) -> (Self, SocketAddr) {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tracery_controller::serve(
            listener,
            ControllerOptions {
                local_agent: None,
                store_url: format!("sqlite://{}", store.display()),
                services: vec![],
                defaults: Defaults::default(),
                databases: Vec::new(),
                capture_limits: Default::default(),
                kubernetes: None,
                access: tracery_controller::Access::Open,
                tls_dir: None,
                otlp_endpoint: None,
            },
            async move {
                let _ = stopped.await;
            },
        ));
        (Self { stop, task }, addr)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the controller stops within 10 s")
            .unwrap()
            .unwrap();
    }
}

fn start_agent(addr: SocketAddr, data_dir: &Path) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let opts = LinkOptions {
        controller: format!("http://{addr}"),
        services: Services::default(),
        data_dir: data_dir.to_path_buf(),
        kubernetes_node: None,
    };
    let task = tokio::spawn(async move {
        link::run(opts, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (stop, task)
}

async fn client(addr: SocketAddr) -> TraceryClient<tonic::transport::Channel> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TraceryClient::connect(format!("http://{addr}")).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("controller unreachable: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn level3_on(pid: u32, hit_limit: u32) -> v1::BreakpointSpec {
    v1::BreakpointSpec {
        target: Some(Target::Pid(pid)),
        location: "level3".into(),
        when: None,
        hit_limit: Some(hit_limit),
        expire_seconds: None,
        rate_per_second: Some(10),
        ..Default::default()
    }
}

async fn stored(c: &mut TraceryClient<tonic::transport::Channel>, id: u64) -> Vec<v1::Snapshot> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .list_snapshots(v1::ListSnapshotsRequest {
                filter: Some(SnapshotFilter {
                    breakpoint_id: Some(id),
                }),
                limit: 500,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.snapshots);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// Waits until the agent has connected (the controller lists it).
async fn wait_for_agent(c: &mut TraceryClient<tonic::transport::Channel>) -> v1::AgentStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = c.status(v1::StatusRequest {}).await.unwrap().into_inner();
        if let Some(a) = st.agents.into_iter().find(|a| a.connected) {
            return a;
        }
        assert!(Instant::now() < deadline, "no agent connected within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breakpoint_set_through_the_controller_is_captured_and_stored() {
    tracery_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let (controller, addr) = Controller::start("127.0.0.1:0".parse().unwrap(), &store).await;
    let (agent_stop, agent) = start_agent(addr, dir.path());
    let mut c = client(addr).await;
    let agent_status = wait_for_agent(&mut c).await;
    let hello = agent_status.hello.unwrap();
    assert!(!hello.agent_id.is_empty() && !hello.kernel_release.is_empty());

    let target = FixtureProcess::spawn("c-O0", &["serve"]);
    let mut watch = c
        .watch_snapshots(v1::WatchSnapshotsRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    let bp = c
        .set_breakpoint(level3_on(target.pid(), 2))
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap();

    let s = tokio::time::timeout(Duration::from_secs(20), watch.message())
        .await
        .expect("a snapshot is watched within 20 s")
        .unwrap()
        .unwrap();
    assert_eq!(s.breakpoint_id, bp.id);
    assert_eq!(s.pid, target.pid());
    assert_eq!(s.location.as_ref().unwrap().function, "level3");
    let x = s.variables.iter().find(|v| v.name == "x").unwrap();
    assert_eq!(
        x.value.as_ref().unwrap().kind,
        Some(v1::value::Kind::Int(4)),
        "level3 is called with 4: {x:?}"
    );

    // The hit limit holds end to end: exactly two stored.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut snaps = stored(&mut c, bp.id).await;
    while snaps.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        snaps = stored(&mut c, bp.id).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored(&mut c, bp.id).await.len(), 2);

    // The health report names the armed process.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let st = c.status(v1::StatusRequest {}).await.unwrap().into_inner();
    let health = st.agents[0].health.clone().unwrap();
    assert!(health.rss_bytes > 0, "{health:?}");

    let _ = agent_stop.send(());
    agent.await.unwrap();
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_captured_while_the_controller_is_away_arrive_exactly_once() {
    tracery_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let (first, addr) = Controller::start("127.0.0.1:0".parse().unwrap(), &store).await;
    let (agent_stop, agent) = start_agent(addr, dir.path());
    let mut c = client(addr).await;
    wait_for_agent(&mut c).await;

    let target = FixtureProcess::spawn("c-O0", &["serve"]);
    // 10 hits/s for 4 s: some before, most during, the rest after the outage.
    const LIMIT: usize = 40;
    let bp = c
        .set_breakpoint(level3_on(target.pid(), LIMIT as u32))
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(&mut c, bp.id).await.is_empty() {
        assert!(Instant::now() < deadline, "no snapshot stored within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = stored(&mut c, bp.id).await.len();
    first.stop().await;
    drop(c);

    // Away for 1.5 s: the agent keeps capturing into its buffer.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (second, addr2) = Controller::start(addr, &store).await;
    assert_eq!(addr2, addr);
    let mut c = client(addr).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut snaps = stored(&mut c, bp.id).await;
    while snaps.len() < LIMIT && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        snaps = stored(&mut c, bp.id).await;
    }
    // Let any late resend land before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let snaps = stored(&mut c, bp.id).await;
    assert!(before < LIMIT, "the outage came before the last hit");
    assert_eq!(snaps.len(), LIMIT, "every hit stored exactly once");
    let mut keys: Vec<(u32, prost_types::Timestamp)> =
        snaps.iter().map(|s| (s.tid, s.time.unwrap())).collect();
    keys.sort_by_key(|(tid, t)| (*tid, t.seconds, t.nanos));
    keys.dedup();
    assert_eq!(keys.len(), LIMIT, "no hit stored twice");
    // Captured during the outage: the gap in stored hit times spans it.
    let mut times: Vec<_> = snaps
        .iter()
        .map(|s| std::time::SystemTime::try_from(s.time.unwrap()).unwrap())
        .collect();
    times.sort();
    let max_gap = times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap())
        .max()
        .unwrap();
    assert!(
        max_gap < Duration::from_millis(1000),
        "hits were captured throughout the outage (largest gap {max_gap:?})"
    );

    let _ = agent_stop.send(());
    agent.await.unwrap();
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_re_arms_and_its_new_hits_are_not_taken_for_duplicates() {
    tracery_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let (controller, addr) = Controller::start("127.0.0.1:0".parse().unwrap(), &store).await;
    let started = std::time::SystemTime::now();
    let (agent_stop, agent) = start_agent(addr, dir.path());
    let mut c = client(addr).await;
    let first_id = wait_for_agent(&mut c).await.hello.unwrap().agent_id;

    let target = FixtureProcess::spawn("c-O0", &["serve"]);
    let bp = c
        .set_breakpoint(level3_on(target.pid(), 1000))
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap();
    let watcher = c.clone();
    let wait_for = |want: usize| {
        let mut c = watcher.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let n = stored(&mut c, bp.id).await.len();
                if n >= want {
                    return n;
                }
                assert!(Instant::now() < deadline, "{n} of {want} snapshots stored");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // Two seconds of hits (10/s): numbers 1..=20 are taken.
    wait_for(20).await;
    let first_stored = |snapshots: &[v1::Snapshot], since| {
        snapshots
            .iter()
            .map(|s| std::time::SystemTime::try_from(s.time.unwrap()).unwrap())
            .filter(|t| *t >= since)
            .min()
            .unwrap()
            .duration_since(since)
            .unwrap()
    };
    // From the agent's start to its first stored hit: loading, connecting, arming.
    let first_run = first_stored(&stored(&mut c, bp.id).await, started);
    let _ = agent_stop.send(());
    agent.await.unwrap();
    let before = stored(&mut c, bp.id).await.len();

    // Same data dir: same agent id, numbering resumes past the first run's. Were it to
    // restart at 1, the first 20 hits of this run would be taken for duplicates and the
    // first one stored would come 2 s later than the first run's did (compared with that
    // run, not a fixed time: loading and arming take seconds on a slow machine).
    let restarted = std::time::SystemTime::now();
    let (agent_stop, agent) = start_agent(addr, dir.path());
    wait_for(before + 3).await;
    let second_run = first_stored(&stored(&mut c, bp.id).await, restarted);
    assert!(
        second_run < first_run + Duration::from_millis(1000),
        "the restarted agent's first hit was stored {second_run:?} after its start, the \
         first run's {first_run:?} after its start"
    );
    let st = c.status(v1::StatusRequest {}).await.unwrap().into_inner();
    let ids: Vec<String> = st
        .agents
        .iter()
        .map(|a| a.hello.clone().unwrap().agent_id)
        .collect();
    assert!(ids.iter().all(|id| *id == first_id), "{ids:?}");

    let _ = agent_stop.send(());
    agent.await.unwrap();
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_answers_a_resume_of_a_trace_it_does_not_hold() {
    tracery_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let (controller, addr) =
        Controller::start("127.0.0.1:0".parse().unwrap(), &dir.path().join("s.db")).await;
    let (stop_agent, agent) = start_agent(addr, dir.path());
    let mut c = client(addr).await;
    wait_for_agent(&mut c).await;
    let started = Instant::now();
    let r = c
        .resume_trace(v1::ResumeTraceRequest {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // Answered, not waited out: the controller waits 5 s for an agent that says nothing.
    assert!(r.unanswered.is_empty(), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "{r:?}");
    assert!(r.released.is_empty() && r.last_release.is_none(), "{r:?}");
    let _ = stop_agent.send(());
    agent.await.unwrap();
    controller.stop().await;
}
