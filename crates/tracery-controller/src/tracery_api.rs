//! The `Tracery` service: what `tracery-ctl` calls.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracery_proto::v1::{self, tracery_server::Tracery};
use tracery_store::{BreakpointId, SnapshotId};

use crate::audit;
use crate::auth::{Caller, Verb};
use crate::breakpoints;
use crate::registry::{store_status, Registry};
use crate::snapshot_body;
use crate::trace_api;

/// How long a call to a standalone controller waits for its embedded agent to connect.
const LOCAL_AGENT_WAIT: Duration = Duration::from_secs(30);
/// `ListSnapshots` page size when the request says 0, and the largest it accepts.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// Snapshots buffered per watcher between the broadcast and its gRPC stream.
const WATCH_STREAM_BUFFER: usize = 64;

pub(crate) struct TraceryApi {
    registry: Arc<Registry>,
}

impl TraceryApi {
    pub fn new(registry: Arc<Registry>) -> Self {
        TraceryApi { registry }
    }
}

#[tonic::async_trait]
impl Tracery for TraceryApi {
    async fn set_breakpoint(
        &self,
        request: Request<v1::BreakpointSpec>,
    ) -> Result<Response<v1::SetBreakpointResponse>, Status> {
        let (caller, peer) = self.authenticate(&request).await;
        let spec = request.into_inner();
        let namespace = audit::spec_namespace(&self.registry, &spec);
        let action = if spec.freeze { "freeze" } else { "set" };
        let mut target = audit::describe_spec(&spec);
        let result = async {
            let caller = caller.as_ref().map_err(Clone::clone)?;
            self.authorize(caller, Verb::Create, &namespace).await?;
            if spec.freeze {
                self.authorize(caller, Verb::Freeze, &namespace).await?;
            }
            self.ready().await?;
            let set = breakpoints::set(&self.registry, spec).await?;
            if let (Some(cluster), Some(bp)) = (self.registry.cluster(), &set.breakpoint) {
                // `kubectl get breakpoints` shows what tracery-ctl set, as the reverse holds.
                cluster.mirror(bp).await;
            }
            Ok(set)
        }
        .await;
        if let Some(bp) = result.as_ref().ok().and_then(|s| s.breakpoint.as_ref()) {
            target = format!("breakpoint {}: {target}", bp.id);
        }
        let who = caller.as_ref().map_err(|_| peer.as_str());
        audit::record(&self.registry, who, action, &target, &namespace, &result).await;
        result.map(Response::new)
    }

    async fn list_breakpoints(
        &self,
        request: Request<v1::ListBreakpointsRequest>,
    ) -> Result<Response<v1::ListBreakpointsResponse>, Status> {
        self.reader(&request, Verb::List).await?;
        let breakpoints = self.registry.live_breakpoints_with_counts().await?;
        Ok(Response::new(v1::ListBreakpointsResponse { breakpoints }))
    }

    async fn delete_breakpoint(
        &self,
        request: Request<v1::DeleteBreakpointRequest>,
    ) -> Result<Response<v1::DeleteBreakpointResponse>, Status> {
        let (caller, peer) = self.authenticate(&request).await;
        let id = request.into_inner().id;
        let namespace = audit::breakpoint_namespace(&self.registry, id).await;
        let result = async {
            let caller = caller.as_ref().map_err(Clone::clone)?;
            self.authorize(caller, Verb::Delete, &namespace).await?;
            self.ready().await?;
            if !breakpoints::delete(&self.registry, id).await? {
                return Err(Status::not_found(format!(
                    "no breakpoint {id}; `tracery-ctl breakpoint list` shows the live ones"
                )));
            }
            if let Some(cluster) = self.registry.cluster() {
                cluster.unmirror(id).await;
            }
            Ok(v1::DeleteBreakpointResponse {})
        }
        .await;
        let who = caller.as_ref().map_err(|_| peer.as_str());
        let target = format!("breakpoint {id}");
        audit::record(&self.registry, who, "delete", &target, &namespace, &result).await;
        result.map(Response::new)
    }

    async fn list_snapshots(
        &self,
        request: Request<v1::ListSnapshotsRequest>,
    ) -> Result<Response<v1::ListSnapshotsResponse>, Status> {
        self.reader(&request, Verb::List).await?;
        let request = request.into_inner();
        let breakpoint = request
            .filter
            .and_then(|f| f.breakpoint_id)
            .map(|id| i64::try_from(id).map(BreakpointId))
            .transpose()
            .map_err(|_| Status::invalid_argument("filter.breakpoint_id is out of range"))?;
        let after = if request.page_token.is_empty() {
            None
        } else {
            Some(SnapshotId(request.page_token.parse().map_err(|_| {
                Status::invalid_argument(format!(
                    "page token {:?} is not one this controller gave out; start again without it",
                    request.page_token
                ))
            })?))
        };
        let limit = match request.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        // One more than asked tells whether another page follows.
        let mut page = self
            .registry
            .store
            .list_snapshots(breakpoint, after, limit + 1)
            .await
            .map_err(store_status)?;
        let more = page.len() > limit as usize;
        page.truncate(limit as usize);
        let next_page_token = match page.last() {
            Some(last) if more => last.id.to_string(),
            _ => String::new(),
        };
        let mut snapshots = Vec::with_capacity(page.len());
        for summary in &page {
            snapshots.push(self.load_snapshot(summary.id).await?);
        }
        Ok(Response::new(v1::ListSnapshotsResponse {
            snapshots,
            next_page_token,
        }))
    }

    async fn get_snapshot(
        &self,
        request: Request<v1::GetSnapshotRequest>,
    ) -> Result<Response<v1::Snapshot>, Status> {
        self.reader(&request, Verb::Get).await?;
        let id = request.into_inner().id;
        let raw = i64::try_from(id).map_err(|_| {
            Status::not_found(format!(
                "no snapshot {id}; `tracery-ctl snapshot list` shows them"
            ))
        })?;
        Ok(Response::new(self.load_snapshot(SnapshotId(raw)).await?))
    }

    type WatchSnapshotsStream = ReceiverStream<Result<v1::Snapshot, Status>>;

    async fn watch_snapshots(
        &self,
        request: Request<v1::WatchSnapshotsRequest>,
    ) -> Result<Response<Self::WatchSnapshotsStream>, Status> {
        self.reader(&request, Verb::List).await?;
        let only = request.into_inner().filter.and_then(|f| f.breakpoint_id);
        let mut snapshots = self.registry.watch_snapshots();
        let mut stop = self.registry.stop.clone();
        let (tx, rx) = mpsc::channel(WATCH_STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => break,
                    _ = tx.closed() => break,
                    next = snapshots.recv() => next,
                };
                match next {
                    Ok(snapshot) => {
                        if only.is_some_and(|id| id != snapshot.breakpoint_id) {
                            continue;
                        }
                        if tx.send(Ok(snapshot)).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        // Never silent: the watcher learns how many it missed.
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "this watch fell behind and missed {missed} snapshots; they are \
                                 stored: `tracery-ctl snapshot list` shows them, then watch again"
                            ))))
                            .await;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        self.reader(&request, Verb::List).await?;
        let live = self.registry.live_breakpoints_with_counts().await?;
        let mut breakpoints = Vec::with_capacity(live.len());
        for bp in live {
            breakpoints.push(v1::BreakpointStatus {
                breakpoint_id: bp.id,
                hits: bp.hits,
                drops: bp.drops,
                problems: self.registry.problems(bp.id),
            });
        }
        let databases = self
            .registry
            .captures
            .configs()
            .iter()
            .map(|d| v1::DatabaseStatus {
                name: d.name.clone(),
                kind: d.kind().as_str().to_owned(),
                url: d.url.redacted(),
            })
            .collect();
        Ok(Response::new(v1::StatusResponse {
            agents: self.registry.agent_statuses(),
            breakpoints,
            databases,
            export: self.registry.export.status(),
        }))
    }

    async fn list_traces(
        &self,
        request: Request<v1::ListTracesRequest>,
    ) -> Result<Response<v1::ListTracesResponse>, Status> {
        self.reader(&request, Verb::List).await?;
        Ok(Response::new(trace_api::list(&self.registry).await?))
    }

    async fn get_trace(
        &self,
        request: Request<v1::GetTraceRequest>,
    ) -> Result<Response<v1::Trace>, Status> {
        self.reader(&request, Verb::Get).await?;
        let id = request.into_inner().trace_id;
        Ok(Response::new(trace_api::get(&self.registry, &id).await?))
    }

    async fn resume_trace(
        &self,
        request: Request<v1::ResumeTraceRequest>,
    ) -> Result<Response<v1::ResumeTraceResponse>, Status> {
        let (caller, peer) = self.authenticate(&request).await;
        let id = request.into_inner().trace_id;
        let (namespaces, result) = self
            .on_trace(
                &caller,
                &id,
                Verb::Freeze,
                trace_api::resume(&self.registry, &id),
            )
            .await;
        let who = caller.as_ref().map_err(|_| peer.as_str());
        let target = format!("trace {id}");
        audit::record(&self.registry, who, "resume", &target, &namespaces, &result).await;
        result.map(Response::new)
    }

    async fn eval_trace(
        &self,
        request: Request<v1::EvalTraceRequest>,
    ) -> Result<Response<v1::EvalTraceResponse>, Status> {
        let (caller, peer) = self.authenticate(&request).await;
        let r = request.into_inner();
        let eval = trace_api::eval(&self.registry, &r.trace_id, &r.expr);
        let (namespaces, result) = self.on_trace(&caller, &r.trace_id, Verb::Eval, eval).await;
        let who = caller.as_ref().map_err(|_| peer.as_str());
        let target = format!("trace {}: {}", r.trace_id, r.expr);
        audit::record(&self.registry, who, "eval", &target, &namespaces, &result).await;
        result.map(Response::new)
    }

    async fn list_audit(
        &self,
        request: Request<v1::ListAuditRequest>,
    ) -> Result<Response<v1::ListAuditResponse>, Status> {
        // The log names every namespace: reading it is a cluster-wide `list`.
        self.reader(&request, Verb::List).await?;
        let list = audit::list(&self.registry, request.into_inner()).await?;
        Ok(Response::new(list))
    }

    async fn query(
        &self,
        request: Request<v1::QueryRequest>,
    ) -> Result<Response<v1::QueryResponse>, Status> {
        // The views hold every namespace's snapshots: a cluster-wide `list`, as the audit log.
        self.reader(&request, Verb::List).await?;
        let r = request.into_inner();
        Ok(Response::new(
            crate::causal::query(&self.registry, &r.sql, r.limit).await?,
        ))
    }
}

impl TraceryApi {
    /// The caller, or why not; and the peer address, for the audit log either way.
    async fn authenticate<T>(&self, request: &Request<T>) -> (Result<Caller, Status>, String) {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        (self.registry.opts.access.authenticate(request).await, peer)
    }

    async fn authorize(&self, caller: &Caller, verb: Verb, namespace: &str) -> Result<(), Status> {
        self.registry
            .opts
            .access
            .authorize(caller, verb, namespace)
            .await
    }

    /// Authenticates a call that only reads, and checks `verb` in every namespace: its
    /// answer can span them all.
    async fn reader<T>(&self, request: &Request<T>, verb: Verb) -> Result<Caller, Status> {
        let caller = self.registry.opts.access.authenticate(request).await?;
        self.authorize(&caller, verb, "").await?;
        self.ready().await?;
        Ok(caller)
    }

    /// Runs `action` on trace `id` when the caller may `verb` in each namespace the
    /// trace's breakpoints are in (cluster-wide when none is known); returns those
    /// namespaces, comma-separated, for the audit log.
    async fn on_trace<T>(
        &self,
        caller: &Result<Caller, Status>,
        id: &str,
        verb: Verb,
        action: impl std::future::Future<Output = Result<T, Status>>,
    ) -> (String, Result<T, Status>) {
        let namespaces = audit::trace_namespaces(&self.registry, id).await;
        let joined = namespaces.iter().cloned().collect::<Vec<_>>().join(",");
        let result = async {
            let caller = caller.as_ref().map_err(Clone::clone)?;
            if namespaces.is_empty() {
                self.authorize(caller, verb, "").await?;
            }
            for ns in &namespaces {
                self.authorize(caller, verb, ns).await?;
            }
            self.ready().await?;
            action.await
        }
        .await;
        (joined, result)
    }

    /// Waits for the embedded agent of a standalone controller: before it is connected,
    /// a breakpoint would be stored without any agent trying it, and `set` could not
    /// report that the location has no code.
    async fn ready(&self) -> Result<(), Status> {
        let Some(agent) = &self.registry.opts.local_agent else {
            return Ok(());
        };
        if self.registry.wait_connected(agent, LOCAL_AGENT_WAIT).await {
            return Ok(());
        }
        Err(Status::unavailable(format!(
            "the agent of this standalone Tracery has not connected within {}s: it is still \
             loading, or it failed (see the standalone's log); try again in a moment",
            LOCAL_AGENT_WAIT.as_secs()
        )))
    }

    /// A stored snapshot, exactly as the agent sent it, with its store id.
    async fn load_snapshot(&self, id: SnapshotId) -> Result<v1::Snapshot, Status> {
        let record = self
            .registry
            .store
            .get_snapshot(id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no snapshot {id}; `tracery-ctl snapshot list` shows them"
                ))
            })?;
        let mut snapshot = snapshot_body::decode(&record.body).map_err(|e| {
            Status::data_loss(format!(
                "snapshot {id} is stored in a form this controller cannot read ({}); \
                 was it written by another Tracery version?",
                crate::registry::error_chain(&e)
            ))
        })?;
        snapshot.id = u64::try_from(id.0).unwrap_or_default();
        Ok(snapshot)
    }
}
