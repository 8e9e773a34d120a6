//! The causal graph of one trace: its breakpoint hits and the sends and receives agents
//! reported, from every node, ordered by happens-before rather than by clocks.
//!
//! - Lanes are processes (`node/pid`); within a lane its own clock orders events.
//! - Each send is joined to its receive by connection 4-tuple seen from both ends and by
//!   byte range (TCP sequence numbers, the same at both ends), never by time
//!   ([`matching`]).
//! - From those edges: a Lamport timestamp and a vector clock per event, the critical path
//!   and the service graph ([`order`]).
//!
//! The web view and `trace view --output json` show the same graph (`GetTrace`).

mod matching;
mod order;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use tonic::Status;
use tracery_proto::v1;
use tracery_store::{EventRef, MessageRecord, SnapshotRecord};

use crate::registry::{store_status, Registry};

/// Most message events of one trace read from the store.
const TRACE_MESSAGES: u32 = 20_000;
/// Most snapshots of one trace read from the store.
const TRACE_SNAPSHOTS: u32 = 1_000;

/// One event: a hit, a send or a receive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Event {
    /// `hit-<snapshot id>` or `msg-<message id>`.
    pub id: String,
    /// The process's name (its executable's base name).
    pub service: String,
    /// The lane: `node/pid`.
    pub process: String,
    pub node: String,
    /// `hit`, `send` or `recv`.
    pub kind: &'static str,
    /// By the reporting node's clock.
    pub time_unix_nano: i64,
    pub lamport: u64,
    /// Lane -> events of that lane this one follows (itself included).
    pub vclock: BTreeMap<String, u64>,
    pub held: bool,
    /// `src_ip:port->dst_ip:port` as the bytes went (the same for a send and its receive);
    /// empty for a hit.
    pub conn: String,
    pub bytes: u64,
    /// `tid`, or `tid/0x<goroutine or task>`.
    pub thread: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<i64>,
}

/// A happens-before edge from a send to its receive.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct Edge {
    pub from: String,
    pub to: String,
}

/// Messages from one service to another, counted once per send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ServiceEdge {
    pub from: String,
    pub to: String,
    pub count: u64,
}

/// The causal graph of one trace: events in causal order (a topological order of
/// happens-before), send→receive edges, the critical path and the service graph.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct CausalGraph {
    pub trace_id: String,
    pub events: Vec<Event>,
    pub edges: Vec<Edge>,
    pub critical_path: Vec<String>,
    pub services: Vec<ServiceEdge>,
}

/// A breakpoint hit of the trace, as [`build`] takes it.
#[derive(Clone, Debug)]
pub(crate) struct Hit {
    pub snapshot_id: i64,
    pub service: String,
    pub node: String,
    pub pid: u32,
    pub tid: u32,
    pub time_unix_nano: i64,
}

/// A message event of the trace, as [`build`] takes it (a stored row).
pub(crate) type Message = MessageRecord;

/// Builds the graph of `trace_id` from its hits and message events (any order).
pub(crate) fn build(trace_id: &str, hits: &[Hit], messages: &[Message]) -> CausalGraph {
    // Lane names for hits: a process's messages name it better than a pid.
    let mut names: HashMap<String, String> = HashMap::new();
    for m in messages {
        names
            .entry(format!("{}/{}", m.node, m.pid))
            .or_insert_with(|| m.process_name.clone());
    }
    let mut events: Vec<Event> = Vec::with_capacity(hits.len() + messages.len());
    for h in hits {
        let process = format!("{}/{}", h.node, h.pid);
        events.push(Event {
            id: format!("hit-{}", h.snapshot_id),
            service: names
                .get(&process)
                .cloned()
                .unwrap_or_else(|| h.service.clone()),
            process,
            node: h.node.clone(),
            kind: "hit",
            time_unix_nano: h.time_unix_nano,
            lamport: 0,
            vclock: BTreeMap::new(),
            held: false,
            conn: String::new(),
            bytes: 0,
            thread: h.tid.to_string(),
            snapshot_id: Some(h.snapshot_id),
        });
    }
    for m in messages {
        let send = m.kind == "send";
        let conn = if send {
            format!("{}->{}", m.local_addr, m.remote_addr)
        } else {
            format!("{}->{}", m.remote_addr, m.local_addr)
        };
        events.push(Event {
            id: format!("msg-{}", m.id),
            service: m.process_name.clone(),
            process: format!("{}/{}", m.node, m.pid),
            node: m.node.clone(),
            kind: if send { "send" } else { "recv" },
            time_unix_nano: nanos(m.time),
            lamport: 0,
            vclock: BTreeMap::new(),
            held: m.held,
            conn,
            bytes: u64::from(m.bytes),
            thread: if m.task == 0 {
                m.tid.to_string()
            } else {
                format!("{}/{:#x}", m.tid, m.task)
            },
            snapshot_id: None,
        });
    }
    // Within a lane, its own clock (ties: the order events were stored).
    events.sort_by(|a, b| {
        (&a.process, a.time_unix_nano, id_order(&a.id)).cmp(&(
            &b.process,
            b.time_unix_nano,
            id_order(&b.id),
        ))
    });
    let index: HashMap<&str, usize> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i))
        .collect();
    let pairs: Vec<(usize, usize)> = matching::pairs(messages)
        .into_iter()
        .filter_map(|(s, r)| {
            let s = index.get(format!("msg-{s}").as_str())?;
            let r = index.get(format!("msg-{r}").as_str())?;
            Some((*s, *r))
        })
        .collect();
    order::finish(trace_id, events, &pairs)
}

/// Hits before messages at one instant, each in store order.
fn id_order(id: &str) -> (u8, i64) {
    match id.split_once('-') {
        Some(("hit", n)) => (0, n.parse().unwrap_or(0)),
        Some((_, n)) => (1, n.parse().unwrap_or(0)),
        None => (2, 0),
    }
}

pub(crate) fn nanos(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// The hits of a trace from its stored snapshots.
fn hits(registry: &Registry, snapshots: &[SnapshotRecord]) -> Vec<Hit> {
    snapshots
        .iter()
        .map(|s| {
            let agent = &s.summary.agent_id;
            let service = registry
                .exe_of(agent, s.summary.pid)
                .map(|e| {
                    std::path::Path::new(&e)
                        .file_name()
                        .map_or(e.clone(), |n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| format!("pid {}", s.summary.pid));
            let node = registry.node_of(agent);
            Hit {
                snapshot_id: s.summary.id.0,
                service,
                node: if node.is_empty() { agent.clone() } else { node },
                pid: s.summary.pid,
                tid: s.summary.tid,
                time_unix_nano: nanos(s.summary.time),
            }
        })
        .collect()
}

/// The graph of one stored trace (`trace_id` as stored: 32 lowercase hex digits).
pub(crate) async fn for_trace(registry: &Registry, trace_id: &str) -> Result<CausalGraph, Status> {
    let snapshots = registry
        .store
        .list_trace_snapshots(trace_id, TRACE_SNAPSHOTS)
        .await
        .map_err(store_status)?;
    let messages = registry
        .store
        .list_trace_messages(trace_id, TRACE_MESSAGES)
        .await
        .map_err(store_status)?;
    Ok(build(trace_id, &hits(registry, &snapshots), &messages))
}

/// Computes and stores the Lamport order of every trace with events not yet ordered, so
/// queries can sort by `lamport`. Returns how many traces were ordered.
pub(crate) async fn store_order(registry: &Registry) -> Result<usize, Status> {
    let traces = registry
        .store
        .traces_to_order(1_000)
        .await
        .map_err(store_status)?;
    for trace in &traces {
        let graph = for_trace(registry, trace).await?;
        let order: Vec<(EventRef, u64)> = graph
            .events
            .iter()
            .filter_map(|e| {
                let (kind, n) = e.id.split_once('-')?;
                let n: i64 = n.parse().ok()?;
                let r = if kind == "hit" {
                    EventRef::Snapshot(n)
                } else {
                    EventRef::Message(n)
                };
                Some((r, e.lamport))
            })
            .collect();
        registry
            .store
            .set_lamports(&order)
            .await
            .map_err(store_status)?;
    }
    Ok(traces.len())
}

/// Default and largest number of rows a query returns.
const QUERY_ROWS: u32 = 1_000;
const QUERY_ROWS_MAX: u32 = 100_000;

/// `tracery-ctl query`: orders the traces not ordered yet (so `lamport` is filled), then
/// runs `sql` read-only over the store's views.
pub(crate) async fn query(
    registry: &Registry,
    sql: &str,
    limit: u32,
) -> Result<v1::QueryResponse, Status> {
    store_order(registry).await?;
    let limit = if limit == 0 {
        QUERY_ROWS
    } else {
        limit.min(QUERY_ROWS_MAX)
    };
    let result = registry
        .store
        .query_read_only(sql, limit as usize)
        .await
        .map_err(|e| match e {
            tracery_store::StoreError::ReadOnly { .. } => Status::permission_denied(e.to_string()),
            tracery_store::StoreError::BadQuery { .. } => Status::invalid_argument(e.to_string()),
            e => store_status(e),
        })?;
    Ok(v1::QueryResponse {
        columns: result.columns,
        rows: result
            .rows
            .into_iter()
            .map(|r| v1::QueryRow {
                cells: r.iter().map(|c| c.to_string()).collect(),
            })
            .collect(),
        truncated: result.truncated,
    })
}

impl From<CausalGraph> for GraphFields {
    fn from(g: CausalGraph) -> Self {
        GraphFields {
            events: g
                .events
                .into_iter()
                .map(|e| v1::CausalEvent {
                    id: e.id,
                    service: e.service,
                    process: e.process,
                    node: e.node,
                    kind: e.kind.to_owned(),
                    time_unix_nano: e.time_unix_nano,
                    lamport: e.lamport,
                    vclock: e.vclock.into_iter().collect(),
                    held: e.held,
                    conn: e.conn,
                    bytes: e.bytes,
                    thread: e.thread,
                    snapshot_id: e.snapshot_id.unwrap_or(0),
                })
                .collect(),
            edges: g
                .edges
                .into_iter()
                .map(|e| v1::CausalEdge {
                    from: e.from,
                    to: e.to,
                })
                .collect(),
            critical_path: g.critical_path,
            services: g
                .services
                .into_iter()
                .map(|s| v1::ServiceEdge {
                    from: s.from,
                    to: s.to,
                    count: s.count,
                })
                .collect(),
        }
    }
}

/// The graph as the `Trace` message's fields.
pub(crate) struct GraphFields {
    pub events: Vec<v1::CausalEvent>,
    pub edges: Vec<v1::CausalEdge>,
    pub critical_path: Vec<String>,
    pub services: Vec<v1::ServiceEdge>,
}

#[cfg(test)]
mod tests;
