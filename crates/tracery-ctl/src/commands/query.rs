//! `tracery-ctl query 'SQL'`: one read-only SQL statement over the store's views
//! (`snapshots`, `variables`, `messages`, `traces`; the README documents their columns).

use comfy_table::Table;
use serde_json::{Map, Value as Json};
use tracery_proto::v1;

use crate::{client, OutputFormat};

/// Arguments of `tracery-ctl query`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// One SQL statement, read-only (a write is refused), over the views `snapshots`,
    /// `variables`, `messages` and `traces`; the same SQL runs on SQLite and PostgreSQL
    /// stores when it keeps to common SQL.
    pub sql: String,
    /// At most this many rows.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Runs `query`.
pub async fn run(controller: &client::Controller, args: Args) -> anyhow::Result<()> {
    let mut c = client::connect(controller).await?;
    let r = c
        .query(v1::QueryRequest {
            sql: args.sql,
            limit: args.limit,
        })
        .await
        .map_err(client::status_error)?
        .into_inner();
    let rows: Vec<Vec<Json>> = r
        .rows
        .iter()
        .map(|row| {
            row.cells
                .iter()
                .map(|c| serde_json::from_str(c).unwrap_or_else(|_| Json::from(c.as_str())))
                .collect()
        })
        .collect();
    match args.output {
        OutputFormat::Json => {
            for row in &rows {
                let o: Map<String, Json> =
                    r.columns.iter().cloned().zip(row.iter().cloned()).collect();
                println!("{}", Json::Object(o));
            }
        }
        OutputFormat::Text => {
            let mut table = Table::new();
            table.set_header(&r.columns);
            for row in &rows {
                table.add_row(row.iter().map(cell_text));
            }
            println!("{table}");
            let n = rows.len();
            println!("{n} row{}", if n == 1 { "" } else { "s" });
        }
    }
    if r.truncated {
        eprintln!(
            "warning: more rows matched; only the first {} are shown (--limit)",
            rows.len()
        );
    }
    Ok(())
}

/// A cell for people: strings without quotes, SQL NULL as `NULL`.
fn cell_text(v: &Json) -> String {
    match v {
        Json::Null => "NULL".into(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}
