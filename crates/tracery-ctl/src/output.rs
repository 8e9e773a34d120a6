//! Text rendering of snapshots for people.

use std::fmt::Write;

use comfy_table::Table;
use serde_json::Value as Json;
use tracery_model::{DatabaseRead, PodRef, Snapshot};

/// Widest cell of a row table before it is cut: the full value is in `--output json`.
const MAX_CELL: usize = 80;

/// A snapshot as a readable block: `title` (e.g. `hit #3`), variables as a tree, then the
/// stack.
pub fn snapshot_text(title: &str, s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{title}  pid {} tid {}  {}",
        s.pid,
        s.tid,
        humantime::format_rfc3339_micros(s.time)
    );
    let _ = writeln!(
        out,
        "  at {} ({}:{})  {:#x}",
        s.location.function, s.location.file, s.location.line, s.location.address
    );
    if let Some(p) = &s.pod {
        let _ = writeln!(out, "  {}", pod_text(p));
    }
    if let Some(t) = &s.trace_id {
        let _ = writeln!(out, "  trace {t}");
    }
    let _ = writeln!(out, "  variables:");
    if s.variables.is_empty() {
        let _ = writeln!(out, "    (none in scope)");
    }
    for line in tracery_model::render_text(&s.variables, s.language.language()).lines() {
        let _ = writeln!(out, "    {line}");
    }
    let _ = writeln!(out, "  stack:");
    for (i, f) in s.stack.iter().enumerate() {
        let loc = match (&f.file, f.line) {
            (Some(file), Some(line)) => format!(" at {file}:{line}"),
            (Some(file), None) => format!(" at {file}"),
            _ => String::new(),
        };
        let inl = if f.inlined { " [inlined]" } else { "" };
        let _ = writeln!(out, "    #{i:<2} {}{loc}{inl}", f.function);
    }
    if !s.databases.is_empty() {
        let _ = writeln!(out, "  databases:");
        for read in &s.databases {
            for line in database_text(read).lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out
}

/// Where the process ran in a cluster: `pod shop/orders-7d9f8-x2k4p, container orders,
/// node node-a` (parts the agent did not know are left out).
pub fn pod_text(p: &PodRef) -> String {
    let mut parts = vec![format!("pod {}/{}", p.namespace, p.pod)];
    if !p.container.is_empty() {
        parts.push(format!("container {}", p.container));
    }
    if !p.node.is_empty() {
        parts.push(format!("node {}", p.node));
    }
    parts.join(", ")
}

/// One capture query: what ran, with which values, when, how consistent, and its rows as
/// a table (or its error).
fn database_text(r: &DatabaseRead) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} ({}): {}", r.database, r.kind, r.query);
    for (path, value) in &r.params {
        let _ = writeln!(out, "  {{{path}}} = {value}");
    }
    let consistency = match &r.consistency {
        Json::Null => String::new(),
        c => format!("  {c}"),
    };
    let _ = writeln!(
        out,
        "  read at {}{consistency}",
        humantime::format_rfc3339_micros(r.read_at)
    );
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  error: {e}");
        return out;
    }
    let cut = if r.truncated {
        " (truncated by the capture limits; raise them on the controller to see more)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "  {} row{}{cut}",
        r.rows.len(),
        if r.rows.len() == 1 { "" } else { "s" }
    );
    if !r.rows.is_empty() {
        let _ = writeln!(out, "{}", rows_table(&r.rows));
    }
    out
}

/// Rows as a table: objects (PostgreSQL rows, MongoDB documents, Redis hashes) get a
/// column per key, in first-seen order; anything else one `value` column.
fn rows_table(rows: &[Json]) -> Table {
    let mut columns: Vec<&str> = Vec::new();
    if rows.iter().all(Json::is_object) {
        for row in rows.iter().filter_map(Json::as_object) {
            for key in row.keys() {
                if !columns.contains(&key.as_str()) {
                    columns.push(key);
                }
            }
        }
    }
    let mut t = Table::new();
    if columns.is_empty() {
        t.set_header(["value"]);
        for row in rows {
            t.add_row([cell(row)]);
        }
    } else {
        t.set_header(columns.iter().copied());
        for row in rows {
            t.add_row(
                columns
                    .iter()
                    .map(|c| row.get(*c).map(cell).unwrap_or_default()),
            );
        }
    }
    t
}

/// A value as a cell: strings bare, NULL for null, other values as compact JSON.
fn cell(v: &Json) -> String {
    let text = match v {
        Json::String(s) => s.clone(),
        Json::Null => "NULL".to_owned(),
        other => other.to_string(),
    };
    if text.chars().count() > MAX_CELL {
        let cut: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_in_a_pod_says_where_it_ran() {
        let mut p = PodRef {
            namespace: "shop".into(),
            pod: "orders-7d9f8-x2k4p".into(),
            container: "orders".into(),
            node: "node-a".into(),
        };
        assert_eq!(
            pod_text(&p),
            "pod shop/orders-7d9f8-x2k4p, container orders, node node-a"
        );
        p.container.clear();
        assert_eq!(pod_text(&p), "pod shop/orders-7d9f8-x2k4p, node node-a");
    }
}
