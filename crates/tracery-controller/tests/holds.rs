//! Holding a frozen trace's messages on every node, over real gRPC: a freeze reported by
//! one agent makes every agent (and agents that connect later) hold the trace until its
//! deadline; held messages are listed with their node; a resume goes to every agent and
//! says what each let go; a hold past its deadline is resumed everywhere.

mod common;

use common::*;

const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn frozen(deadline: SystemTime) -> v1::FrozenThread {
    v1::FrozenThread {
        trace_id: T.into(),
        breakpoint_id: 1,
        snapshot_sequence: 1,
        pid: 4242,
        tid: 4243,
        location: "orders::process_order (orders.rs:39)".into(),
        frozen_at: Some(SystemTime::now().into()),
        deadline: Some(deadline.into()),
        suspended: true,
        not_suspended_reason: String::new(),
    }
}

fn held(socket: u64, behind: bool, first_line: &str) -> v1::HeldMessage {
    v1::HeldMessage {
        trace_id: T.into(),
        pid: 5151,
        tid: 5152,
        socket,
        local: "10.0.0.2:41234".into(),
        peer: "10.0.0.3:5432".into(),
        bytes: 57,
        first_line: first_line.into(),
        decoded: None,
        behind,
        shared: true,
        at: Some(SystemTime::now().into()),
    }
}

fn hold_release(messages: u64, bytes: u64) -> v1::HoldRelease {
    v1::HoldRelease {
        trace_id: T.into(),
        messages,
        bytes,
        dropped_bytes: 0,
        reason: v1::ReleaseReason::Resumed.into(),
        at: Some(SystemTime::now().into()),
    }
}

/// A deadline as the wire carries it, for comparing with what an agent was sent.
fn stamp(t: SystemTime) -> Option<prost_types::Timestamp> {
    Some(t.into())
}

impl Agent {
    async fn next_hold(&mut self) -> v1::HoldTrace {
        self.next_matching(|m| match m {
            Down::HoldTrace(h) => Some(h),
            _ => None,
        })
        .await
    }

    async fn next_resume(&mut self) -> v1::ResumeTrace {
        self.next_matching(|m| match m {
            Down::ResumeTrace(r) => Some(r),
            _ => None,
        })
        .await
    }

    /// Answers a `ResumeTrace` with these releases.
    async fn answer_resume(
        &self,
        ask: &v1::ResumeTrace,
        released: Vec<v1::Release>,
        held: Option<v1::HoldRelease>,
    ) {
        self.send(Up::ResumeResult(v1::ResumeResult {
            request_id: ask.request_id,
            released,
            last_release: None,
            held,
        }))
        .await;
    }
}

async fn traces_until(
    client: &mut TraceryClient<Channel>,
    done: impl Fn(&[v1::Trace]) -> bool,
) -> Vec<v1::Trace> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let traces = client
            .list_traces(v1::ListTracesRequest {})
            .await
            .unwrap()
            .into_inner()
            .traces;
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

fn resume_call(
    client: TraceryClient<Channel>,
) -> JoinHandle<Result<tonic::Response<v1::ResumeTraceResponse>, tonic::Status>> {
    let mut client = client;
    tokio::spawn(async move {
        client
            .resume_trace(v1::ResumeTraceRequest { trace_id: T.into() })
            .await
    })
}

#[tokio::test]
async fn a_freeze_is_held_on_every_node_and_a_resume_lets_go_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let mut a1 = controller.agent_on("agent-1", "node-1").await;
    let mut a2 = controller.agent_on("agent-2", "node-2").await;

    // T freezes on node 1: both nodes hold it until the thread's deadline.
    let deadline = SystemTime::now() + Duration::from_secs(60);
    let thread = frozen(deadline);
    a1.send(Up::TraceFrozen(thread.clone())).await;
    for agent in [&mut a1, &mut a2] {
        let hold = agent.next_hold().await;
        assert_eq!(hold.trace_id, T);
        assert_eq!(hold.deadline, stamp(deadline));
    }

    // Node 2 holds a query of T and, behind it on the same pooled connection, another's.
    let ours = held(1234, false, "Q SELECT * FROM orders WHERE id = $1");
    let theirs = held(1234, true, "Q SELECT 1");
    a2.send(Up::MessageHeld(ours.clone())).await;
    a2.send(Up::MessageHeld(theirs.clone())).await;
    let traces = traces_until(&mut client, |t| t.len() == 1 && t[0].messages.len() == 2).await;
    let t = &traces[0];
    assert_eq!(t.threads.len(), 1);
    assert_eq!(t.threads[0].node, "node-1");
    assert_eq!(t.hold_deadline, stamp(deadline));
    let expect = |message: &v1::HeldMessage| v1::NodeHeldMessage {
        agent_id: "agent-2".into(),
        node: "node-2".into(),
        agent_connected: true,
        message: Some(message.clone()),
    };
    assert_eq!(t.messages, vec![expect(&ours), expect(&theirs)]);
    let view = client
        .get_trace(v1::GetTraceRequest { trace_id: T.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.messages, t.messages);
    assert_eq!(view.hold_deadline, stamp(deadline));

    // A node that joins while T is frozen holds it too.
    let mut a3 = controller.agent_on("agent-3", "node-3").await;
    let hold = a3.next_hold().await;
    assert_eq!(
        (hold.trace_id.as_str(), hold.deadline),
        (T, stamp(deadline))
    );

    // Resume asks every node, also those without a frozen thread, and sums up per node.
    let resume = resume_call(controller.client().await);
    let release = v1::Release {
        thread: Some(thread.clone()),
        reason: v1::ReleaseReason::Resumed.into(),
        at: Some(SystemTime::now().into()),
    };
    let ask = a1.next_resume().await;
    assert_eq!(ask.trace_id, T);
    a1.answer_resume(&ask, vec![release.clone()], None).await;
    let sent = hold_release(2, 114);
    let ask = a2.next_resume().await;
    a2.answer_resume(&ask, vec![], Some(sent.clone())).await;
    let ask = a3.next_resume().await;
    // Node 3 held nothing: its agent says so with an empty hold release.
    a3.answer_resume(&ask, vec![], Some(hold_release(0, 0)))
        .await;
    let answer = resume.await.unwrap().unwrap().into_inner();
    assert!(answer.unanswered.is_empty(), "{:?}", answer.unanswered);
    assert_eq!(answer.released.len(), 1);
    assert_eq!(answer.released[0].node, "node-1");
    assert_eq!(answer.released[0].release.as_ref(), Some(&release));
    assert_eq!(
        answer.held_released,
        vec![v1::NodeHoldRelease {
            agent_id: "agent-2".into(),
            node: "node-2".into(),
            release: Some(sent),
        }]
    );
    assert!(answer.last_release.is_none());
    // The resume results alone let everything go, before the agents' own reports.
    traces_until(&mut client, |t| t.is_empty()).await;

    // Again: every node is asked, nothing is let go, and the answer says when it was.
    let resume = resume_call(controller.client().await);
    for agent in [&mut a1, &mut a2, &mut a3] {
        let ask = agent.next_resume().await;
        agent.answer_resume(&ask, vec![], None).await;
    }
    let again = resume.await.unwrap().unwrap().into_inner();
    assert!(again.released.is_empty() && again.held_released.is_empty());
    let last = again.last_release.expect("the earlier release is named");
    assert_eq!(last.node, "node-1");
    assert_eq!(
        last.release.unwrap().reason,
        i32::from(v1::ReleaseReason::Resumed)
    );

    // Resumed: a node joining now is not told to hold T.
    let mut a4 = controller.agent_on("agent-4", "node-4").await;
    a4.assert_none_within(Duration::from_millis(300), |m| {
        matches!(m, Down::HoldTrace(_))
    })
    .await;
    controller.stop().await;
}

#[tokio::test]
async fn held_messages_keep_a_trace_frozen_until_their_node_lets_them_go() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let mut a1 = controller.agent_on("agent-1", "node-1").await;
    let a2 = controller.agent_on("agent-2", "node-2").await;
    let thread = frozen(SystemTime::now() + Duration::from_secs(60));
    a1.send(Up::TraceFrozen(thread.clone())).await;
    a1.next_hold().await;
    a2.send(Up::MessageHeld(held(77, false, "POST /pay HTTP/1.1")))
        .await;
    traces_until(&mut client, |t| t.len() == 1 && t[0].messages.len() == 1).await;

    // The frozen thread's process exits: its messages elsewhere are still held.
    a1.send(Up::TraceReleased(v1::Release {
        thread: Some(thread),
        reason: v1::ReleaseReason::ProcessExited.into(),
        at: Some(SystemTime::now().into()),
    }))
    .await;
    let traces = traces_until(&mut client, |t| t.len() == 1 && t[0].threads.is_empty()).await;
    assert_eq!(traces[0].messages.len(), 1);
    assert_eq!(traces[0].messages[0].node, "node-2");
    let err = client
        .eval_trace(v1::EvalTraceRequest {
            trace_id: T.into(),
            expr: "qty".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("has 1 held message(s) but no frozen thread"),
        "{}",
        err.message()
    );

    // A release from another node does not clear node 2's messages; node 2's own does.
    a1.send(Up::HoldReleased(hold_release(0, 0))).await;
    a2.send(Up::HoldReleased(hold_release(1, 57))).await;
    traces_until(&mut client, |t| t.is_empty()).await;
    let view = client
        .get_trace(v1::GetTraceRequest { trace_id: T.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(view.threads.is_empty() && view.messages.is_empty());
    controller.stop().await;
}

#[tokio::test]
async fn a_hold_past_its_deadline_is_resumed_on_every_agent() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let mut a1 = controller.agent_on("agent-1", "node-1").await;
    let mut a2 = controller.agent_on("agent-2", "node-2").await;
    a2.send(Up::MessageHeld(held(77, false, "POST /pay HTTP/1.1")))
        .await;
    traces_until(&mut client, |t| t.len() == 1).await;
    // Past its deadline and the controller's grace: the agents' releases were lost.
    let thread = frozen(SystemTime::now() - Duration::from_secs(10));
    a1.send(Up::TraceFrozen(thread)).await;
    for agent in [&mut a1, &mut a2] {
        let ask = agent.next_resume().await;
        assert_eq!(ask.trace_id, T);
    }
    traces_until(&mut client, |t| t.is_empty()).await;
    let view = client
        .get_trace(v1::GetTraceRequest { trace_id: T.into() })
        .await
        .unwrap()
        .into_inner();
    let last = view.last_release.unwrap().release.unwrap();
    assert_eq!(last.reason, i32::from(v1::ReleaseReason::Deadline));
    controller.stop().await;
}
