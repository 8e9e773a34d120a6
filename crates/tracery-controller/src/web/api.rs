//! `/api/v1/`: breakpoints, snapshots and traces as JSON. Each handler calls the `Tracery`
//! service, so the answers and errors are the CLI's.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::Status;
use tracery_proto::v1::{self, breakpoint_spec::Target, tracery_server::Tracery};

use super::auth::Presented;
use super::{http_status, json as j, timeline, Web};

/// An API error: the gRPC status's message, with the HTTP status that matches its code.
pub(super) struct ApiError(pub Status);

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        ApiError(s)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = format!("{:?}", self.0.code());
        let body = json!({"error": self.0.message(), "code": code});
        (http_status(self.0.code()), Json(body)).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

pub(super) async fn list_breakpoints(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
) -> ApiResult {
    let list = web
        .api
        .list_breakpoints(who.request(v1::ListBreakpointsRequest {}))
        .await?
        .into_inner();
    let breakpoints: Vec<Value> = list
        .breakpoints
        .iter()
        .map(|b| j::breakpoint(b, &web.registry.problems(b.id)))
        .collect();
    Ok(Json(json!({ "breakpoints": breakpoints })))
}

/// The body of `POST /api/v1/breakpoints`: `tracery-ctl breakpoint set`'s flags as fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetBody {
    service: Option<String>,
    exe: Option<String>,
    pid: Option<u32>,
    selector: Option<BTreeMap<String, String>>,
    #[serde(alias = "at")]
    location: String,
    when: Option<String>,
    hits: Option<u32>,
    /// A duration: `30m`, `2h`.
    expire: Option<String>,
    /// Hits per second.
    rate: Option<u32>,
    trace_id: Option<String>,
    /// `NAME=VALUE`.
    header: Option<String>,
    #[serde(default)]
    freeze: bool,
    /// A duration: `60s`, `5m`.
    freeze_timeout: Option<String>,
    #[serde(default)]
    captures: Vec<String>,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    container: String,
}

fn duration(flag: &str, text: &str) -> Result<u64, Status> {
    humantime::parse_duration(text.trim())
        .map(|d| d.as_secs().max(1))
        .map_err(|e| {
            Status::invalid_argument(format!(
                "{flag}: {text:?} is not a duration like 60s or 5m: {e}"
            ))
        })
}

impl SetBody {
    /// The spec the CLI would send for the same flags, checked as the CLI checks them
    /// before sending (the controller checks the rest).
    fn into_spec(self) -> Result<v1::BreakpointSpec, Status> {
        let targets = [
            self.service.map(Target::Service),
            self.exe.map(Target::Exe),
            self.pid.map(Target::Pid),
            self.selector.map(|labels| {
                Target::Selector(v1::LabelSelector {
                    match_labels: labels.into_iter().collect(),
                })
            }),
        ];
        let mut given = targets.into_iter().flatten();
        let target = given.next();
        if given.next().is_some() {
            return Err(Status::invalid_argument(
                "give one target: service, exe, pid or selector",
            ));
        }
        if let Some(w) = &self.when {
            // The CLI's own check, so the message (with its caret) is the same.
            tracery_model::condition::parse(w)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        let header = self
            .header
            .as_deref()
            .map(tracery_proto::trace::parse_header)
            .transpose()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(v1::BreakpointSpec {
            target,
            location: self.location,
            when: self.when,
            hit_limit: self.hits,
            expire_seconds: self
                .expire
                .as_deref()
                .map(|e| duration("expire", e))
                .transpose()?,
            rate_per_second: self.rate,
            trace_id: self.trace_id,
            header,
            freeze: self.freeze,
            freeze_timeout_seconds: self
                .freeze_timeout
                .as_deref()
                .map(|e| duration("freeze_timeout", e))
                .transpose()?,
            captures: self.captures,
            namespace: self.namespace,
            container: self.container,
        })
    }
}

pub(super) async fn set_breakpoint(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
    body: Result<Json<SetBody>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(|e| {
        Status::invalid_argument(format!(
            "the body is not a breakpoint: {}; send JSON such as \
             {{\"service\": \"orders\", \"location\": \"orders.c:42\"}}",
            e.body_text()
        ))
    })?;
    let spec = body.into_spec()?;
    let set = web
        .api
        .set_breakpoint(who.request(spec))
        .await?
        .into_inner();
    Ok(Json(j::set_result(&set)))
}

pub(super) async fn delete_breakpoint(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
    Path(id): Path<String>,
) -> ApiResult {
    let id: u64 = id.parse().map_err(|_| {
        Status::invalid_argument(format!("{id:?} is not a breakpoint id; ids are numbers"))
    })?;
    web.api
        .delete_breakpoint(who.request(v1::DeleteBreakpointRequest { id }))
        .await?;
    Ok(Json(
        json!({ "deleted": id, "message": format!("deleted breakpoint {id}") }),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct SnapshotQuery {
    breakpoint: Option<u64>,
    limit: Option<u32>,
    page_token: Option<String>,
}

pub(super) async fn list_snapshots(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
    Query(q): Query<SnapshotQuery>,
) -> ApiResult {
    let list = web
        .api
        .list_snapshots(who.request(v1::ListSnapshotsRequest {
            filter: Some(v1::SnapshotFilter {
                breakpoint_id: q.breakpoint,
            }),
            limit: q.limit.unwrap_or(50),
            page_token: q.page_token.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    Ok(Json(json!({
        "snapshots": list.snapshots.iter().map(j::snapshot).collect::<Vec<_>>(),
        "next_page_token": (!list.next_page_token.is_empty()).then_some(list.next_page_token),
    })))
}

/// One snapshot from the `Tracery` service (pages use it too).
pub(super) async fn snapshot(web: &Web, who: &Presented, id: &str) -> Result<v1::Snapshot, Status> {
    let id: u64 = id.parse().map_err(|_| {
        Status::not_found(format!(
            "no snapshot {id:?}; `tracery-ctl snapshot list` shows them"
        ))
    })?;
    Ok(web
        .api
        .get_snapshot(who.request(v1::GetSnapshotRequest { id }))
        .await?
        .into_inner())
}

pub(super) async fn get_snapshot(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
    Path(id): Path<String>,
) -> ApiResult {
    let s = snapshot(&web, &who, &id).await?;
    Ok(Json(j::snapshot(&s)))
}

/// Frozen traces, and the traces of the latest snapshots ("recent").
pub(super) async fn traces(web: &Web, who: &Presented) -> Result<Value, Status> {
    let frozen = web
        .api
        .list_traces(who.request(v1::ListTracesRequest {}))
        .await?
        .into_inner()
        .traces;
    let latest = web
        .api
        .list_snapshots(who.request(v1::ListSnapshotsRequest {
            filter: None,
            limit: 200,
            page_token: String::new(),
        }))
        .await?
        .into_inner()
        .snapshots;
    // Newest first, one entry per trace, frozen ones left out (listed above).
    let mut recent: Vec<Value> = Vec::new();
    for s in &latest {
        let Some(trace) = s.trace_id.as_deref().filter(|t| !t.is_empty()) else {
            continue;
        };
        if frozen.iter().any(|f| f.trace_id == trace)
            || recent.iter().any(|r| r["trace_id"] == trace)
        {
            continue;
        }
        let loc = s.location.clone().unwrap_or_default();
        recent.push(json!({
            "trace_id": trace, "time": j::rfc3339(s.time), "last_snapshot": s.id,
            "function": loc.function, "file": loc.file, "line": loc.line, "pid": s.pid,
        }));
    }
    Ok(json!({
        "frozen": frozen.iter().map(j::trace_summary).collect::<Vec<_>>(),
        "recent": recent,
    }))
}

pub(super) async fn list_traces(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
) -> ApiResult {
    Ok(Json(traces(&web, &who).await?))
}

pub(super) async fn get_trace(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(Json(timeline::trace(&web, &who, &id).await?))
}

pub(super) async fn resume_trace(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
    Path(id): Path<String>,
) -> ApiResult {
    let r = web
        .api
        .resume_trace(who.request(v1::ResumeTraceRequest { trace_id: id }))
        .await?
        .into_inner();
    Ok(Json(j::resumed(&r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_target_and_the_cli_s_checks() {
        let body: SetBody =
            serde_json::from_value(json!({"pid": 42, "at": "orders.c:10", "expire": "10m"}))
                .unwrap();
        let spec = body.into_spec().unwrap();
        assert_eq!(spec.target, Some(Target::Pid(42)));
        assert_eq!(spec.location, "orders.c:10");
        assert_eq!(spec.expire_seconds, Some(600));

        let two: SetBody =
            serde_json::from_value(json!({"pid": 42, "service": "a", "location": "x"})).unwrap();
        assert!(two
            .into_spec()
            .unwrap_err()
            .message()
            .contains("one target"));

        let bad_when: SetBody =
            serde_json::from_value(json!({"pid": 1, "location": "x", "when": "a >"})).unwrap();
        let e = bad_when.into_spec().unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            e.message(),
            tracery_model::condition::parse("a >")
                .unwrap_err()
                .to_string()
        );

        let unknown = serde_json::from_value::<SetBody>(json!({"location": "x", "bogus": 1}));
        assert!(unknown.is_err());
    }
}
