//! Cluster mode on real cgroups (root: creates cgroup v2 groups and loads eBPF). Fixture
//! processes run in groups named exactly as kubelet names them, under a parent group each
//! test owns; the pod list is what the controller would send in `NodePods`.

use std::{
    collections::BTreeMap,
    fs,
    path::Path,
    time::{Duration, Instant},
};

use tracery_agent::{
    pods::{self, Pod, PodDirectory, PodSelector},
    AgentError, BreakpointSpec, Manager, Snapshot, Target,
};
use tracery_dwarf::CaptureLimits;
use tracery_model::PodRef;
use tracery_tests::kubelet::{container_id, spawn_in, uid, Kubelet};
use tracery_tests::FixtureProcess;

const NODE: &str = "node-a";
const NAMESPACE: &str = "shop";

fn pod(uid: String, name: &str, namespace: &str, app: &str, containers: &[(&str, &str)]) -> Pod {
    Pod {
        uid,
        namespace: namespace.into(),
        name: name.into(),
        labels: BTreeMap::from([("app".to_owned(), app.to_owned())]),
        containers: containers
            .iter()
            .map(|(id, name)| (id.to_string(), name.to_string()))
            .collect(),
    }
}

fn pod_ref(pod: &str, container: &str) -> Option<PodRef> {
    Some(PodRef {
        namespace: NAMESPACE.into(),
        pod: pod.into(),
        container: container.into(),
        node: NODE.into(),
    })
}

fn selector(app: &str, container: Option<&str>) -> Target {
    Target::Pods(PodSelector {
        namespace: NAMESPACE.into(),
        labels: BTreeMap::from([("app".to_owned(), app.to_owned())]),
        container: container.map(str::to_owned),
    })
}

fn spec(id: u64, target: Target) -> BreakpointSpec {
    BreakpointSpec {
        id,
        target,
        location: "level3".into(),
        when: None,
        hit_limit: 0,
        rate_per_sec: 0,
        expires_at: None,
        limits: CaptureLimits::default(),
        scope: Default::default(),
        freeze: None,
        capture_paths: Vec::new(),
    }
}

/// The processes breakpoint `id` is armed in.
fn armed(m: &Manager, id: u64) -> Vec<u32> {
    let st = m.status_of(id).unwrap();
    assert!(st.errors.is_empty(), "{st:?}");
    st.processes.iter().map(|(pid, _)| *pid).collect()
}

fn sorted(mut pids: Vec<u32>) -> Vec<u32> {
    pids.sort_unstable();
    pids
}

/// Ticks until breakpoint `id` delivers a snapshot from `pid` (or 10 s pass).
fn snapshot_from(m: &mut Manager, id: u64, pid: u32) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let snaps = m.tick(Duration::from_millis(50)).unwrap();
        if let Some(s) = snaps
            .into_iter()
            .find(|s| s.pid == pid && s.breakpoint_id == id)
        {
            return s;
        }
    }
    panic!(
        "no snapshot of breakpoint {id} from PID {pid} within 10 s: {:?}",
        m.status()
    );
}

#[test]
fn pods_are_mapped_through_kubelet_cgroups() {
    let kubelet = Kubelet::new("map");
    let (orders, envoy, sandbox, payments) = (
        container_id(1, 1),
        container_id(1, 2),
        container_id(1, 3),
        container_id(1, 4),
    );
    let a = pod(
        uid(1, 1),
        "orders-7d9f8-x2k4p",
        NAMESPACE,
        "orders",
        &[(&orders, "orders"), (&envoy, "envoy")],
    );
    let b = pod(
        uid(1, 2),
        "payments-5c4b-q9z",
        NAMESPACE,
        "payments",
        &[(&payments, "payments")],
    );
    let orders_dir = kubelet.systemd(&a.uid, &orders);
    let in_orders = spawn_in(&orders_dir);
    let in_envoy = spawn_in(&kubelet.systemd(&a.uid, &envoy));
    // The pod's sandbox (pause) container is in the pod but not listed among its containers.
    let in_sandbox = spawn_in(&kubelet.systemd(&a.uid, &sandbox));
    let payments_dir = kubelet.cgroupfs(&b.uid, &payments);
    let in_payments = spawn_in(&payments_dir);
    let outside = FixtureProcess::spawn("c-O0", &["serve"]);

    let dir = PodDirectory::with_pods(NODE, [a.clone(), b.clone()]);
    assert_eq!(
        dir.pod_ref(in_orders.pid()),
        pod_ref("orders-7d9f8-x2k4p", "orders")
    );
    assert_eq!(
        dir.pod_ref(in_envoy.pid()),
        pod_ref("orders-7d9f8-x2k4p", "envoy")
    );
    assert_eq!(
        dir.pod_ref(in_payments.pid()),
        pod_ref("payments-5c4b-q9z", "payments")
    );
    assert_eq!(dir.pod_ref(in_sandbox.pid()), None);
    assert_eq!(dir.pod_ref(outside.pid()), None);
    assert_eq!(pods::cgroup_of(outside.pid()), None);
    // A pod the controller has not listed (yet) maps to none.
    let only_b = PodDirectory::with_pods(NODE, [b.clone()]);
    assert_eq!(only_b.pod_ref(in_orders.pid()), None);

    // What the kernel reports, read back: the pod and container, and the pod's own group
    // (the container groups' parent), which a hold watches.
    let cgroup = pods::cgroup_of(in_payments.pid()).unwrap();
    assert_eq!(cgroup.pod_uid, b.uid);
    assert_eq!(cgroup.container_id.as_deref(), Some(payments.as_str()));
    for (p, container_dir) in [(&in_orders, &orders_dir), (&in_payments, &payments_dir)] {
        let own = fs::read_to_string(format!("/proc/{}/cgroup", p.pid())).unwrap();
        let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        let held = tracery_agent::discovery::cgroup2_dir(&pods::hold_cgroup(own)).unwrap();
        assert_eq!(Some(held.as_path()), container_dir.parent(), "{own}");
    }
}

#[test]
fn a_selector_breakpoint_arms_exactly_the_selected_pods() {
    let kubelet = Kubelet::new("select");
    let ids: Vec<String> = (1..=5).map(|n| container_id(2, n)).collect();
    let web1 = pod(
        uid(2, 1),
        "orders-a",
        NAMESPACE,
        "orders",
        &[(&ids[0], "orders"), (&ids[1], "envoy")],
    );
    let web2 = pod(
        uid(2, 2),
        "orders-b",
        NAMESPACE,
        "orders",
        &[(&ids[2], "orders")],
    );
    let decoy = pod(
        uid(2, 3),
        "payments-a",
        NAMESPACE,
        "payments",
        &[(&ids[3], "orders")],
    );
    let other_ns = pod(
        uid(2, 4),
        "orders-a",
        "staging",
        "orders",
        &[(&ids[4], "orders")],
    );
    let p_orders1 = spawn_in(&kubelet.systemd(&web1.uid, &ids[0]));
    let p_envoy1 = spawn_in(&kubelet.systemd(&web1.uid, &ids[1]));
    let p_orders2 = spawn_in(&kubelet.cgroupfs(&web2.uid, &ids[2]));
    let p_decoy = spawn_in(&kubelet.systemd(&decoy.uid, &ids[3]));
    let p_other_ns = spawn_in(&kubelet.cgroupfs(&other_ns.uid, &ids[4]));
    let outside = FixtureProcess::spawn("c-O0", &["serve"]);

    let mut m = Manager::start().unwrap();
    m.set_pods(PodDirectory::with_pods(NODE, [web1, web2, decoy, other_ns]));
    m.add(spec(1, selector("orders", None))).unwrap();
    m.add(spec(2, selector("orders", Some("orders")))).unwrap();
    // Armed in every container of both matching pods, and nowhere else.
    assert_eq!(
        armed(&m, 1),
        sorted(vec![p_orders1.pid(), p_envoy1.pid(), p_orders2.pid()])
    );
    // With `container`, the sidecar of a matching pod is left out.
    assert_eq!(armed(&m, 2), sorted(vec![p_orders1.pid(), p_orders2.pid()]));
    for p in [&p_decoy, &p_other_ns, &outside] {
        assert!(!armed(&m, 1).contains(&p.pid()));
    }

    // Each hit names its pod and container on this node.
    let s = snapshot_from(&mut m, 2, p_orders2.pid());
    assert_eq!(s.pod, pod_ref("orders-b", "orders"));
    let s = snapshot_from(&mut m, 1, p_envoy1.pid());
    assert_eq!(s.pod, pod_ref("orders-a", "envoy"));
    // No hit comes from a process the selectors left out.
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        for s in m.tick(Duration::from_millis(50)).unwrap() {
            assert!(
                ![p_decoy.pid(), p_other_ns.pid(), outside.pid()].contains(&s.pid),
                "{s:?}"
            );
            assert!(
                s.breakpoint_id != 2 || s.pid != p_envoy1.pid(),
                "the sidecar hit a breakpoint on container orders"
            );
        }
    }
}

#[test]
fn a_node_pods_update_arms_a_new_matching_pod_without_resending_the_breakpoint() {
    let kubelet = Kubelet::new("update");
    let ids: Vec<String> = (1..=3).map(|n| container_id(3, n)).collect();
    let first = pod(
        uid(3, 1),
        "orders-a",
        NAMESPACE,
        "orders",
        &[(&ids[0], "orders")],
    );
    let second = pod(
        uid(3, 2),
        "orders-b",
        NAMESPACE,
        "orders",
        &[(&ids[1], "orders"), (&ids[2], "orders-worker")],
    );
    let p_first = spawn_in(&kubelet.systemd(&first.uid, &ids[0]));
    // Already running when its pod joins the list (the controller lags behind kubelet).
    let p_second = spawn_in(&kubelet.cgroupfs(&second.uid, &ids[1]));

    let mut m = Manager::start().unwrap();
    // Outside cluster mode a pod target is refused, saying why.
    let err = m.add(spec(1, selector("orders", None))).unwrap_err();
    assert!(matches!(err, AgentError::NotInCluster { id: 1 }), "{err}");

    m.set_pods(PodDirectory::with_pods(NODE, [first.clone()]));
    m.add(spec(1, selector("orders", None))).unwrap();
    assert_eq!(armed(&m, 1), vec![p_first.pid()]);

    // The new list arms the new pod's process, before any tick and with no new Arm.
    let changed = m.set_pods(PodDirectory::with_pods(NODE, [first, second.clone()]));
    assert_eq!(armed(&m, 1), sorted(vec![p_first.pid(), p_second.pid()]));
    // Reported (as ArmResults, by the link) for the breakpoint that armed more.
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].id, 1);
    let s = snapshot_from(&mut m, 1, p_second.pid());
    assert_eq!(s.pod, pod_ref("orders-b", "orders"));

    // A container that starts later in a matching pod is caught by the probes bound to
    // its file, and listed once it has lived a second (its requests followed from then).
    let p_worker = spawn_in(&kubelet.cgroupfs(&second.uid, &ids[2]));
    let s = snapshot_from(&mut m, 1, p_worker.pid());
    assert_eq!(s.pod, pod_ref("orders-b", "orders-worker"));

    // An exited process is forgotten.
    drop(p_first);
    let want = sorted(vec![p_second.pid(), p_worker.pid()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while armed(&m, 1) != want {
        assert!(Instant::now() < deadline, "{:?}", m.status());
        m.tick(Duration::from_millis(50)).unwrap();
    }
}

/// The programs attached to cgroup `dir` itself (not inherited), as bpftool lists them.
fn attached(dir: &Path) -> String {
    let out = std::process::Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(dir)
        .output()
        .expect("bpftool (package bpftool or linux-tools) lists cgroup programs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_freezing_pod_breakpoint_holds_through_the_pods_own_cgroup() {
    let kubelet = Kubelet::new("hold");
    let id = container_id(4, 1);
    let web = pod(
        uid(4, 1),
        "orders-a",
        NAMESPACE,
        "orders",
        &[(&id, "orders")],
    );
    let container_dir = kubelet.systemd(&web.uid, &id);
    let pod_dir = container_dir.parent().unwrap().to_path_buf();
    let p = spawn_in(&container_dir);

    let mut m = Manager::start().unwrap();
    m.set_pods(PodDirectory::with_pods(NODE, [web]));
    let mut freezing = spec(1, selector("orders", None));
    freezing.freeze = Some(tracery_agent::freeze::FreezeSpec {
        timeout: Duration::from_secs(5),
    });
    // A trace that never comes: the watch is what is tested, not a freeze.
    freezing.scope.trace_id =
        Some(tracery_agent::freeze::TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
    m.add(freezing).unwrap();
    assert_eq!(armed(&m, 1), vec![p.pid()]);
    // The pod's group is watched (every container of the pod, a sidecar proxy included),
    // not the one container's.
    assert!(
        attached(&pod_dir).contains("sock_ops"),
        "{}",
        attached(&pod_dir)
    );
    assert!(!attached(&container_dir).contains("sock_ops"));
    // And let go once no freezing breakpoint needs it.
    m.remove(1).unwrap();
    m.tick(Duration::from_millis(20)).unwrap();
    assert!(
        !attached(&pod_dir).contains("sock_ops"),
        "{}",
        attached(&pod_dir)
    );
}

/// Ticks for `period`, keeping the snapshots from `pid`.
fn gather(m: &mut Manager, pid: u32, period: Duration) -> Vec<Snapshot> {
    let until = Instant::now() + period;
    let mut got = Vec::new();
    while Instant::now() < until {
        let snaps = m.tick(Duration::from_millis(20)).unwrap();
        got.extend(snaps.into_iter().filter(|s| s.pid == pid));
    }
    got
}

/// The snapshots of a process that has exited: ticks until `want` arrived (or 10 s),
/// then 200 ms more for any extra one.
fn hits_of(m: &mut Manager, pid: u32, want: usize) -> Vec<Snapshot> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want && Instant::now() < deadline {
        got.extend(gather(m, pid, Duration::from_millis(50)));
    }
    got.extend(gather(m, pid, Duration::from_millis(200)));
    got
}

fn count(snaps: &[Snapshot], id: u64) -> usize {
    snaps.iter().filter(|s| s.breakpoint_id == id).count()
}

#[test]
fn a_pod_process_that_lives_20_ms_is_caught_once_its_file_has_run_on_the_node() {
    use tracery_tests::kubelet::{run_in, Sandbox};
    let kubelet = Kubelet::new("short");
    let ids: Vec<String> = (1..=6).map(|n| container_id(5, n)).collect();
    let web = pod(
        uid(5, 1),
        "orders-a",
        NAMESPACE,
        "orders",
        &[(&ids[0], "orders"), (&ids[1], "migrate")],
    );
    let decoy = pod(
        uid(5, 2),
        "payments-a",
        NAMESPACE,
        "payments",
        &[(&ids[2], "payments")],
    );
    let web_dir = kubelet.systemd(&web.uid, &ids[0]);
    let migrate_dir = kubelet.systemd(&web.uid, &ids[1]);
    let decoy_dir = kubelet.cgroupfs(&decoy.uid, &ids[2]);
    let outside_dir = kubelet.group("outside");
    // The chosen pod's server runs the file: the breakpoint is armed in it, and binds to it.
    let server = spawn_in(&web_dir);

    let mut m = Manager::start().unwrap();
    m.set_pods(PodDirectory::with_pods(NODE, [web.clone(), decoy.clone()]));
    let at_orders = |id, container: Option<&str>| BreakpointSpec {
        location: "process_order".into(),
        ..spec(id, selector("orders", container))
    };
    m.add(at_orders(1, None)).unwrap();
    m.add(at_orders(2, Some("orders"))).unwrap();
    assert_eq!(armed(&m, 1), vec![server.pid()]);

    let mut lives = Vec::new();
    for run in 1..=20 {
        let (pid, lived) = run_in(&web_dir, "once");
        lives.push(lived);
        // Gone before the agent reads its hits: the pod is named from the hit's cgroup.
        let got = hits_of(&mut m, pid, 2);
        assert_eq!(count(&got, 1), 1, "run {run}: {got:#?}");
        assert_eq!(count(&got, 2), 1, "run {run}: {got:#?}");
        for s in &got {
            assert_eq!(s.pod, pod_ref("orders-a", "orders"), "run {run}");
            let id = s.variables.iter().find(|v| v.name == "id").unwrap();
            assert_eq!(id.value, tracery_model::Value::Int(42), "run {run}");
        }
    }
    lives.sort();
    eprintln!(
        "20 of 20 runs caught; they lived {:?} to {:?} (from spawn to reaped)",
        lives[0], lives[19]
    );

    // Another container of the chosen pod runs the same file: the pod's breakpoint catches
    // it, the one on container `orders` does not.
    let (pid, _) = run_in(&migrate_dir, "once");
    let got = hits_of(&mut m, pid, 1);
    assert_eq!((count(&got, 1), count(&got, 2)), (1, 0), "{got:#?}");
    assert_eq!(got[0].pod, pod_ref("orders-a", "migrate"));

    // A pod the selector does not choose, and a process in no pod: nothing.
    for dir in [&decoy_dir, &outside_dir] {
        let (pid, _) = run_in(dir, "once");
        let got = gather(&mut m, pid, Duration::from_millis(500));
        assert!(got.is_empty(), "{dir:?}: {got:#?}");
    }

    // A pod that joins later: its sandbox starts first, as kubelet starts it, and its
    // container's first process, 20 ms long, is caught.
    let late = pod(
        uid(5, 3),
        "orders-b",
        NAMESPACE,
        "orders",
        &[(&ids[3], "orders")],
    );
    let late_dir = kubelet.cgroupfs(&late.uid, &ids[3]);
    let sandbox = Sandbox::start(&kubelet.cgroupfs(&late.uid, &ids[4]));
    m.set_pods(PodDirectory::with_pods(NODE, [web, decoy, late]));
    gather(&mut m, sandbox.pid(), Duration::from_millis(100));
    let (pid, _) = run_in(&late_dir, "once");
    let got = hits_of(&mut m, pid, 2);
    assert_eq!((count(&got, 1), count(&got, 2)), (1, 1), "{got:#?}");
    assert_eq!(got[0].pod, pod_ref("orders-b", "orders"));
    drop(server);
}
