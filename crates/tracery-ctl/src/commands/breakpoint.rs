//! `tracery-ctl breakpoint set|list|delete`.

use std::time::Duration;

use comfy_table::Table;
use tracery_proto::v1::{self, breakpoint_spec::Target};

use crate::{client, OutputFormat};

/// Subcommands of `tracery-ctl breakpoint`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Set a breakpoint on a service, an executable or a process; prints its id.
    Set(SetArgs),
    /// List active breakpoints.
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Delete a breakpoint; its probes detach on every node.
    Delete { id: u64 },
}

/// Arguments of `breakpoint set`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["service", "exe", "pid"])))]
pub struct SetArgs {
    /// A service named in tracery.toml (or, in a cluster, a Kubernetes service).
    #[arg(long)]
    service: Option<String>,
    /// Every process running this executable, now and later.
    #[arg(long)]
    exe: Option<std::path::PathBuf>,
    /// One process.
    #[arg(long)]
    pid: Option<u32>,
    /// Where: FILE:LINE or a function name.
    #[arg(long, value_name = "LOCATION")]
    at: String,
    /// Keep only hits where this holds, e.g. `order.qty > 10 && status == "pending"`.
    #[arg(long, value_name = "EXPR")]
    when: Option<String>,
    /// Stop after this many snapshots (default: the controller's, 100).
    #[arg(long)]
    hits: Option<u32>,
    /// Remove the breakpoint after this long, e.g. 30m or 2h (default: the controller's, 1h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    expire: Option<Duration>,
    /// Kernel-side rate limit, e.g. 10/s or 10 (default: the controller's, 10/s).
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    rate: Option<u32>,
}

fn parse_rate(s: &str) -> Result<u32, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    n.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a rate; write it like 10/s"))
}

/// Runs `breakpoint`.
pub async fn run(controller: &str, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Set(a) => set(controller, a).await,
        Command::List { output } => list(controller, output).await,
        Command::Delete { id } => {
            let mut c = client::connect(controller).await?;
            c.delete_breakpoint(v1::DeleteBreakpointRequest { id })
                .await
                .map_err(client::status_error)?;
            println!("deleted breakpoint {id}");
            Ok(())
        }
    }
}

async fn set(controller: &str, a: SetArgs) -> anyhow::Result<()> {
    // Check the condition here, where the caret can point into what the user typed.
    if let Some(w) = &a.when {
        tracery_dwarf::condition::parse(w)?;
    }
    let target = match (a.service, a.exe, a.pid) {
        (Some(s), _, _) => Target::Service(s),
        (_, Some(e), _) => {
            let e = std::fs::canonicalize(&e)
                .map_err(|err| anyhow::anyhow!("--exe {}: {err}", e.display()))?;
            Target::Exe(e.to_string_lossy().into_owned())
        }
        (_, _, Some(p)) => Target::Pid(p),
        _ => unreachable!("clap requires one target"),
    };
    let spec = v1::BreakpointSpec {
        target: Some(target),
        location: a.at,
        when: a.when,
        hit_limit: a.hits,
        expire_seconds: a.expire.map(|d| d.as_secs().max(1)),
        rate_per_second: a.rate,
    };
    let mut c = client::connect(controller).await?;
    let bp = c
        .set_breakpoint(spec)
        .await
        .map_err(client::status_error)?
        .into_inner();
    println!("{}", bp.id);
    Ok(())
}

async fn list(controller: &str, output: OutputFormat) -> anyhow::Result<()> {
    let mut c = client::connect(controller).await?;
    let bps = c
        .list_breakpoints(v1::ListBreakpointsRequest {})
        .await
        .map_err(client::status_error)?
        .into_inner()
        .breakpoints;
    match output {
        OutputFormat::Json => {
            for b in &bps {
                println!("{}", breakpoint_json(b));
            }
        }
        OutputFormat::Text => {
            let mut t = Table::new();
            t.set_header(["id", "target", "at", "when", "hits", "drops", "expires"]);
            for b in &bps {
                let j = breakpoint_json(b);
                t.add_row([
                    j["id"].to_string(),
                    j["target"].as_str().unwrap_or("").to_string(),
                    j["location"].as_str().unwrap_or("").to_string(),
                    j["when"].as_str().unwrap_or("").to_string(),
                    format!("{}/{}", j["hits"], j["hit_limit"]),
                    j["drops"].to_string(),
                    j["expires"].as_str().unwrap_or("").to_string(),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

/// A breakpoint as one JSON object (`breakpoint list --output json`).
pub fn breakpoint_json(b: &v1::Breakpoint) -> serde_json::Value {
    let spec = b.spec.clone().unwrap_or_default();
    let target = match spec.target {
        Some(Target::Service(s)) => format!("service {s}"),
        Some(Target::Exe(e)) => format!("exe {e}"),
        Some(Target::Pid(p)) => format!("pid {p}"),
        None => String::new(),
    };
    let time = |t: &Option<prost_types::Timestamp>| {
        t.and_then(|t| std::time::SystemTime::try_from(t).ok())
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
    };
    serde_json::json!({
        "id": b.id,
        "target": target,
        "location": spec.location,
        "when": spec.when,
        "hit_limit": spec.hit_limit,
        "expire_seconds": spec.expire_seconds,
        "rate_per_second": spec.rate_per_second,
        "hits": b.hits,
        "drops": b.drops,
        "created": time(&b.created),
        "expires": time(&b.expires),
    })
}
