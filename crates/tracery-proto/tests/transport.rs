//! Proves generation and transport: a real tonic server on a loopback port, called with
//! the generated client.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::{Request, Response, Status, Streaming};
use tracery_model::{Value, VarKind, Variable};
use tracery_proto::v1::{
    self,
    agent_link_client::AgentLinkClient,
    agent_link_server::{AgentLink, AgentLinkServer},
    agent_message,
    breakpoint_spec::Target,
    controller_message,
    tracery_client::TraceryClient,
    tracery_server::{Tracery, TraceryServer},
};

/// Serves `router` on a fresh loopback port until the returned sender is used.
async fn serve(
    router: Router,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(router.serve_with_incoming_shutdown(
        TcpIncoming::from(listener),
        async {
            stopped.await.ok();
        },
    ));
    (addr, stop, server)
}

/// A controller that knows one breakpoint and implements nothing else.
struct OneBreakpoint;

fn the_breakpoint() -> v1::Breakpoint {
    v1::Breakpoint {
        id: 7,
        spec: Some(v1::BreakpointSpec {
            target: Some(Target::Service("orders".into())),
            location: "orders.rs:42".into(),
            when: Some("order.qty > 10".into()),
            hit_limit: Some(100),
            expire_seconds: Some(3600),
            rate_per_second: Some(10),
            ..Default::default()
        }),
        created: Some(std::time::SystemTime::UNIX_EPOCH.into()),
        expires: None,
        hits: 3,
        drops: 1,
        capture_paths: Vec::new(),
    }
}

#[tonic::async_trait]
impl Tracery for OneBreakpoint {
    async fn set_breakpoint(
        &self,
        _: Request<v1::BreakpointSpec>,
    ) -> Result<Response<v1::SetBreakpointResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn list_breakpoints(
        &self,
        _: Request<v1::ListBreakpointsRequest>,
    ) -> Result<Response<v1::ListBreakpointsResponse>, Status> {
        Ok(Response::new(v1::ListBreakpointsResponse {
            breakpoints: vec![the_breakpoint()],
        }))
    }

    async fn delete_breakpoint(
        &self,
        _: Request<v1::DeleteBreakpointRequest>,
    ) -> Result<Response<v1::DeleteBreakpointResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn list_snapshots(
        &self,
        _: Request<v1::ListSnapshotsRequest>,
    ) -> Result<Response<v1::ListSnapshotsResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn get_snapshot(
        &self,
        _: Request<v1::GetSnapshotRequest>,
    ) -> Result<Response<v1::Snapshot>, Status> {
        Err(Status::unimplemented("test"))
    }

    type WatchSnapshotsStream = tonic::codegen::tokio_stream::Empty<Result<v1::Snapshot, Status>>;

    async fn watch_snapshots(
        &self,
        _: Request<v1::WatchSnapshotsRequest>,
    ) -> Result<Response<Self::WatchSnapshotsStream>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn status(
        &self,
        _: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn list_traces(
        &self,
        _: Request<v1::ListTracesRequest>,
    ) -> Result<Response<v1::ListTracesResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn get_trace(
        &self,
        _: Request<v1::GetTraceRequest>,
    ) -> Result<Response<v1::Trace>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn resume_trace(
        &self,
        _: Request<v1::ResumeTraceRequest>,
    ) -> Result<Response<v1::ResumeTraceResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn eval_trace(
        &self,
        _: Request<v1::EvalTraceRequest>,
    ) -> Result<Response<v1::EvalTraceResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn list_audit(
        &self,
        _: Request<v1::ListAuditRequest>,
    ) -> Result<Response<v1::ListAuditResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn query(
        &self,
        _: Request<v1::QueryRequest>,
    ) -> Result<Response<v1::QueryResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
}

#[tokio::test]
async fn list_breakpoints_over_a_real_connection() {
    let (addr, stop, server) =
        serve(tonic::transport::Server::builder().add_service(TraceryServer::new(OneBreakpoint)))
            .await;

    let mut client = TraceryClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let reply = client
        .list_breakpoints(v1::ListBreakpointsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.breakpoints, vec![the_breakpoint()]);

    // Unimplemented methods reach the client as a gRPC status, not a transport error.
    let err = client
        .get_snapshot(v1::GetSnapshotRequest { id: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A controller that arms breakpoint 7 on `Hello` and disarms it after one hit of `qty`.
struct ArmOnHello;

#[tonic::async_trait]
impl AgentLink for ArmOnHello {
    type SessionStream = ReceiverStream<Result<v1::ControllerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                let reply = match msg.message {
                    Some(agent_message::Message::Hello(_)) => {
                        controller_message::Message::Arm(v1::Arm {
                            breakpoint: Some(the_breakpoint()),
                        })
                    }
                    Some(agent_message::Message::Hit(hit)) => {
                        let snapshot = hit.snapshot.unwrap();
                        let var = Variable::try_from(snapshot.variables[0].clone()).unwrap();
                        if hit.sequence != 1 || var.value != Value::UInt(u128::MAX) {
                            return; // ends the stream: the client sees no Disarm.
                        }
                        controller_message::Message::Disarm(v1::Disarm {
                            breakpoint_id: snapshot.breakpoint_id,
                        })
                    }
                    _ => continue,
                };
                let reply = v1::ControllerMessage {
                    message: Some(reply),
                };
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tokio::test]
async fn agent_session_streams_both_ways() {
    let (addr, stop, server) =
        serve(tonic::transport::Server::builder().add_service(AgentLinkServer::new(ArmOnHello)))
            .await;
    let mut client = AgentLinkClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (up, up_rx) = mpsc::channel(4);
    let mut down = client
        .session(ReceiverStream::new(up_rx))
        .await
        .unwrap()
        .into_inner();

    let send = |m: agent_message::Message| v1::AgentMessage { message: Some(m) };
    up.send(send(agent_message::Message::Hello(v1::Hello {
        agent_id: "agent-1".into(),
        node: "node-a".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: "6.8.0".into(),
        kernel_features: vec!["ringbuf".into()],
        kubernetes_node: String::new(),
    })))
    .await
    .unwrap();
    let arm = down.message().await.unwrap().expect("an Arm");
    assert_eq!(
        arm.message,
        Some(controller_message::Message::Arm(v1::Arm {
            breakpoint: Some(the_breakpoint())
        }))
    );

    let snapshot = v1::Snapshot {
        breakpoint_id: 7,
        pid: 42,
        tid: 43,
        time: Some(std::time::SystemTime::now().into()),
        variables: vec![Variable {
            name: "qty".into(),
            kind: VarKind::Arg,
            type_name: "u128".into(),
            value: Value::UInt(u128::MAX),
            frame: None,
        }
        .into()],
        language: v1::Language::Rust.into(),
        databases: Vec::new(),
        ..Default::default()
    };
    up.send(send(agent_message::Message::Hit(v1::Hit {
        snapshot: Some(snapshot),
        sequence: 1,
    })))
    .await
    .unwrap();
    let disarm = down.message().await.unwrap().expect("a Disarm");
    assert_eq!(
        disarm.message,
        Some(controller_message::Message::Disarm(v1::Disarm {
            breakpoint_id: 7
        }))
    );

    // The agent hangs up; the controller's stream ends.
    drop(up);
    assert!(down.message().await.unwrap().is_none());
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
