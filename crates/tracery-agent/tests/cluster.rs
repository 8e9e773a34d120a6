//! Cluster mode end to end (root: loads eBPF, creates cgroups). The controller runs in
//! cluster mode with the mock Kubernetes API (`tracery_tests::mock_kube`: no API server can
//! run on this machine); everything else is real: the controller's gRPC server and store,
//! an agent on node `node-a` linked to it, and fixture processes in cgroups named as kubelet
//! names them.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::{net::TcpListener, sync::oneshot};
use tracery_agent::{link, LinkOptions, Services};
use tracery_controller::{ControllerOptions, Defaults, KubernetesApi};
use tracery_proto::v1::{
    self, arm_result, breakpoint_spec::Target, tracery_client::TraceryClient, SnapshotFilter,
};
use tracery_tests::kubelet::{container_id, spawn_in, uid, Kubelet};
use tracery_tests::mock_kube::MockApi;

const TEST: u16 = 0xc1;

fn pod(name: &str, pod_uid: &str, app: &str, container: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": pod_uid, "labels": {"app": app}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "orders:1"}]},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "app", "containerID": format!("containerd://{container}"),
            "image": "orders:1", "imageID": "", "ready": true, "restartCount": 0}]}
    })
}

async fn client(addr: std::net::SocketAddr) -> TraceryClient<tonic::transport::Channel> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TraceryClient::connect(format!("http://{addr}")).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("controller unreachable: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Every stored snapshot of breakpoint `id`.
async fn snapshots(c: &mut TraceryClient<tonic::transport::Channel>, id: u64) -> Vec<v1::Snapshot> {
    c.list_snapshots(v1::ListSnapshotsRequest {
        filter: Some(SnapshotFilter {
            breakpoint_id: Some(id),
        }),
        limit: 1000,
        page_token: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .snapshots
}

/// Waits for a snapshot of breakpoint `id` from `pid`.
async fn snapshot_from(
    c: &mut TraceryClient<tonic::transport::Channel>,
    id: u64,
    pid: u32,
) -> v1::Snapshot {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = snapshots(c, id).await.into_iter().find(|s| s.pid == pid) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot from PID {pid} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_api_a_breakpoint_by_service_arms_exactly_its_pods_and_follows_new_ones() {
    let kubelet = Kubelet::new("cluster");
    let (orders1, orders2, web, orders3) = (uid(TEST, 1), uid(TEST, 2), uid(TEST, 3), uid(TEST, 4));
    let ids: Vec<String> = (1..=4).map(|n| container_id(TEST, n)).collect();
    let p_orders1 = spawn_in(&kubelet.systemd(&orders1, &ids[0]));
    let p_orders2 = spawn_in(&kubelet.cgroupfs(&orders2, &ids[1]));
    let p_web = spawn_in(&kubelet.systemd(&web, &ids[2]));
    let p_outside = spawn_in(&kubelet.group("outside"));

    let (kube, api) = MockApi::start(&[
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"selector": {"app": "orders"}, "ports": [{"port": 80}]}
        }),
        pod("orders-1", &orders1, "orders", &ids[0]),
        pod("orders-2", &orders2, "orders", &ids[1]),
        pod("web-1", &web, "web", &ids[2]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_controller, stopped) = oneshot::channel::<()>();
    let opts = ControllerOptions {
        store_url: format!("sqlite://{}", dir.path().join("store.db").display()),
        services: Vec::new(),
        defaults: Defaults::default(),
        local_agent: None,
        databases: Vec::new(),
        capture_limits: Default::default(),
        kubernetes: Some(KubernetesApi::new(kube)),
        // Who may call is issue 12's tests; here every call is let in.
        access: tracery_controller::Access::Open,
        tls_dir: None,
        otlp_endpoint: None,
    };
    let controller = tokio::spawn(tracery_controller::serve(listener, opts, async {
        stopped.await.ok();
    }));
    let (stop_agent, agent_stopped) = oneshot::channel::<()>();
    let link_opts = LinkOptions {
        controller: format!("http://{addr}"),
        services: Services::default(),
        data_dir: dir.path().join("agent"),
        kubernetes_node: Some("node-a".into()),
    };
    let agent = tokio::spawn(link::run(link_opts, async {
        agent_stopped.await.ok();
    }));

    let mut c = client(addr).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c
        .status(v1::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .agents
        .iter()
        .any(|a| a.connected)
    {
        assert!(
            Instant::now() < deadline,
            "the agent did not connect within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // As `tracery-ctl breakpoint set --service orders -n shop --at level3` sends it.
    let set = c
        .set_breakpoint(v1::BreakpointSpec {
            target: Some(Target::Service("orders".into())),
            namespace: "shop".into(),
            location: "level3".into(),
            hit_limit: Some(10_000),
            rate_per_second: Some(5),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = set.breakpoint.as_ref().unwrap().id;
    let mut armed: Vec<u32> = set
        .arm_results
        .iter()
        .filter_map(|r| r.result.as_ref())
        .filter(|r| matches!(r.result, Some(arm_result::Result::Probes(n)) if n > 0))
        .map(|r| r.pid)
        .collect();
    armed.sort_unstable();
    // The pods' executable file first (as pid 0): its sites serve every process of the
    // chosen pods that runs it, those that start later included.
    let mut want = vec![0, p_orders1.pid(), p_orders2.pid()];
    want.sort_unstable();
    assert_eq!(armed, want, "armed exactly the Service's pods: {set:?}");

    // A hit says which pod and container it ran in.
    let hit = snapshot_from(&mut c, id, p_orders2.pid()).await;
    let where_ = hit.pod.expect("a snapshot in a pod names it");
    assert_eq!(
        (
            where_.namespace.as_str(),
            where_.pod.as_str(),
            where_.container.as_str(),
            where_.node.as_str()
        ),
        ("shop", "orders-2", "app", "node-a")
    );

    // The breakpoint is also a Breakpoint object (`kubectl get breakpoints -n shop`).
    let created: Vec<_> = api
        .recorded()
        .into_iter()
        .filter(|r| {
            r.method == "POST" && r.path == "/apis/tracery.dev/v1alpha1/namespaces/shop/breakpoints"
        })
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].body["spec"]["service"], json!("orders"));
    assert_eq!(
        created[0].body["metadata"]["labels"]["tracery.dev/breakpoint-id"],
        json!(id.to_string())
    );

    // A new pod of the Service starts on the node: armed without user action.
    let p_orders3 = spawn_in(&kubelet.systemd(&orders3, &ids[3]));
    api.apply(pod("orders-3", &orders3, "orders", &ids[3]));
    let hit = snapshot_from(&mut c, id, p_orders3.pid()).await;
    assert_eq!(hit.pod.unwrap().pod, "orders-3");

    // Nothing else was ever armed: no snapshot from the other pod or from outside pods.
    let pids: Vec<u32> = snapshots(&mut c, id).await.iter().map(|s| s.pid).collect();
    assert!(
        !pids.contains(&p_web.pid()) && !pids.contains(&p_outside.pid()),
        "{pids:?}"
    );

    let _ = stop_agent.send(());
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let _ = stop_controller.send(());
    tokio::time::timeout(Duration::from_secs(10), controller)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
