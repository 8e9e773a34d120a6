use std::time::{Duration, SystemTime};

use super::*;

const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A message event at `ms` on its node's clock.
#[expect(clippy::too_many_arguments, reason = "every field a test varies")]
fn msg(
    id: i64,
    node: &str,
    pid: u32,
    name: &str,
    kind: &str,
    local: &str,
    remote: &str,
    seq: Option<u32>,
    bytes: u32,
    ms: u64,
) -> Message {
    Message {
        id,
        agent_id: node.into(),
        node: node.into(),
        trace_id: T.into(),
        kind: kind.into(),
        local_addr: local.into(),
        remote_addr: remote.into(),
        seq,
        bytes,
        pid,
        tid: pid,
        task: 0,
        process_name: name.into(),
        time: SystemTime::UNIX_EPOCH
            + Duration::from_secs(1_800_000_000)
            + Duration::from_millis(ms),
        held: false,
    }
}

fn event<'a>(g: &'a CausalGraph, id: &str) -> &'a Event {
    g.events.iter().find(|e| e.id == id).unwrap()
}

fn edge(from: &str, to: &str) -> Edge {
    Edge {
        from: from.into(),
        to: to.into(),
    }
}

const GW: &str = "10.0.0.1:40000";
const ORD: &str = "10.0.0.2:8080";

/// gateway (node a) sends a request to orders (node b) and gets the reply. Node b's clock
/// is 5 s behind node a's: by time, orders received the request before it was sent.
fn skewed() -> Vec<Message> {
    vec![
        msg(
            1,
            "a",
            10,
            "gateway",
            "send",
            GW,
            ORD,
            Some(1000),
            120,
            5_000,
        ),
        msg(2, "b", 20, "orders", "recv", ORD, GW, Some(1000), 120, 2),
        msg(3, "b", 20, "orders", "send", ORD, GW, Some(9000), 60, 40),
        msg(
            4,
            "a",
            10,
            "gateway",
            "recv",
            GW,
            ORD,
            Some(9000),
            60,
            5_045,
        ),
    ]
}

#[test]
fn skewed_clocks_still_order_each_send_before_its_receive() {
    let g = build(T, &[], &skewed());
    assert_eq!(
        g.edges,
        vec![edge("msg-1", "msg-2"), edge("msg-3", "msg-4")]
    );
    let (send, recv) = (event(&g, "msg-1"), event(&g, "msg-2"));
    assert!(
        recv.time_unix_nano < send.time_unix_nano,
        "the clocks do lie here"
    );
    assert!(send.lamport < recv.lamport);
    assert!(event(&g, "msg-3").lamport < event(&g, "msg-4").lamport);
    let ids: Vec<&str> = g.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["msg-1", "msg-2", "msg-3", "msg-4"], "causal order");
    // The reply's receive knows both of orders' events and both of gateway's.
    let vc = &event(&g, "msg-4").vclock;
    assert_eq!(vc.get("a/10"), Some(&2));
    assert_eq!(vc.get("b/20"), Some(&2));
    assert_eq!(event(&g, "msg-2").vclock.get("a/10"), Some(&1));
    assert_eq!(event(&g, "msg-1").vclock.get("b/20"), None);
    assert_eq!(send.conn, "10.0.0.1:40000->10.0.0.2:8080");
    assert_eq!(
        recv.conn, send.conn,
        "a send and its receive name the connection alike"
    );
    assert_eq!(
        g.services,
        vec![
            ServiceEdge {
                from: "gateway".into(),
                to: "orders".into(),
                count: 1
            },
            ServiceEdge {
                from: "orders".into(),
                to: "gateway".into(),
                count: 1
            },
        ]
    );
    assert_eq!(g.critical_path, ["msg-1", "msg-2", "msg-3", "msg-4"]);
}

#[test]
fn byte_ranges_match_a_send_split_over_receives_and_nothing_else() {
    let mut m = vec![
        // One send of 100 bytes read in two receives; then a second send read at once.
        msg(
            1,
            "a",
            10,
            "gateway",
            "send",
            GW,
            ORD,
            Some(u32::MAX - 10),
            100,
            0,
        ),
        msg(
            2,
            "b",
            20,
            "orders",
            "recv",
            ORD,
            GW,
            Some(u32::MAX - 10),
            40,
            0,
        ),
        msg(3, "b", 20, "orders", "recv", ORD, GW, Some(29), 60, 1),
        msg(4, "a", 10, "gateway", "send", GW, ORD, Some(89), 10, 2),
        msg(5, "b", 20, "orders", "recv", ORD, GW, Some(89), 10, 3),
    ];
    // Another connection between the same hosts: never joined to these.
    m.push(msg(
        6,
        "b",
        20,
        "orders",
        "recv",
        ORD,
        "10.0.0.1:40001",
        Some(89),
        10,
        4,
    ));
    let g = build(T, &[], &m);
    assert_eq!(
        g.edges,
        vec![
            edge("msg-1", "msg-2"),
            edge("msg-1", "msg-3"),
            edge("msg-4", "msg-5")
        ]
    );
    assert_eq!(g.services[0].count, 2, "counted per send");
}

#[test]
fn a_held_send_is_matched_by_its_place_among_the_unexplained_bytes() {
    let mut held = msg(1, "a", 10, "orders", "send", GW, ORD, None, 50, 0);
    held.held = true;
    let m = vec![
        held,
        msg(2, "a", 10, "orders", "send", GW, ORD, None, 20, 1),
        msg(3, "b", 20, "db", "recv", ORD, GW, Some(500), 70, 9_000),
    ];
    let g = build(T, &[], &m);
    assert_eq!(
        g.edges,
        vec![edge("msg-1", "msg-3"), edge("msg-2", "msg-3")]
    );
    assert!(event(&g, "msg-1").held);
}

#[test]
fn hits_join_their_process_lane_and_take_its_name() {
    let hits = [Hit {
        snapshot_id: 7,
        service: "pid 20".into(),
        node: "b".into(),
        pid: 20,
        tid: 21,
        time_unix_nano: 0,
    }];
    // On node b the hit and the request's receive share an instant.
    let mut m = skewed();
    m[1].time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let g = build(T, &hits, &m);
    let hit = event(&g, "hit-7");
    assert_eq!((hit.kind, hit.service.as_str()), ("hit", "orders"));
    assert_eq!(hit.snapshot_id, Some(7));
    assert_eq!(hit.process, "b/20");
    // Hits come first at one instant; the lane's order is kept.
    assert!(hit.lamport < event(&g, "msg-3").lamport);
    let json = serde_json::to_value(&g).unwrap();
    assert_eq!(json["events"][0]["kind"], "send");
    assert!(json["events"][0].get("snapshot_id").is_none());
    assert_eq!(json["trace_id"], T);
}

#[test]
fn a_loop_from_a_bad_report_is_broken_not_followed_forever() {
    // b's receive claims a's reply's bytes, and a's receive claims b's: a cycle.
    let m = vec![
        msg(1, "a", 10, "a", "recv", GW, ORD, Some(0), 10, 0),
        msg(2, "a", 10, "a", "send", GW, ORD, Some(100), 10, 1),
        msg(3, "b", 20, "b", "recv", ORD, GW, Some(100), 10, 0),
        msg(4, "b", 20, "b", "send", ORD, GW, Some(0), 10, 1),
    ];
    let g = build(T, &[], &m);
    assert_eq!(g.events.len(), 4);
    for e in &g.edges {
        assert!(
            event(&g, &e.from).lamport < event(&g, &e.to).lamport,
            "{e:?}"
        );
    }
    assert_eq!(
        g.edges.len(),
        1,
        "one of the two edges closes the loop: {:?}",
        g.edges
    );
}
