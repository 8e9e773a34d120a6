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
        /// Your tracing UI, to print a link to the snapshot's trace: a Jaeger base URL
        /// (http://localhost:16686 links to URL/trace/ID), or a URL with `{trace_id}` in
        /// it for another tool.
        #[arg(long, value_name = "URL", env = "TRACERY_TRACE_UI")]
        trace_ui: Option<String>,
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
pub async fn run(controller: &client::Controller, cmd: Command) -> anyhow::Result<()> {
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
            let snaps = resp
                .snapshots
                .into_iter()
                .map(|s| Ok((s.id, Snapshot::try_from(s)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            match output {
                OutputFormat::Json => {
                    for (id, snap) in &snaps {
                        println!("{}", with_id(*id, snap));
                    }
                }
                OutputFormat::Text => println!("{}", list_table(&snaps)),
            }
        }
        Command::View {
            id,
            output,
            trace_ui,
        } => {
            let s = c
                .get_snapshot(v1::GetSnapshotRequest { id })
                .await
                .map_err(client::status_error)?
                .into_inner();
            let snap = Snapshot::try_from(s)?;
            let link = trace_ui
                .as_deref()
                .filter(|u| !u.is_empty())
                .and_then(|ui| Some(trace_link(ui, snap.trace_id.as_deref()?)));
            match output {
                OutputFormat::Json => {
                    let mut j = with_id(id, &snap);
                    if let Some(link) = &link {
                        j["trace_url"] = serde_json::json!(link);
                    }
                    println!("{j}");
                }
                OutputFormat::Text => {
                    print(id, &snap, output);
                    match (&link, &trace_ui) {
                        (Some(link), _) => println!("trace: {link}"),
                        (None, Some(_)) => {
                            println!("trace: none (the hit served no traced request)")
                        }
                        (None, None) => {}
                    }
                }
            }
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

/// `snapshot list` for people; pod and node columns only when some snapshot ran in a
/// cluster pod (`snapshot view` shows the container too).
fn list_table(snaps: &[(u64, Snapshot)]) -> Table {
    let cluster = snaps.iter().any(|(_, s)| s.pod.is_some());
    let mut header = vec!["id", "breakpoint", "time"];
    if cluster {
        header.extend(["pod", "node"]);
    }
    header.extend(["pid", "tid", "at", "trace"]);
    let mut t = Table::new();
    t.set_header(header);
    for (id, snap) in snaps {
        let mut row = vec![
            id.to_string(),
            snap.breakpoint_id.to_string(),
            humantime::format_rfc3339_millis(snap.time).to_string(),
        ];
        if cluster {
            let (pod, node) = snap
                .pod
                .as_ref()
                .map(|p| (format!("{}/{}", p.namespace, p.pod), p.node.clone()))
                .unwrap_or_default();
            row.extend([pod, node]);
        }
        row.extend([
            snap.pid.to_string(),
            snap.tid.to_string(),
            format!(
                "{} ({}:{})",
                snap.location.function, snap.location.file, snap.location.line
            ),
            snap.trace_id.clone().unwrap_or_default(),
        ]);
        t.add_row(row);
    }
    t
}

/// The snapshot JSON of `probe --output json`, plus the stored id (and `pod` in a cluster).
fn with_id(id: u64, s: &Snapshot) -> serde_json::Value {
    let mut j = s.to_json();
    j["id"] = serde_json::json!(id);
    j
}

/// The page of `trace_id` in a tracing UI: `{trace_id}` in `ui` is replaced, else `ui` is
/// taken as a Jaeger base URL.
fn trace_link(ui: &str, trace_id: &str) -> String {
    if ui.contains("{trace_id}") {
        ui.replace("{trace_id}", trace_id)
    } else {
        format!("{}/trace/{trace_id}", ui.trim_end_matches('/'))
    }
}

fn print(id: u64, s: &Snapshot, output: OutputFormat) {
    match output {
        OutputFormat::Json => println!("{}", with_id(id, s)),
        OutputFormat::Text => println!("{}", output::snapshot_text(&format!("snapshot #{id}"), s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracery_model::{Location, PodRef, SourceLanguage};

    fn snapshot(pod: Option<PodRef>) -> Snapshot {
        Snapshot {
            breakpoint_id: 3,
            pid: 4242,
            tid: 4243,
            time: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_000_000),
            location: Location {
                function: "orders::handle".into(),
                file: "src/main.rs".into(),
                line: 42,
                address: 0x1234,
            },
            variables: Vec::new(),
            stack: Vec::new(),
            trace_id: None,
            span_id: None,
            language: SourceLanguage::Rust,
            databases: Vec::new(),
            pod,
        }
    }

    fn in_pod() -> Snapshot {
        snapshot(Some(PodRef {
            namespace: "shop".into(),
            pod: "orders-7d9f8-x2k4p".into(),
            container: "orders".into(),
            node: "node-a".into(),
        }))
    }

    #[test]
    fn view_and_json_say_which_pod_it_ran_in() {
        let text = output::snapshot_text("snapshot #9", &in_pod());
        assert!(
            text.contains("\n  pod shop/orders-7d9f8-x2k4p, container orders, node node-a\n"),
            "{text}"
        );
        assert_eq!(
            with_id(9, &in_pod())["pod"],
            serde_json::json!({
                "namespace": "shop",
                "pod": "orders-7d9f8-x2k4p",
                "container": "orders",
                "node": "node-a",
            })
        );
        let outside = snapshot(None);
        assert!(!output::snapshot_text("snapshot #9", &outside).contains("pod "));
        assert!(with_id(9, &outside).get("pod").is_none());
    }

    #[test]
    fn a_trace_link_is_a_jaeger_page_or_the_given_template() {
        let t = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_link("http://localhost:16686/", t),
            format!("http://localhost:16686/trace/{t}")
        );
        assert_eq!(
            trace_link("https://tempo.example/explore?trace={trace_id}", t),
            format!("https://tempo.example/explore?trace={t}")
        );
    }

    #[test]
    fn list_has_pod_columns_only_in_a_cluster() {
        let text = list_table(&[(8, snapshot(None)), (9, in_pod())]).to_string();
        let header = text.lines().nth(1).unwrap();
        assert!(
            header.contains("| pod ") && header.contains("| node "),
            "{text}"
        );
        assert!(
            text.contains("shop/orders-7d9f8-x2k4p") && text.contains("node-a"),
            "{text}"
        );
        let text = list_table(&[(8, snapshot(None))]).to_string();
        assert!(!text.contains("| pod "), "{text}");
    }
}
