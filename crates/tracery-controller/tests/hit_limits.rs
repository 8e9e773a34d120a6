//! A breakpoint's hit limit holds over every node, over real gRPC: when the hits stored
//! from all agents reach it, every agent is told to disarm; agents that connect later,
//! also to a restarted controller, are not armed with it; and an agent still armed from
//! before a restart is disarmed at its next hit.

mod common;

use common::*;

fn is_disarm(m: &Down) -> bool {
    matches!(m, Down::Disarm(_))
}

/// Sets a breakpoint at `location` with a hit limit, and has each of `agents` answer its
/// arm (so the call does not wait out the arm timeout). Arms of breakpoints set before
/// (ids up to `newer_than`) are skipped; an arm of `spent` fails the test.
async fn set(
    client: &TraceryClient<Channel>,
    agents: &mut [&mut Agent],
    location: &str,
    hits: u32,
    newer_than: u64,
    spent: Option<u64>,
) -> v1::Breakpoint {
    let mut spec = spec_at(location);
    spec.hit_limit = Some(hits);
    let call = tokio::spawn({
        let mut client = client.clone();
        async move { client.set_breakpoint(spec).await }
    });
    let mut id = None;
    for agent in agents.iter_mut() {
        let armed = loop {
            if let Down::Arm(arm) = agent.next().await {
                let armed = arm.breakpoint.unwrap().id;
                assert_ne!(Some(armed), spent, "a spent breakpoint was armed");
                if armed > newer_than {
                    break armed;
                }
            }
        };
        assert!(id.is_none_or(|id| id == armed), "{id:?} != {armed}");
        id = Some(armed);
        agent.send(armed_in_one_process(armed)).await;
    }
    let bp = call
        .await
        .unwrap()
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap();
    assert_eq!(Some(bp.id), id);
    bp
}

#[tokio::test]
async fn a_hit_limit_counts_every_node_s_hits_and_a_spent_breakpoint_is_not_armed_again() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let controller = Controller::start(&url).await;
    let mut client = controller.client().await;
    let mut a = controller.agent_on("agent-a", "node-a").await;
    let mut b = controller.agent_on("agent-b", "node-b").await;
    let bp = set(&client, &mut [&mut a, &mut b], "orders.rs:39", 2, 0, None).await;
    let mut hits = watch(&mut client, Some(bp.id)).await;

    // One hit of two: both nodes stay armed.
    a.send(hit(snapshot(bp.id, 1), 1)).await;
    next_snapshot(&mut hits).await;
    let quiet = Duration::from_millis(500);
    a.assert_none_within(quiet, is_disarm).await;
    b.assert_none_within(quiet, is_disarm).await;

    // The second, from the other node: the limit is reached, and both are disarmed.
    b.send(hit(snapshot(bp.id, 2), 1)).await;
    next_snapshot(&mut hits).await;
    a.expect_disarm(bp.id).await;
    b.expect_disarm(bp.id).await;
    let listed = list_breakpoints(&mut client).await;
    let spent = listed.iter().find(|l| l.id == bp.id).expect("still listed");
    assert_eq!(spent.hits, 2, "{spent:?}");

    // A node that connects now gets no arm of it; one set now still arms there.
    let mut c = controller.agent_on("agent-c", "node-c").await;
    let other = set(
        &client,
        &mut [&mut c],
        "orders.rs:40",
        5,
        bp.id,
        Some(bp.id),
    )
    .await;
    controller.stop().await;

    // After a restart, from the store's count: not armed on connect either.
    let controller = Controller::start(&url).await;
    let mut d = controller.agent_on("agent-d", "node-d").await;
    let mut client = controller.client().await;
    set(
        &client,
        &mut [&mut d],
        "orders.rs:41",
        5,
        other.id,
        Some(bp.id),
    )
    .await;

    // An agent armed before the restart that still sends a hit is disarmed; the hit is
    // stored, not lost.
    let mut a = controller.agent_on("agent-a", "node-a").await;
    a.send(hit(snapshot(bp.id, 3), 2)).await;
    a.expect_disarm(bp.id).await;
    assert_eq!(list_snapshots(&mut client, bp.id).await.len(), 3);
    // The other breakpoints are untouched.
    for agent in [&mut a, &mut d] {
        agent
            .assert_none_within(
                quiet,
                |m| matches!(m, Down::Disarm(x) if x.breakpoint_id != bp.id),
            )
            .await;
    }
    controller.stop().await;
}
