//! The Snapshot page: the variable tree (each group folds), the stack with file:line, the
//! database rows read at the hit, the trace's held messages, and a link to the trace.
//!
//! Values are written by the snapshot's language renderer, as `snapshot get` prints them,
//! so what the page shows is exactly what the CLI shows.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::Value as Json;
use tracery_model::render::Doc;
use tracery_model::{DatabaseRead, Snapshot};
use tracery_proto::v1::{self, tracery_server::Tracery};

use super::auth::Presented;
use super::html::{self, escape};
use super::{api, error_page, json as j, Web};

pub(super) async fn page(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
    Path(id): Path<String>,
) -> Response {
    let raw = match api::snapshot(&web, &who, &id).await {
        Ok(s) => s,
        Err(status) => return error_page(&status),
    };
    let snap = match Snapshot::try_from(raw.clone()) {
        Ok(s) => s,
        Err(e) => {
            return error_page(&tonic::Status::data_loss(format!(
                "snapshot {id} cannot be shown: {e}"
            )))
        }
    };
    // Held messages of its trace, when that trace is frozen now.
    let held = match snap.trace_id.as_deref() {
        Some(t) => web
            .api
            .get_trace(who.request(v1::GetTraceRequest {
                trace_id: t.to_owned(),
            }))
            .await
            .map(|r| r.into_inner().messages)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let body = render(raw.id, &snap, &held);
    html::layout(&format!("Snapshot {}", raw.id), &body).into_response()
}

fn render(id: u64, s: &Snapshot, held: &[v1::NodeHeldMessage]) -> String {
    let file = html::base_name(&s.location.file);
    let mut out = format!(
        "<h1>Snapshot #{id} <span class=\"sub\">{} at {}:{}</span></h1>\
         <dl class=\"facts\"><dt>time</dt><dd>{}</dd><dt>breakpoint</dt><dd>{}</dd>\
         <dt>process</dt><dd>pid {} · thread {}</dd><dt>language</dt><dd>{}</dd>",
        escape(&s.location.function),
        escape(file),
        s.location.line,
        escape(&humantime::format_rfc3339_micros(s.time).to_string()),
        s.breakpoint_id,
        s.pid,
        s.tid,
        s.language.as_str(),
    );
    if let Some(t) = &s.trace_id {
        out.push_str(&format!(
            "<dt>trace</dt><dd><a class=\"mono\" id=\"trace-link\" href=\"/traces/{t}\">{t}</a></dd>",
            t = escape(t)
        ));
    }
    if let Some(p) = &s.pod {
        out.push_str(&format!(
            "<dt>pod</dt><dd>{}/{} ({}) on {}</dd>",
            escape(&p.namespace),
            escape(&p.pod),
            escape(&p.container),
            escape(&p.node)
        ));
    }
    out.push_str("</dl><div class=\"grid\"><section class=\"card wide\"><h2>Variables</h2>");
    out.push_str(&variables(s));
    out.push_str("</section><section class=\"card wide\"><h2>Stack</h2>");
    out.push_str(&stack(s));
    out.push_str("</section>");
    if !s.databases.is_empty() {
        out.push_str("<section class=\"card wide\"><h2>Database rows at the hit</h2>");
        for read in &s.databases {
            out.push_str(&database(read));
        }
        out.push_str("</section>");
    }
    if !held.is_empty() {
        out.push_str("<section class=\"card wide\"><h2>Held messages of the trace</h2>");
        let held: Vec<Json> = held.iter().map(j::held).collect();
        out.push_str(&super::trace_page::held_table(&held));
        out.push_str("</section>");
    }
    out.push_str("</div>");
    out
}

/// Each variable as a foldable tree; inlined frames' variables under their frame.
fn variables(s: &Snapshot) -> String {
    let lang = s.language.language();
    let mut frames: Vec<Option<&str>> = Vec::new();
    for v in &s.variables {
        if !frames.contains(&v.frame.as_deref()) {
            frames.push(v.frame.as_deref());
        }
    }
    if frames.is_empty() {
        return "<p class=\"empty\">No variables at this location.</p>".into();
    }
    let mut out = String::from("<div class=\"tree-tools\"><button data-tree=\"open\">Expand all</button> <button data-tree=\"close\">Collapse all</button></div>");
    for frame in frames {
        if let Some(f) = frame {
            out.push_str(&format!(
                "<h3 class=\"frame\">{} {}</h3>",
                lang.frame_label(),
                escape(f)
            ));
        }
        out.push_str("<ul class=\"tree\">");
        for v in s.variables.iter().filter(|v| v.frame.as_deref() == frame) {
            let head = format!(
                "<span class=\"kind\">{}</span> <span class=\"name\">{}</span>: \
                 <span class=\"type\">{}</span> = ",
                v.kind.as_str(),
                escape(&v.name),
                escape(&v.type_name)
            );
            out.push_str(&format!(
                "<li data-var=\"{}\">{}</li>",
                escape(&v.name),
                node(&head, &lang.render(&v.value), 0)
            ));
        }
        out.push_str("</ul>");
    }
    out
}

/// One value: a leaf inline, a group as `<details>` (open at the first two levels).
fn node(head: &str, doc: &Doc, depth: usize) -> String {
    match doc {
        Doc::Group { items, close, .. } if !items.is_empty() => {
            let mut out = format!(
                "<details{}><summary>{head}<span class=\"value preview\">{}</span></summary><ul class=\"tree\">",
                if depth < 2 { " open" } else { "" },
                escape(&doc.flat()),
            );
            for (label, item) in items {
                let head = label
                    .as_deref()
                    .map(|l| format!("<span class=\"name\">{}</span>", escape(l)))
                    .unwrap_or_default();
                out.push_str(&format!("<li>{}</li>", node(&head, item, depth + 1)));
            }
            out.push_str(&format!(
                "</ul><span class=\"close\">{}</span></details>",
                escape(close)
            ));
            out
        }
        _ => {
            let text = doc.flat();
            // `<optimized out>`, `<unavailable: ...>`, `<redacted: ...>`: not values.
            let class = if text.starts_with("<optimized out")
                || text.starts_with("<unavailable")
                || text.starts_with("<redacted")
            {
                "value missing"
            } else {
                "value"
            };
            format!(
                "<span class=\"leaf\">{head}<span class=\"{class}\">{}</span></span>",
                escape(&text)
            )
        }
    }
}

fn stack(s: &Snapshot) -> String {
    let mut out = String::from(
        "<table class=\"list stack\"><thead><tr><th>#</th><th>function</th><th>file:line</th>\
         <th>address</th></tr></thead><tbody>",
    );
    for (i, f) in s.stack.iter().enumerate() {
        let place = match (&f.file, f.line) {
            (Some(file), Some(line)) => format!("{}:{line}", html::base_name(file)),
            (Some(file), None) => html::base_name(file).to_owned(),
            _ => "?".into(),
        };
        out.push_str(&format!(
            "<tr><td>{i}</td><td class=\"fn\">{}{}</td><td class=\"loc\" title=\"{}\">{}</td>\
             <td class=\"mono dim\">{:#x}</td></tr>",
            escape(&f.function),
            if f.inlined {
                " <span class=\"tag\">inlined</span>"
            } else {
                ""
            },
            escape(f.file.as_deref().unwrap_or("")),
            escape(&place),
            f.address
        ));
    }
    out.push_str("</tbody></table>");
    out
}

fn database(r: &DatabaseRead) -> String {
    let mut out = format!(
        "<h3>{} <span class=\"dim\">({})</span></h3><pre class=\"query\">{}</pre>",
        escape(&r.database),
        escape(&r.kind),
        escape(&r.query)
    );
    if let Some(e) = &r.error {
        out.push_str(&format!("<p class=\"error\">{}</p>", escape(e)));
        return out;
    }
    let columns: Vec<String> = match r.rows.first() {
        Some(Json::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    out.push_str("<table class=\"list rows\"><thead><tr>");
    if columns.is_empty() {
        out.push_str("<th>reply</th>");
    }
    for c in &columns {
        out.push_str(&format!("<th>{}</th>", escape(c)));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &r.rows {
        out.push_str("<tr>");
        if columns.is_empty() {
            out.push_str(&format!("<td>{}</td>", escape(&cell(row))));
        }
        for c in &columns {
            out.push_str(&format!("<td>{}</td>", escape(&cell(&row[c.as_str()]))));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if r.rows.is_empty() {
        out.push_str("<p class=\"empty\">No rows.</p>");
    }
    if r.truncated {
        out.push_str("<p class=\"dim\">Only the first rows were kept (the capture limit).</p>");
    }
    out
}

fn cell(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => "NULL".into(),
        other => other.to_string(),
    }
}
