//! Frozen traces through the controller over real gRPC: agents report freezes and
//! releases, `ResumeTrace` and `EvalTrace` go down to the agent holding the trace, and a
//! second resume says when the trace was let go.

mod common;

use common::*;

const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn frozen(trace_id: &str, tid: u32, suspended: bool) -> v1::FrozenThread {
    let now = SystemTime::now();
    v1::FrozenThread {
        trace_id: trace_id.into(),
        breakpoint_id: 1,
        snapshot_sequence: 1,
        pid: 4242,
        tid,
        location: "orders::process_order (orders.rs:39)".into(),
        frozen_at: Some(now.into()),
        deadline: Some((now + Duration::from_secs(60)).into()),
        suspended,
        not_suspended_reason: if suspended {
            String::new()
        } else {
            "Go code: stops at the next syscall".into()
        },
    }
}

fn released(thread: v1::FrozenThread) -> v1::Release {
    v1::Release {
        thread: Some(thread),
        reason: v1::ReleaseReason::Resumed.into(),
        at: Some(SystemTime::now().into()),
    }
}

impl Agent {
    /// Waits for the next `ResumeTrace` or `EvalTrace`, skipping arms.
    async fn next_request(&mut self) -> Down {
        loop {
            match self.next().await {
                m @ (Down::ResumeTrace(_) | Down::EvalTrace(_)) => return m,
                _ => continue,
            }
        }
    }
}

async fn list_traces(client: &mut TraceryClient<Channel>) -> Vec<v1::Trace> {
    client
        .list_traces(v1::ListTracesRequest {})
        .await
        .unwrap()
        .into_inner()
        .traces
}

/// Polls `ListTraces` until `done` holds.
async fn traces_until(
    client: &mut TraceryClient<Channel>,
    done: impl Fn(&[v1::Trace]) -> bool,
) -> Vec<v1::Trace> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let traces = list_traces(client).await;
        if done(&traces) {
            return traces;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "traces never got there: {traces:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn frozen_then_resumed_then_resumed_again_says_when() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    assert!(list_traces(&mut client).await.is_empty());

    let mut spec = spec_at("orders.rs:39");
    spec.freeze = true;
    let bp = client
        .set_breakpoint(spec)
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap();
    let set = bp.spec.clone().unwrap();
    assert_eq!(
        set.hit_limit,
        Some(1),
        "a freezing breakpoint freezes one request"
    );
    assert_eq!(set.freeze_timeout_seconds, Some(60));

    let mut agent = controller.agent("node-1").await;
    agent.expect_arm(bp.id).await;
    let mut hit_snapshot = snapshot(bp.id, 12);
    hit_snapshot.trace_id = Some(T.into());
    agent.send(hit(hit_snapshot, 1)).await;
    let thread = frozen(T, 4243, true);
    agent.send(Up::TraceFrozen(thread.clone())).await;

    let traces = traces_until(&mut client, |t| t.len() == 1 && t[0].snapshots.len() == 1).await;
    let t = &traces[0];
    assert_eq!(t.trace_id, T);
    assert_eq!(t.threads.len(), 1);
    assert_eq!(t.threads[0].node, "node-1");
    assert!(t.threads[0].agent_connected);
    assert_eq!(t.threads[0].thread.as_ref(), Some(&thread));
    assert_eq!(t.snapshots[0].breakpoint_id, bp.id);
    assert_eq!(
        t.snapshots[0].location.as_ref().unwrap().function,
        "orders::process_order"
    );

    // Resume: the agent is asked, lets the thread go and says so.
    let mut resuming = controller.client().await;
    let resume = tokio::spawn(async move {
        resuming
            .resume_trace(v1::ResumeTraceRequest {
                trace_id: T.to_uppercase(),
            })
            .await
    });
    let Down::ResumeTrace(ask) = agent.next_request().await else {
        panic!("expected ResumeTrace");
    };
    assert_eq!(ask.trace_id, T);
    let release = released(thread.clone());
    agent
        .send(Up::ResumeResult(v1::ResumeResult {
            request_id: ask.request_id,
            released: vec![release.clone()],
            last_release: None,
            held: None,
        }))
        .await;
    agent.send(Up::TraceReleased(release.clone())).await;
    let answer = resume.await.unwrap().unwrap().into_inner();
    assert_eq!(answer.trace_id, T);
    assert_eq!(answer.released.len(), 1);
    assert_eq!(answer.released[0].node, "node-1");
    assert_eq!(answer.released[0].release.as_ref(), Some(&release));
    assert!(answer.unanswered.is_empty());
    assert!(list_traces(&mut client).await.is_empty());

    // Again: nothing to let go, and the answer says when it was.
    let mut resuming = controller.client().await;
    let resume = tokio::spawn(async move {
        resuming
            .resume_trace(v1::ResumeTraceRequest { trace_id: T.into() })
            .await
    });
    let Down::ResumeTrace(ask) = agent.next_request().await else {
        panic!("expected ResumeTrace");
    };
    agent
        .send(Up::ResumeResult(v1::ResumeResult {
            request_id: ask.request_id,
            released: vec![],
            last_release: Some(release.clone()),
            held: None,
        }))
        .await;
    let again = resume.await.unwrap().unwrap().into_inner();
    assert!(again.released.is_empty());
    let last = again.last_release.unwrap();
    assert_eq!(
        last.release.unwrap().reason,
        i32::from(v1::ReleaseReason::Resumed)
    );

    let view = client
        .get_trace(v1::GetTraceRequest { trace_id: T.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(view.threads.is_empty());
    assert_eq!(view.snapshots.len(), 1);
    assert!(view.last_release.is_some());

    let err = client
        .eval_trace(v1::EvalTraceRequest {
            trace_id: T.into(),
            expr: "qty".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message()
            .starts_with(&format!("trace {T} is not frozen; it was released at ")),
        "{}",
        err.message()
    );
    assert!(err.message().contains("(resumed)"), "{}", err.message());
    controller.stop().await;
}

#[tokio::test]
async fn eval_goes_to_the_stopped_thread_and_agent_errors_reach_the_user_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let mut running = controller.agent("node-go").await;
    let mut stopped = controller.agent("node-rust").await;
    running.send(Up::TraceFrozen(frozen(T, 1, false))).await;
    traces_until(&mut client, |t| t.len() == 1).await;

    // Frozen, but only a running thread: nothing to read.
    let err = client
        .eval_trace(v1::EvalTraceRequest {
            trace_id: T.into(),
            expr: "qty".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("none of its threads is stopped")
            && err.message().contains("Go code: stops at the next syscall"),
        "{}",
        err.message()
    );

    stopped.send(Up::TraceFrozen(frozen(T, 2, true))).await;
    traces_until(&mut client, |t| t.len() == 1 && t[0].threads.len() == 2).await;
    for (expr, answer, expect) in [
        ("qty", v1::eval_result::Result::Json("12".into()), Ok("12")),
        (
            "order.nope",
            v1::eval_result::Result::Error("no field nope in struct order".into()),
            Err("no field nope in struct order"),
        ),
    ] {
        let mut c = controller.client().await;
        let call = tokio::spawn(async move {
            c.eval_trace(v1::EvalTraceRequest {
                trace_id: T.into(),
                expr: expr.into(),
            })
            .await
        });
        let Down::EvalTrace(ask) = stopped.next_request().await else {
            panic!("expected EvalTrace");
        };
        assert_eq!((ask.trace_id.as_str(), ask.expr.as_str()), (T, expr));
        stopped
            .send(Up::EvalResult(v1::EvalResult {
                request_id: ask.request_id,
                result: Some(answer),
            }))
            .await;
        match (call.await.unwrap(), expect) {
            (Ok(r), Ok(json)) => {
                let r = r.into_inner();
                assert_eq!(r.json, json);
                let held = r.thread.unwrap();
                assert_eq!(held.agent_id, "node-rust");
                assert_eq!(held.thread.unwrap().tid, 2);
            }
            (Err(status), Err(message)) => {
                assert_eq!(status.code(), Code::FailedPrecondition);
                assert_eq!(status.message(), message);
            }
            (got, want) => panic!("{expr}: got {got:?}, want {want:?}"),
        }
    }
    // The running agent was never asked (it was told to hold the trace, as every agent is).
    running
        .assert_none_within(Duration::from_millis(100), |m| {
            matches!(m, Down::EvalTrace(_))
        })
        .await;
    controller.stop().await;
}

#[tokio::test]
async fn unknown_and_invalid_traces_are_answered_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let never = "a3ce929d0e0e4736";

    // No agent: nothing to ask, and nothing was ever frozen.
    let r = client
        .resume_trace(v1::ResumeTraceRequest {
            trace_id: never.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.trace_id, "0000000000000000a3ce929d0e0e4736");
    assert!(r.released.is_empty() && r.last_release.is_none() && r.unanswered.is_empty());

    let err = client
        .eval_trace(v1::EvalTraceRequest {
            trace_id: never.into(),
            expr: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message()
            .starts_with("trace 0000000000000000a3ce929d0e0e4736 was never frozen"),
        "{}",
        err.message()
    );
    let err = client
        .get_trace(v1::GetTraceRequest {
            trace_id: never.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    for bad in ["xyz", "00000000000000000000000000000000"] {
        let err = client
            .resume_trace(v1::ResumeTraceRequest {
                trace_id: bad.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
    }
    let mut spec = spec_at("orders.rs:39");
    spec.freeze_timeout_seconds = Some(30);
    let err = client.set_breakpoint(spec).await.unwrap_err();
    assert!(
        err.message().contains("--freeze-timeout needs --freeze"),
        "{}",
        err.message()
    );
    controller.stop().await;
}

#[tokio::test]
async fn a_reconnecting_agent_reports_its_frozen_threads_again() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let agent = controller.agent("node-1").await;
    agent.send(Up::TraceFrozen(frozen(T, 7, true))).await;
    traces_until(&mut client, |t| t.len() == 1).await;

    drop(agent);
    let traces = traces_until(&mut client, |t| {
        t.len() == 1 && !t[0].threads[0].agent_connected
    })
    .await;
    assert_eq!(traces[0].threads[0].thread.as_ref().unwrap().tid, 7);

    // A new session starts from what the agent says now: here, nothing frozen.
    let _agent = controller.agent("node-1").await;
    traces_until(&mut client, |t| t.is_empty()).await;
    controller.stop().await;
}
