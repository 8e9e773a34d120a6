//! The JSON of `/api/v1/`: the same objects `tracery-ctl ... --output json` prints, built
//! from the same `tracery.v1` messages.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{json, Value as Json};
use tracery_model::wire::DecodedMessage;
use tracery_proto::v1::{self, breakpoint_spec::Target};

pub(super) fn time(t: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(t).ok())
}

/// RFC 3339 to the millisecond.
pub(super) fn rfc3339(t: Option<prost_types::Timestamp>) -> Option<String> {
    time(t).map(|t| humantime::format_rfc3339_millis(t).to_string())
}

/// Nanoseconds since the Unix epoch (0 when unknown).
pub(super) fn unix_nanos(t: Option<prost_types::Timestamp>) -> u64 {
    time(t)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Seconds from now to `t`; negative once passed.
pub(super) fn seconds_until(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `service orders`, `exe /usr/bin/x`, `pid 42`, `selector app=a`.
pub(super) fn target_text(spec: &v1::BreakpointSpec) -> String {
    let in_ns = |name: &str| match spec.namespace.as_str() {
        "" => name.to_owned(),
        ns => format!("{ns}/{name}"),
    };
    match &spec.target {
        Some(Target::Service(s)) => format!("service {}", in_ns(s)),
        Some(Target::Exe(e)) => format!("exe {e}"),
        Some(Target::Pid(p)) => format!("pid {p}"),
        Some(Target::Selector(s)) => {
            let labels: BTreeMap<&String, &String> = s.match_labels.iter().collect();
            let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("selector {}", in_ns(&text.join(",")))
        }
        None => String::new(),
    }
}

/// A live breakpoint, as `breakpoint list --output json`, with its problems.
pub(super) fn breakpoint(b: &v1::Breakpoint, problems: &[String]) -> Json {
    let spec = b.spec.clone().unwrap_or_default();
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    json!({
        "id": b.id,
        "target": target_text(&spec),
        "namespace": nonempty(&spec.namespace),
        "container": nonempty(&spec.container),
        "location": spec.location,
        "when": spec.when,
        "hit_limit": spec.hit_limit,
        "expire_seconds": spec.expire_seconds,
        "rate_per_second": spec.rate_per_second,
        "trace_id": spec.trace_id,
        "header": spec.header.map(|h| json!({"name": h.name, "value": h.value})),
        "freeze": spec.freeze,
        "freeze_timeout_seconds": spec.freeze_timeout_seconds,
        "captures": spec.captures,
        "hits": b.hits,
        "drops": b.drops,
        "created": rfc3339(b.created),
        "expires": rfc3339(b.expires),
        "problems": problems,
    })
}

/// `breakpoint set --output json`: the breakpoint and each agent's arm result.
pub(super) fn set_result(set: &v1::SetBreakpointResponse) -> Json {
    let mut j = set
        .breakpoint
        .as_ref()
        .map_or_else(|| json!({}), |b| breakpoint(b, &[]));
    let arms: Vec<Json> = set
        .arm_results
        .iter()
        .filter_map(|r| {
            let result = r.result.as_ref()?;
            let mut o = json!({"agent_id": r.agent_id, "node": r.node, "pid": result.pid});
            match &result.result {
                Some(v1::arm_result::Result::Probes(n)) => o["probes"] = json!(n),
                Some(v1::arm_result::Result::Error(e)) => o["error"] = json!(e),
                None => {}
            }
            Some(o)
        })
        .collect();
    j["armed"] = json!(arms);
    j["unanswered_agents"] = json!(set.unanswered_agents);
    j
}

/// A stored snapshot: the object `snapshot list --output json` prints, with its id.
pub(super) fn snapshot(s: &v1::Snapshot) -> Json {
    match tracery_model::Snapshot::try_from(s.clone()) {
        Ok(model) => {
            let mut j = model.to_json();
            j["id"] = json!(s.id);
            // Each value also as its language writes it on one line (the trace page's
            // variables pane), beside the structured one.
            let lang = model.language.language();
            if let Some(vars) = j["variables"].as_array_mut() {
                for (v, var) in vars.iter_mut().zip(&model.variables) {
                    v["text"] = json!(lang.render(&var.value).flat());
                }
            }
            j
        }
        Err(e) => json!({"id": s.id, "error": format!("cannot read this snapshot: {e}")}),
    }
}

fn thread(h: &v1::HeldThread) -> Json {
    let t = h.thread.clone().unwrap_or_default();
    json!({
        "agent_id": h.agent_id, "node": h.node, "agent_connected": h.agent_connected,
        "pid": t.pid, "tid": t.tid, "breakpoint_id": t.breakpoint_id, "location": t.location,
        "suspended": t.suspended,
        "not_suspended_reason": (!t.suspended).then_some(t.not_suspended_reason),
        "frozen_at": rfc3339(t.frozen_at), "deadline": rfc3339(t.deadline),
        "deadline_in_seconds": time(t.deadline).map(seconds_until),
    })
}

/// A held message, every field included, decoded by protocol when the agent saw its bytes.
pub(super) fn held(h: &v1::NodeHeldMessage) -> Json {
    let m = h.message.clone().unwrap_or_default();
    let decoded = m
        .decoded
        .clone()
        .and_then(|d| DecodedMessage::try_from(d).ok())
        .map(|d| d.to_json());
    json!({
        "agent_id": h.agent_id, "node": h.node, "agent_connected": h.agent_connected,
        "pid": m.pid, "tid": m.tid, "socket": m.socket,
        "local": (!m.local.is_empty()).then_some(m.local),
        "peer": (!m.peer.is_empty()).then_some(m.peer),
        "bytes": m.bytes, "first_line": m.first_line, "decoded": decoded,
        "behind": m.behind, "shared": m.shared, "at": rfc3339(m.at),
    })
}

fn release(r: &v1::HeldRelease) -> Json {
    let release = r.release.clone().unwrap_or_default();
    let t = release.thread.clone().unwrap_or_default();
    json!({
        "agent_id": r.agent_id, "node": r.node, "pid": t.pid, "tid": t.tid,
        "location": t.location,
        "reason": v1::ReleaseReason::try_from(release.reason).unwrap_or_default().describe(),
        "at": rfc3339(release.at),
    })
}

/// What is frozen of a trace: held threads and messages, and the hold deadline.
pub(super) fn frozen(t: &v1::Trace) -> Json {
    json!({
        "frozen": !t.threads.is_empty() || !t.messages.is_empty(),
        "threads": t.threads.iter().map(thread).collect::<Vec<_>>(),
        "messages": t.messages.iter().map(held).collect::<Vec<_>>(),
        "deadline": rfc3339(t.hold_deadline),
        "deadline_in_seconds": time(t.hold_deadline).map(seconds_until),
    })
}

/// A trace in short, as `trace list --output json` (with `frozen` as an object).
pub(super) fn trace_summary(t: &v1::Trace) -> Json {
    json!({
        "trace_id": t.trace_id,
        "frozen": frozen(t),
        "last_release": t.last_release.as_ref().map(release),
        "snapshots": t.snapshots.iter().map(trace_snapshot).collect::<Vec<_>>(),
    })
}

pub(super) fn trace_snapshot(s: &v1::TraceSnapshot) -> Json {
    let loc = s.location.clone().unwrap_or_default();
    json!({
        "id": s.id, "breakpoint_id": s.breakpoint_id, "function": loc.function,
        "file": loc.file, "line": loc.line, "time": rfc3339(s.time),
        "time_unix_nano": unix_nanos(s.time), "pid": s.pid, "tid": s.tid,
    })
}

/// `trace resume --output json`.
pub(super) fn resumed(r: &v1::ResumeTraceResponse) -> Json {
    let held_released: Vec<Json> = r
        .held_released
        .iter()
        .map(|h| {
            let release = h.release.clone().unwrap_or_default();
            json!({
                "agent_id": h.agent_id, "node": h.node, "messages": release.messages,
                "bytes": release.bytes, "dropped_bytes": release.dropped_bytes,
                "reason": v1::ReleaseReason::try_from(release.reason).unwrap_or_default().describe(),
                "at": rfc3339(release.at),
            })
        })
        .collect();
    json!({
        "trace_id": r.trace_id,
        "resumed": !r.released.is_empty() || !r.held_released.is_empty(),
        "released": r.released.iter().map(release).collect::<Vec<_>>(),
        "held_released": held_released,
        "last_release": r.last_release.as_ref().map(release),
        "unanswered": r.unanswered,
    })
}
