//! `tracery-ctl audit list`: who set, deleted, froze, resumed or evaluated what.

use std::time::SystemTime;

use comfy_table::Table;
use tracery_proto::v1;

use crate::{client, OutputFormat};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Audited calls, oldest first: set, freeze, delete, resume and eval, refused ones
    /// included (in cluster mode reading the log needs `list` on breakpoints.tracery.dev
    /// in every namespace).
    List {
        /// Only entries since this long ago (`90m`, `2h`, `7d`) or this time
        /// (`2026-12-06T03:00:00Z`).
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
        since: Option<SystemTime>,
        /// At most this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

/// A duration back from now, or an RFC 3339 time.
fn parse_since(s: &str) -> Result<SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| format!("{s} reaches before 1970"));
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| {
        format!("{s:?} is neither a duration (90m, 2h) nor a time (2026-12-06T03:00:00Z)")
    })
}

pub async fn run(controller: &client::Controller, command: Command) -> anyhow::Result<()> {
    let Command::List {
        since,
        limit,
        output,
    } = command;
    let mut c = client::connect(controller).await?;
    let entries = c
        .list_audit(v1::ListAuditRequest {
            since: since.map(Into::into),
            limit,
        })
        .await
        .map_err(client::status_error)?
        .into_inner()
        .entries;
    let time = |e: &v1::AuditEntry| {
        e.time
            .and_then(|t| SystemTime::try_from(t).ok())
            .map(|t| humantime::format_rfc3339_millis(t).to_string())
            .unwrap_or_default()
    };
    if output == OutputFormat::Json {
        for e in &entries {
            let line = serde_json::json!({
                "id": e.id, "time": time(e), "who": e.who, "action": e.action,
                "target": e.target, "namespace": e.namespace, "peer": e.peer, "result": e.result,
            });
            println!("{line}");
        }
        return Ok(());
    }
    if entries.is_empty() {
        println!(
            "no audited calls{}",
            if since.is_some() { " in that time" } else { "" }
        );
        return Ok(());
    }
    let mut table = Table::new();
    table.set_header([
        "time",
        "who",
        "action",
        "target",
        "namespace",
        "from",
        "result",
    ]);
    for e in &entries {
        table.add_row([
            time(e),
            e.who.clone(),
            e.action.clone(),
            e.target.clone(),
            e.namespace.clone(),
            e.peer.clone(),
            e.result.clone(),
        ]);
    }
    println!("{table}");
    Ok(())
}
