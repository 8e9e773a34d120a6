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
        println!(
            "{}",
            serde_json::json!({ "agents": agents, "breakpoints": bps, "databases": dbs })
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
                p.pid.to_string(),
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
    Ok(())
}
