//! `tracery-ctl snapshot list|view|watch`.

use comfy_table::Table;
use tracery_model::Snapshot;
use tracery_proto::v1;

use crate::{client, output, OutputFormat};

/// Subcommands of `tracery-ctl snapshot`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List stored snapshots, oldest first.
    List {
        #[arg(long)]
        breakpoint: Option<u64>,
        /// Most snapshots to list.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Show one snapshot: variables, stack, and the database records read at the hit.
    View {
        id: u64,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Print snapshots as they arrive, until Ctrl-C.
    Watch {
        #[arg(long)]
        breakpoint: Option<u64>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

/// Runs `snapshot`.
pub async fn run(controller: &str, cmd: Command) -> anyhow::Result<()> {
    let mut c = client::connect(controller).await?;
    match cmd {
        Command::List {
            breakpoint,
            limit,
            output,
        } => {
            let resp = c
                .list_snapshots(v1::ListSnapshotsRequest {
                    filter: Some(v1::SnapshotFilter {
                        breakpoint_id: breakpoint,
                    }),
                    limit,
                    page_token: String::new(),
                })
                .await
                .map_err(client::status_error)?
                .into_inner();
            let mut t = Table::new();
            t.set_header(["id", "breakpoint", "time", "pid", "tid", "at", "trace"]);
            for s in resp.snapshots {
                let id = s.id;
                let snap = Snapshot::try_from(s)?;
                match output {
                    OutputFormat::Json => println!("{}", with_id(id, &snap)),
                    OutputFormat::Text => {
                        t.add_row([
                            id.to_string(),
                            snap.breakpoint_id.to_string(),
                            humantime::format_rfc3339_millis(snap.time).to_string(),
                            snap.pid.to_string(),
                            snap.tid.to_string(),
                            format!(
                                "{} ({}:{})",
                                snap.location.function, snap.location.file, snap.location.line
                            ),
                            snap.trace_id.clone().unwrap_or_default(),
                        ]);
                    }
                }
            }
            if output == OutputFormat::Text {
                println!("{t}");
            }
        }
        Command::View { id, output } => {
            let s = c
                .get_snapshot(v1::GetSnapshotRequest { id })
                .await
                .map_err(client::status_error)?
                .into_inner();
            let snap = Snapshot::try_from(s)?;
            print(id, &snap, output);
        }
        Command::Watch { breakpoint, output } => {
            let mut stream = c
                .watch_snapshots(v1::WatchSnapshotsRequest {
                    filter: Some(v1::SnapshotFilter {
                        breakpoint_id: breakpoint,
                    }),
                })
                .await
                .map_err(client::status_error)?
                .into_inner();
            eprintln!("watching for snapshots (Ctrl-C to stop)");
            while let Some(s) = stream.message().await.map_err(client::status_error)? {
                let id = s.id;
                let snap = Snapshot::try_from(s)?;
                print(id, &snap, output);
            }
        }
    }
    Ok(())
}

/// The snapshot JSON of `probe --output json`, plus the stored id.
fn with_id(id: u64, s: &Snapshot) -> serde_json::Value {
    let mut j = s.to_json();
    j["id"] = serde_json::json!(id);
    j
}

fn print(id: u64, s: &Snapshot, output: OutputFormat) {
    match output {
        OutputFormat::Json => println!("{}", with_id(id, s)),
        OutputFormat::Text => println!("{}", output::snapshot_text(&format!("snapshot #{id}"), s)),
    }
}
