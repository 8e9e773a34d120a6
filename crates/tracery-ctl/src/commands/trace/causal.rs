//! The causal graph `trace view` shows: events in causal order, send→receive edges, the
//! critical path and the service graph (the controller builds them; see its `causal`).

use comfy_table::Table;
use serde_json::{json, Value as Json};
use tracery_proto::v1;

/// The graph's JSON fields: `events`, `edges`, `critical_path`, `services`.
pub fn graph_json(t: &v1::Trace) -> [(&'static str, Json); 4] {
    let events: Vec<Json> = t
        .events
        .iter()
        .map(|e| {
            let mut o = json!({
                "id": e.id, "service": e.service, "process": e.process, "node": e.node,
                "kind": e.kind, "time_unix_nano": e.time_unix_nano, "lamport": e.lamport,
                "vclock": e.vclock.iter().collect::<std::collections::BTreeMap<_, _>>(),
                "held": e.held, "conn": e.conn, "bytes": e.bytes, "thread": e.thread,
            });
            if e.snapshot_id > 0 {
                o["snapshot_id"] = json!(e.snapshot_id);
            }
            o
        })
        .collect();
    let edges: Vec<Json> = t
        .edges
        .iter()
        .map(|e| json!({"from": e.from, "to": e.to}))
        .collect();
    let services: Vec<Json> = t
        .services
        .iter()
        .map(|s| json!({"from": s.from, "to": s.to, "count": s.count}))
        .collect();
    [
        ("events", Json::from(events)),
        ("edges", Json::from(edges)),
        ("critical_path", json!(t.critical_path)),
        ("services", Json::from(services)),
    ]
}

/// The events in causal order, with the service graph; empty when there are none.
pub fn graph_text(t: &v1::Trace) -> String {
    if t.events.is_empty() {
        return String::new();
    }
    let received: std::collections::HashMap<&str, &str> = t
        .edges
        .iter()
        .map(|e| (e.to.as_str(), e.from.as_str()))
        .collect();
    let critical: std::collections::HashSet<&str> =
        t.critical_path.iter().map(String::as_str).collect();
    let mut table = Table::new();
    table.set_header([
        "lamport",
        "service",
        "event",
        "connection",
        "bytes",
        "after",
        "",
    ]);
    for e in &t.events {
        let what = match e.kind.as_str() {
            "hit" => format!("hit (snapshot {})", e.snapshot_id),
            k if e.held => format!("{k} (held)"),
            k => k.to_owned(),
        };
        table.add_row([
            e.lamport.to_string(),
            e.service.clone(),
            what,
            e.conn.clone(),
            if e.conn.is_empty() {
                String::new()
            } else {
                e.bytes.to_string()
            },
            received
                .get(e.id.as_str())
                .map(|s| s.to_string())
                .unwrap_or_default(),
            if critical.contains(e.id.as_str()) {
                "critical".into()
            } else {
                String::new()
            },
        ]);
    }
    let mut out = format!(
        "events in causal order ({}; each receive after the send it names)\n{table}\n",
        t.events.len()
    );
    for s in &t.services {
        out.push_str(&format!("{} -> {}: {} message(s)\n", s.from, s.to, s.count));
    }
    out
}
