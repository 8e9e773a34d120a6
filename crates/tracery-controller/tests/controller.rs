//! The controller over real gRPC: a tonic server on a loopback port with a real store, the
//! CLI side through the generated `Tracery` client, and agents as real `AgentLink` peers
//! speaking the protocol through the generated client.
//!
//! PostgreSQL tests read `TRACERY_TEST_PG_URL` (default: role `root` over the unix socket,
//! database `tracery_test`), work in a schema of their own, and fail, never skip, when
//! PostgreSQL is not there.

mod common;

use common::*;

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
        .into_inner()
        .breakpoint
        .unwrap();
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
    let bp2 = client
        .set_breakpoint(own)
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap();
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
        .into_inner()
        .breakpoint
        .unwrap();

    // Connecting after the breakpoint was set: Arm with the defaults filled in.
    let mut agent = controller.agent("node-1").await;
    let armed = agent.expect_arm(bp.id).await;
    assert_eq!(armed.spec, bp.spec);

    // Set while connected: Arm at once (no answer from the agent: pending, still set).
    let bp2 = client
        .set_breakpoint(spec_at("orders.rs:43"))
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap();
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
    agent.send(armed_in_one_process(id)).await;
    let set = set.await.unwrap().unwrap().into_inner();
    assert_eq!(set.breakpoint.unwrap().id, id);
    // The answer says where it was armed, so the CLI can tell the user.
    assert_eq!(set.arm_results.len(), 1, "{:?}", set.arm_results);
    assert_eq!(set.arm_results[0].agent_id, "node-1");
    assert_eq!(
        set.arm_results[0]
            .result
            .as_ref()
            .map(|r| (r.pid, r.result.clone())),
        Some((4242, Some(v1::arm_result::Result::Probes(1))))
    );
    assert!(set.unanswered_agents.is_empty());
    controller.stop().await;
}

#[tokio::test]
async fn a_hit_is_stored_once_returned_exactly_and_watched() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    hit_round_trip(&controller).await;
    controller.stop().await;
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
        .into_inner()
        .breakpoint
        .unwrap();
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
        .into_inner()
        .breakpoint
        .unwrap();
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
    let bp = client
        .set_breakpoint(short)
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap();
    agent.expect_arm(bp.id).await;
    agent.expect_disarm(bp.id).await;
    assert!(list_breakpoints(&mut client).await.is_empty());
    // And a late agent is not armed with it.
    let mut late = controller.agent("node-2").await;
    let keeper = client
        .set_breakpoint(spec_at("orders.rs:40"))
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap();
    assert_eq!(late.expect_arm(keeper.id).await.id, keeper.id);
    controller.stop().await;
}
