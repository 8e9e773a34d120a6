//! `tracery-ctl status`: agents, armed probes, hits, drops and overhead.

use comfy_table::Table;
use tracery_proto::v1;

use crate::{client, OutputFormat};

/// Runs `status`.
pub async fn run(controller: &client::Controller, output: OutputFormat) -> anyhow::Result<()> {
    let mut c = client::connect(controller).await?;
    let st = c
        .status(v1::StatusRequest {})
        .await
        .map_err(client::status_error)?
        .into_inner();
    if output == OutputFormat::Json {
        let agents: Vec<_> = st
            .agents
            .iter()
            .map(|a| {
                let hello = a.hello.clone().unwrap_or_default();
                let health = a.health.clone().unwrap_or_default();
                serde_json::json!({
                    "agent_id": hello.agent_id, "node": hello.node, "connected": a.connected,
                    "cpu_percent": health.cpu_percent, "rss_bytes": health.rss_bytes,
                    "probe_overhead_percent": health.probe_overhead_percent,
                    "processes": health.processes.iter().map(|p| serde_json::json!({
                        "pid": p.pid, "exe": p.exe, "breakpoints": p.breakpoint_ids, "probes": p.probes,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let bps: Vec<_> = st
            .breakpoints
            .iter()
            .map(|b| {
                serde_json::json!({
                    "id": b.breakpoint_id, "hits": b.hits, "drops": b.drops, "problems": b.problems,
                })
            })
            .collect();
        let dbs: Vec<_> = st
            .databases
            .iter()
            .map(|d| serde_json::json!({ "name": d.name, "kind": d.kind, "url": d.url }))
            .collect();
        let export = st.export.as_ref().map(export_json);
        println!(
            "{}",
            serde_json::json!({
                "agents": agents, "breakpoints": bps, "databases": dbs, "export": export,
            })
        );
        return Ok(());
    }
    let mut agents = Table::new();
    agents.set_header(["agent", "node", "connected", "cpu %", "rss", "overhead %"]);
    let mut procs = Table::new();
    procs.set_header(["node", "pid", "exe", "breakpoints", "probes"]);
    for a in &st.agents {
        let hello = a.hello.clone().unwrap_or_default();
        let health = a.health.clone().unwrap_or_default();
        agents.add_row([
            hello.agent_id.clone(),
            hello.node.clone(),
            if a.connected { "yes" } else { "no" }.to_string(),
            format!("{:.2}", health.cpu_percent),
            format!("{:.1} MiB", health.rss_bytes as f64 / (1 << 20) as f64),
            format!("{:.3}", health.probe_overhead_percent),
        ]);
        for p in &health.processes {
            let ids: Vec<String> = p.breakpoint_ids.iter().map(u64::to_string).collect();
            procs.add_row([
                hello.node.clone(),
                // Bound to the file: every process of the target that runs it.
                if p.pid == 0 {
                    "any".to_owned()
                } else {
                    p.pid.to_string()
                },
                p.exe.clone(),
                ids.join(", "),
                p.probes.to_string(),
            ]);
        }
    }
    let mut bps = Table::new();
    bps.set_header(["breakpoint", "hits", "drops", "problems"]);
    for b in &st.breakpoints {
        bps.add_row([
            b.breakpoint_id.to_string(),
            b.hits.to_string(),
            b.drops.to_string(),
            b.problems.join("\n"),
        ]);
    }
    println!("agents\n{agents}\n\narmed probes\n{procs}\n\nbreakpoints\n{bps}");
    if st.databases.is_empty() {
        println!(
            "\ndatabases: none; give --database NAME=URL (or [databases.NAME] in tracery.toml) \
             to read records at hits with --capture"
        );
    } else {
        let mut dbs = Table::new();
        dbs.set_header(["database", "kind", "url"]);
        for d in &st.databases {
            dbs.add_row([d.name.clone(), d.kind.clone(), d.url.clone()]);
        }
        println!("\ndatabases\n{dbs}");
    }
    println!("\n{}", export_text(st.export.as_ref()));
    Ok(())
}

fn export_json(e: &v1::ExportStatus) -> serde_json::Value {
    let dropped: serde_json::Map<String, serde_json::Value> = e
        .dropped
        .iter()
        .map(|d| (d.reason.clone(), d.count.into()))
        .collect();
    serde_json::json!({
        "endpoint": e.endpoint,
        "exported_spans": e.exported_spans,
        "exported_logs": e.exported_logs,
        "dropped": dropped,
        "last_error": e.last_error,
        "last_error_at": e.last_error_at.map(timestamp_text),
        "last_success_at": e.last_success_at.map(timestamp_text),
    })
}

fn timestamp_text(t: prost_types::Timestamp) -> String {
    std::time::SystemTime::try_from(t)
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
        .unwrap_or_default()
}

/// The export section of `status`: counters, and what to do when the collector fails.
fn export_text(e: Option<&v1::ExportStatus>) -> String {
    let Some(e) = e else {
        return "export: off; give the controller --otlp-endpoint URL (or \
                OTEL_EXPORTER_OTLP_ENDPOINT) to see snapshots on their traces"
            .to_owned();
    };
    let dropped: u64 = e.dropped.iter().map(|d| d.count).sum();
    let mut text = format!(
        "export to {}: {} span(s) and {} log record(s) sent, {dropped} dropped",
        e.endpoint, e.exported_spans, e.exported_logs
    );
    if dropped > 0 {
        let reasons: Vec<String> = e
            .dropped
            .iter()
            .map(|d| format!("{} {}", d.count, d.reason))
            .collect();
        text.push_str(&format!(" ({})", reasons.join(", ")));
    }
    // Failing now: the latest error is newer than the latest success.
    let failing = match (e.last_error_at, e.last_success_at) {
        (Some(err), Some(ok)) => (err.seconds, err.nanos) > (ok.seconds, ok.nanos),
        (Some(_), None) => true,
        _ => false,
    };
    if let (true, Some(error)) = (failing, &e.last_error) {
        text.push_str(&format!(
            "\ncollector at {} unreachable or refusing: {error}; start it or fix \
             --otlp-endpoint (and OTEL_EXPORTER_OTLP_HEADERS); snapshots stay in the store",
            e.endpoint
        ));
    }
    text
}
