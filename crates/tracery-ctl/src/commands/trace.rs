//! `tracery-ctl trace list|view|resume|eval`: frozen requests, where they are held (their
//! threads and their outbound messages), and letting them go.

mod causal;
mod held;

use std::time::SystemTime;

use comfy_table::Table;
use serde_json::{json, Value as Json};
use tracery_proto::v1;

use crate::{client, OutputFormat};

/// Subcommands of `tracery-ctl trace`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List frozen traces: where each is held (threads and outbound messages), its deadline
    /// and its snapshots.
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Show one trace: its frozen threads and held messages, or when it was released, and
    /// its snapshots.
    View {
        /// The trace id (32 hex digits, or 16 for B3).
        #[arg(value_parser = tracery_proto::trace::normalize_trace_id)]
        id: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Let a frozen trace go on every node: held messages go out in order, stopped threads
    /// continue. Resuming a trace that is not frozen does nothing and says so.
    Resume {
        /// The trace id (32 hex digits, or 16 for B3).
        #[arg(value_parser = tracery_proto::trace::normalize_trace_id)]
        id: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Read a variable or field path (e.g. order.items[0].qty) from the stopped thread of a
    /// frozen trace, following pointers beyond the capture limits.
    Eval {
        /// The trace id (32 hex digits, or 16 for B3).
        #[arg(value_parser = tracery_proto::trace::normalize_trace_id)]
        id: String,
        /// A variable or field path in scope at the breakpoint.
        expr: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

/// Runs `trace`.
pub async fn run(controller: &client::Controller, cmd: Command) -> anyhow::Result<()> {
    let mut c = client::connect(controller).await?;
    match cmd {
        Command::List { output } => {
            let traces = c
                .list_traces(v1::ListTracesRequest {})
                .await
                .map_err(client::status_error)?
                .into_inner()
                .traces;
            match output {
                OutputFormat::Json => {
                    for t in &traces {
                        println!("{}", trace_json(t));
                    }
                }
                OutputFormat::Text if traces.is_empty() => println!("no frozen traces"),
                OutputFormat::Text => print!("{}", list_text(&traces)),
            }
        }
        Command::View { id, output } => {
            let trace = c
                .get_trace(v1::GetTraceRequest { trace_id: id })
                .await
                .map_err(client::status_error)?
                .into_inner();
            match output {
                OutputFormat::Json => println!("{}", trace_json(&trace)),
                OutputFormat::Text => print!("{}", view_text(&trace)),
            }
        }
        Command::Resume { id, output } => {
            let r = c
                .resume_trace(v1::ResumeTraceRequest { trace_id: id })
                .await
                .map_err(client::status_error)?
                .into_inner();
            if !r.unanswered.is_empty() {
                eprintln!(
                    "warning: {} did not answer; they may hold trace {} until its deadline",
                    r.unanswered.join(", "),
                    r.trace_id
                );
            }
            match output {
                OutputFormat::Json => println!("{}", resume_json(&r)),
                OutputFormat::Text => print!("{}", resume_text(&r)),
            }
        }
        Command::Eval { id, expr, output } => {
            let r = c
                .eval_trace(v1::EvalTraceRequest {
                    trace_id: id.clone(),
                    expr: expr.clone(),
                })
                .await
                .map_err(client::status_error)?
                .into_inner();
            let value: Json = serde_json::from_str(&r.json)
                .map_err(|e| anyhow::anyhow!("the agent sent a value that is not JSON ({e})"))?;
            let held = r.thread.unwrap_or_default();
            let thread = held.thread.unwrap_or_default();
            match output {
                OutputFormat::Json => println!(
                    "{}",
                    json!({
                        "trace_id": id, "expr": expr, "value": value,
                        "agent_id": held.agent_id, "node": held.node,
                        "pid": thread.pid, "tid": thread.tid, "location": thread.location,
                    })
                ),
                OutputFormat::Text => {
                    let shown = match &value {
                        Json::Object(_) | Json::Array(_) => {
                            serde_json::to_string_pretty(&value).unwrap_or_default()
                        }
                        other => other.to_string(),
                    };
                    println!("{expr} = {shown}");
                }
            }
        }
    }
    Ok(())
}

fn time(t: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(t).ok())
}

/// A time as RFC 3339 to the second, for JSON.
pub(crate) fn rfc3339(t: Option<prost_types::Timestamp>) -> Option<String> {
    time(t).map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

/// `HH:MM:SS UTC`.
fn clock(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", s.get(11..19).unwrap_or(&s))
}

/// Seconds from now to `t`; negative once passed.
fn seconds_until(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn deadline_text(deadline: Option<prost_types::Timestamp>) -> String {
    match time(deadline) {
        None => "unknown".into(),
        Some(d) => match seconds_until(d) {
            s if s >= 0 => format!("in {s}s ({})", clock(d)),
            s => format!("passed {}s ago ({})", -s, clock(d)),
        },
    }
}

fn reason_text(r: &v1::Release) -> &'static str {
    v1::ReleaseReason::try_from(r.reason)
        .unwrap_or_default()
        .describe()
}

fn thread_json(h: &v1::HeldThread) -> Json {
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

fn release_json(r: &v1::HeldRelease) -> Json {
    let release = r.release.clone().unwrap_or_default();
    let t = release.thread.clone().unwrap_or_default();
    json!({
        "agent_id": r.agent_id, "node": r.node, "pid": t.pid, "tid": t.tid,
        "location": t.location, "reason": reason_text(&release), "at": rfc3339(release.at),
    })
}

/// A trace as one JSON object (`trace list|view --output json`).
pub fn trace_json(t: &v1::Trace) -> Json {
    let mut o = json!({
        "trace_id": t.trace_id,
        "frozen": !t.threads.is_empty() || !t.messages.is_empty(),
        "threads": t.threads.iter().map(thread_json).collect::<Vec<_>>(),
        "messages": t.messages.iter().map(held::held_json).collect::<Vec<_>>(),
        "hold_deadline": rfc3339(t.hold_deadline),
        "hold_deadline_in_seconds": time(t.hold_deadline).map(seconds_until),
        "last_release": t.last_release.as_ref().map(release_json),
        "snapshots": t.snapshots.iter().map(|s| {
            let loc = s.location.clone().unwrap_or_default();
            json!({
                "id": s.id, "breakpoint_id": s.breakpoint_id, "function": loc.function,
                "file": loc.file, "line": loc.line, "time": rfc3339(s.time),
                "pid": s.pid, "tid": s.tid,
            })
        }).collect::<Vec<_>>(),
    });
    for (key, value) in causal::graph_json(t) {
        o[key] = value;
    }
    o
}

fn node_text(h: &v1::HeldThread) -> String {
    if h.agent_connected {
        h.node.clone()
    } else {
        format!("{} (agent disconnected)", h.node)
    }
}

fn suspended_text(t: &v1::FrozenThread) -> String {
    if t.suspended {
        "yes".into()
    } else {
        format!("no: {}", t.not_suspended_reason)
    }
}

fn snapshot_line(s: &v1::TraceSnapshot) -> String {
    let loc = s.location.clone().unwrap_or_default();
    let base = std::path::Path::new(&loc.file)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "#{} bp {} {} ({base}:{})",
        s.id, s.breakpoint_id, loc.function, loc.line
    )
}

fn list_table(traces: &[v1::Trace]) -> Table {
    let mut t = Table::new();
    t.set_header([
        "trace",
        "node",
        "pid/tid",
        "at",
        "suspended",
        "deadline",
        "snapshots",
    ]);
    for trace in traces {
        let snaps: Vec<String> = trace.snapshots.iter().map(snapshot_line).collect();
        for (i, h) in trace.threads.iter().enumerate() {
            let th = h.thread.clone().unwrap_or_default();
            t.add_row([
                trace.trace_id.clone(),
                node_text(h),
                format!("{}/{}", th.pid, th.tid),
                th.location.clone(),
                suspended_text(&th),
                deadline_text(th.deadline),
                // Once per trace, beside its first thread.
                if i == 0 {
                    snaps.join("\n")
                } else {
                    String::new()
                },
            ]);
        }
    }
    t
}

/// The threads table, then the held messages and their warnings.
fn list_text(traces: &[v1::Trace]) -> String {
    let mut out = String::new();
    if traces.iter().any(|t| !t.threads.is_empty()) {
        out.push_str(&format!("{}\n", list_table(traces)));
    }
    let held: Vec<(&str, &v1::NodeHeldMessage)> = traces
        .iter()
        .flat_map(|t| t.messages.iter().map(|m| (t.trace_id.as_str(), m)))
        .collect();
    if !held.is_empty() {
        out.push_str(&format!(
            "held messages\n{}\n",
            held::held_table(&held, true)
        ));
    }
    // Traces held only by messages have no thread row to show their deadline on.
    for t in traces.iter().filter(|t| t.threads.is_empty()) {
        out.push_str(&format!(
            "trace {}: no frozen thread; messages held until {}\n",
            t.trace_id,
            deadline_text(t.hold_deadline)
        ));
    }
    for t in traces {
        for w in held::shared_warnings(&t.trace_id, &t.messages) {
            out.push_str(&format!("{w}\n"));
        }
    }
    out
}

fn not_frozen_text(trace_id: &str, last: Option<&v1::HeldRelease>) -> String {
    match last.and_then(|l| l.release.as_ref()) {
        Some(r) => format!(
            "trace {trace_id} is not frozen; it was released at {} ({})",
            time(r.at).map_or_else(|| "an unknown time".into(), clock),
            reason_text(r)
        ),
        None => format!("trace {trace_id} was never frozen"),
    }
}

fn view_text(trace: &v1::Trace) -> String {
    let mut out = String::new();
    if trace.threads.is_empty() && trace.messages.is_empty() {
        out.push_str(&not_frozen_text(
            &trace.trace_id,
            trace.last_release.as_ref(),
        ));
        out.push('\n');
    } else {
        out.push_str(&format!(
            "trace {}: frozen, {} thread(s), {} held message(s)\n",
            trace.trace_id,
            trace.threads.len(),
            trace.messages.len()
        ));
    }
    if !trace.threads.is_empty() {
        let mut t = Table::new();
        t.set_header([
            "node",
            "pid/tid",
            "at",
            "suspended",
            "frozen at",
            "deadline",
        ]);
        for h in &trace.threads {
            let th = h.thread.clone().unwrap_or_default();
            t.add_row([
                node_text(h),
                format!("{}/{}", th.pid, th.tid),
                th.location.clone(),
                suspended_text(&th),
                time(th.frozen_at).map(clock).unwrap_or_default(),
                deadline_text(th.deadline),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    if !trace.messages.is_empty() {
        let rows: Vec<_> = trace
            .messages
            .iter()
            .map(|m| (trace.trace_id.as_str(), m))
            .collect();
        out.push_str(&format!(
            "held messages (every node holds them until {})\n{}\n",
            deadline_text(trace.hold_deadline),
            held::held_table(&rows, false)
        ));
        for w in held::shared_warnings(&trace.trace_id, &trace.messages) {
            out.push_str(&format!("{w}\n"));
        }
        let pending = held::pending_text(&trace.messages);
        if !pending.is_empty() {
            out.push_str(&format!(
                "pending work: what the trace was about to send, decoded from each held \
                 message's first bytes\n{pending}"
            ));
        }
    }
    if trace.snapshots.is_empty() {
        out.push_str("no snapshots of this trace\n");
    } else {
        let mut t = Table::new();
        t.set_header(["snapshot", "breakpoint", "at", "time", "pid/tid"]);
        for s in &trace.snapshots {
            let loc = s.location.clone().unwrap_or_default();
            t.add_row([
                s.id.to_string(),
                s.breakpoint_id.to_string(),
                format!("{} ({}:{})", loc.function, loc.file, loc.line),
                rfc3339(s.time).unwrap_or_default(),
                format!("{}/{}", s.pid, s.tid),
            ]);
        }
        out.push_str(&format!("snapshots\n{t}\n"));
    }
    out.push_str(&causal::graph_text(trace));
    out
}

fn resume_json(r: &v1::ResumeTraceResponse) -> Json {
    json!({
        "trace_id": r.trace_id,
        "resumed": !r.released.is_empty() || !r.held_released.is_empty(),
        "released": r.released.iter().map(release_json).collect::<Vec<_>>(),
        "held_released": r.held_released.iter().map(held::hold_release_json).collect::<Vec<_>>(),
        "last_release": r.last_release.as_ref().map(release_json),
        "unanswered": r.unanswered,
    })
}

fn resume_text(r: &v1::ResumeTraceResponse) -> String {
    if r.released.is_empty() && r.held_released.is_empty() {
        return format!(
            "{}; nothing to resume\n",
            not_frozen_text(&r.trace_id, r.last_release.as_ref())
        );
    }
    let held: u64 = r
        .held_released
        .iter()
        .filter_map(|h| h.release.as_ref())
        .map(|h| h.messages)
        .sum();
    let held = if held > 0 {
        format!(" and {held} held message(s)")
    } else {
        String::new()
    };
    let mut out = format!(
        "resumed trace {}: released {} thread(s){held}\n",
        r.trace_id,
        r.released.len()
    );
    for h in &r.released {
        let release = h.release.clone().unwrap_or_default();
        let t = release.thread.unwrap_or_default();
        let held_for = match (time(t.frozen_at), time(release.at)) {
            (Some(from), Some(to)) => to
                .duration_since(from)
                .map(|d| format!(", frozen {}s", d.as_secs()))
                .unwrap_or_default(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {} pid {} tid {} at {}{held_for}\n",
            h.node, t.pid, t.tid, t.location
        ));
    }
    out.push_str(&held::hold_release_lines(&r.held_released));
    out
}
