//! `GET /api/v1/traces/{id}`: everything known about one trace, as the trace page draws it.
//!
//! The events, edges, critical path and service graph are the causal graph `GetTrace`
//! returns (`trace view --output json` shows the same). A trace with no message events
//! (agents that do not report them, or a controller without the graph) still shows what
//! the controller knows: each hit and each held outbound message, with no edges: order
//! between lanes is never guessed from clocks.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tonic::Status;
use tracery_proto::v1::{self, tracery_server::Tracery};

use super::auth::Presented;
use super::{html, json as j, Web};

/// The trace page's data: what is frozen, its snapshots, and its events in causal order.
pub(super) async fn trace(web: &Web, who: &Presented, id: &str) -> Result<Value, Status> {
    let t = web
        .api
        .get_trace(who.request(v1::GetTraceRequest {
            trace_id: id.to_owned(),
        }))
        .await?
        .into_inner();
    let mut out = j::trace_summary(&t);
    let graph = if t.events.is_empty() {
        known_events(web, &t)
    } else {
        causal(&t)
    };
    for key in ["events", "edges", "critical_path", "services", "source"] {
        out[key] = graph[key].clone();
    }
    Ok(out)
}

/// The causal graph as `GetTrace` built it.
fn causal(t: &v1::Trace) -> Value {
    let events: Vec<Value> = t
        .events
        .iter()
        .map(|e| {
            let mut o = json!({
                "id": e.id, "service": e.service, "process": e.process, "node": e.node,
                "kind": e.kind, "time_unix_nano": e.time_unix_nano, "lamport": e.lamport,
                "vclock": e.vclock, "held": e.held, "thread": e.thread,
            });
            if !e.conn.is_empty() {
                o["conn"] = json!(e.conn);
                o["bytes"] = json!(e.bytes);
            }
            if e.snapshot_id > 0 {
                o["snapshot_id"] = json!(e.snapshot_id);
                if let Some(s) = t
                    .snapshots
                    .iter()
                    .find(|s| i64::try_from(s.id) == Ok(e.snapshot_id))
                {
                    let loc = s.location.clone().unwrap_or_default();
                    o["label"] = json!(format!("{}:{}", html::base_name(&loc.file), loc.line));
                    o["function"] = json!(loc.function);
                }
            }
            o
        })
        .collect();
    let edges: Vec<Value> = t
        .edges
        .iter()
        .map(|e| json!({"from": e.from, "to": e.to}))
        .collect();
    let services: Vec<Value> = t
        .services
        .iter()
        .map(|s| json!({"from": s.from, "to": s.to, "count": s.count}))
        .collect();
    json!({
        "events": events, "edges": edges, "critical_path": t.critical_path,
        "services": services, "source": "causal",
    })
}

/// One event before numbering: lane, time and what it says.
struct Pending {
    lane: String,
    time: u64,
    body: Value,
}

/// Hits and held messages of `t`, numbered in each lane's order (a Lamport clock with no
/// messages between lanes), with no edges.
fn known_events(web: &Web, t: &v1::Trace) -> Value {
    let lane_of = |agent: Option<&str>, pid: u32| -> (String, String) {
        let agents = match agent {
            Some(a) => vec![a.to_owned()],
            None => web.registry.connected_agents(),
        };
        let node = agents
            .first()
            .map(|a| web.registry.node_of(a))
            .unwrap_or_default();
        let exe = agents
            .iter()
            .find_map(|a| web.registry.exe_of(a, pid))
            .map(|e| html::base_name(&e).to_owned());
        (exe.unwrap_or_else(|| format!("pid {pid}")), node)
    };
    let mut pending = Vec::new();
    for s in &t.snapshots {
        let (service, node) = lane_of(None, s.pid);
        let loc = s.location.clone().unwrap_or_default();
        let time = j::unix_nanos(s.time);
        let process = format!("{node}/{}", s.pid);
        pending.push(Pending {
            lane: process.clone(),
            time,
            body: json!({
                "service": service, "process": process, "node": node,
                "kind": "hit", "time_unix_nano": time, "held": false, "thread": s.tid,
                "snapshot_id": s.id, "breakpoint_id": s.breakpoint_id,
                "label": format!("{}:{}", html::base_name(&loc.file), loc.line),
                "function": loc.function,
            }),
        });
    }
    for h in &t.messages {
        let Some(m) = h.message.as_ref().filter(|m| !m.behind) else {
            continue;
        };
        let (service, _) = lane_of(Some(&h.agent_id), m.pid);
        let time = j::unix_nanos(m.at);
        let process = format!("{}/{}", h.node, m.pid);
        pending.push(Pending {
            lane: process.clone(),
            time,
            body: json!({
                "service": service, "process": process, "node": h.node,
                "kind": "send", "time_unix_nano": time, "held": true, "thread": m.tid,
                "conn": format!("{}->{}", m.local, m.peer), "bytes": m.bytes,
                "label": m.first_line,
            }),
        });
    }
    // Within a lane, its own clock orders its events: that much is causal.
    pending.sort_by_key(|p| p.time);
    let mut counters: BTreeMap<String, u64> = BTreeMap::new();
    let events: Vec<Value> = pending
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let n = counters.entry(p.lane.clone()).or_default();
            *n += 1;
            let mut body = p.body;
            body["id"] = json!(format!("known-{i}"));
            body["lamport"] = json!(*n);
            body["vclock"] = json!({ p.lane: *n });
            body
        })
        .collect();
    json!({
        "events": events, "edges": [], "critical_path": [], "services": [],
        "source": "controller",
    })
}
