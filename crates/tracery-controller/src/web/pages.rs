//! The start page and the Breakpoints page, rendered on the server; `app.js` keeps them
//! live and drives the set and delete forms.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::Value;
use tracery_proto::v1::{self, tracery_server::Tracery};

use super::auth::Presented;
use super::html::{self, escape};
use super::{api, error_page, json as j, Web};

/// Snapshots listed on the start page.
const LATEST: u32 = 20;

pub(super) async fn home(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
) -> Response {
    match home_body(&web, &who).await {
        Ok(body) => html::layout("Overview", &body).into_response(),
        Err(status) => error_page(&status),
    }
}

async fn home_body(web: &Web, who: &Presented) -> Result<String, tonic::Status> {
    let snaps = web
        .api
        .list_snapshots(who.request(v1::ListSnapshotsRequest {
            filter: None,
            limit: LATEST,
            page_token: String::new(),
        }))
        .await?
        .into_inner()
        .snapshots;
    let bps = web
        .api
        .list_breakpoints(who.request(v1::ListBreakpointsRequest {}))
        .await?
        .into_inner()
        .breakpoints;
    let traces = api::traces(web, who).await?;
    let mut out = String::from("<h1>Overview</h1><div class=\"grid\">");
    out.push_str("<section class=\"card wide\"><h2>Latest snapshots</h2>");
    out.push_str(&snapshot_table(&snaps));
    out.push_str("</section><section class=\"card\"><h2>Live breakpoints</h2>");
    out.push_str(&breakpoint_table(web, &bps, false));
    out.push_str("<p><a href=\"/breakpoints\">Set or delete breakpoints →</a></p></section>");
    out.push_str("<section class=\"card\"><h2>Traces</h2>");
    out.push_str(&trace_lists(&traces));
    out.push_str("</section></div>");
    Ok(out)
}

/// A table of snapshots, newest first; `app.js` adds rows as hits arrive.
fn snapshot_table(snaps: &[v1::Snapshot]) -> String {
    let mut out = String::from(
        "<table class=\"list\"><thead><tr><th>snapshot</th><th>time</th><th>breakpoint</th>\
         <th>where</th><th>process</th><th>trace</th></tr></thead><tbody id=\"snapshots\">",
    );
    for s in snaps {
        let loc = s.location.clone().unwrap_or_default();
        out.push_str(&snapshot_row(
            s.id,
            j::time(s.time).map(html::clock).unwrap_or_default(),
            s.breakpoint_id,
            &loc,
            s.pid,
            s.tid,
            s.trace_id.as_deref(),
        ));
    }
    out.push_str("</tbody></table>");
    if snaps.is_empty() {
        out.push_str(
            "<p class=\"empty\" id=\"no-snapshots\">No snapshots yet: set a breakpoint and \
             make its code run.</p>",
        );
    }
    out
}

fn snapshot_row(
    id: u64,
    time: String,
    breakpoint: u64,
    loc: &v1::Location,
    pid: u32,
    tid: u32,
    trace: Option<&str>,
) -> String {
    let trace = match trace.filter(|t| !t.is_empty()) {
        Some(t) => format!(
            "<a class=\"mono\" href=\"/traces/{t}\">{}…</a>",
            escape(t.get(..12).unwrap_or(t))
        ),
        None => String::from("<span class=\"dim\">none</span>"),
    };
    format!(
        "<tr data-snapshot=\"{id}\"><td><a href=\"/snapshots/{id}\">#{id}</a></td><td>{}</td>\
         <td>{breakpoint}</td><td><span class=\"fn\">{}</span> <span class=\"loc\">{}:{}</span></td>\
         <td>{pid}/{tid}</td><td>{trace}</td></tr>",
        escape(&time),
        escape(&loc.function),
        escape(html::base_name(&loc.file)),
        loc.line,
    )
}

/// Live breakpoints; `with_delete` adds a Delete button per row.
fn breakpoint_table(web: &Web, bps: &[v1::Breakpoint], with_delete: bool) -> String {
    if bps.is_empty() {
        return "<p class=\"empty\">No live breakpoints.</p>".into();
    }
    let mut out = String::from(
        "<table class=\"list\"><thead><tr><th>id</th><th>location</th><th>target</th>\
         <th>hits</th><th>limits</th><th>expires</th><th>problems</th>",
    );
    if with_delete {
        out.push_str("<th></th>");
    }
    out.push_str("</tr></thead><tbody>");
    for b in bps {
        let jb = j::breakpoint(b, &web.registry.problems(b.id));
        out.push_str(&breakpoint_row(&jb, with_delete));
    }
    out.push_str("</tbody></table>");
    out
}

fn breakpoint_row(b: &Value, with_delete: bool) -> String {
    let id = b["id"].as_u64().unwrap_or_default();
    let text = |k: &str| b[k].as_str().unwrap_or("").to_owned();
    let mut scope = Vec::new();
    if let Some(w) = b["when"].as_str() {
        scope.push(format!("when <code>{}</code>", escape(w)));
    }
    if let Some(t) = b["trace_id"].as_str() {
        scope.push(format!("trace <span class=\"mono\">{}</span>", escape(t)));
    }
    if b["freeze"] == true {
        scope.push(format!(
            "<span class=\"tag held\">freeze {}s</span>",
            b["freeze_timeout_seconds"]
        ));
    }
    let problems: Vec<String> = b["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(Value::as_str)
                .map(|p| format!("<li>{}</li>", escape(p)))
                .collect()
        })
        .unwrap_or_default();
    let problems = if problems.is_empty() {
        "<span class=\"dim\">none</span>".to_owned()
    } else {
        format!("<ul class=\"problems\">{}</ul>", problems.concat())
    };
    let expires = text("expires");
    let mut row = format!(
        "<tr data-breakpoint=\"{id}\"><td>{id}</td><td><code>{}</code> {}</td><td>{}</td>\
         <td><span data-hits-of=\"{id}\">{}</span> / {}</td><td>{}/s{}</td>\
         <td><time data-countdown=\"{}\">{}</time></td><td>{problems}</td>",
        escape(&text("location")),
        scope.join(" "),
        escape(&text("target")),
        b["hits"],
        b["hit_limit"],
        b["rate_per_second"],
        if b["drops"].as_u64().unwrap_or(0) > 0 {
            format!(", {} dropped", b["drops"])
        } else {
            String::new()
        },
        escape(&expires),
        escape(&expires),
    );
    if with_delete {
        row.push_str(&format!(
            "<td><button class=\"danger\" data-delete=\"{id}\">Delete</button></td>"
        ));
    }
    row.push_str("</tr>");
    row
}

fn trace_lists(traces: &Value) -> String {
    let mut out = String::from("<h3>Frozen</h3>");
    let frozen = traces["frozen"].as_array().cloned().unwrap_or_default();
    if frozen.is_empty() {
        out.push_str("<p class=\"empty\" id=\"no-frozen\">No frozen request.</p>");
    }
    out.push_str("<ul class=\"traces\" id=\"frozen-traces\">");
    for t in &frozen {
        let id = t["trace_id"].as_str().unwrap_or("");
        let f = &t["frozen"];
        out.push_str(&format!(
            "<li><a class=\"mono\" href=\"/traces/{id}\">{id}</a> <span class=\"tag held\">\
             {} thread(s), {} held message(s)</span> deadline <time data-countdown=\"{}\"></time></li>",
            f["threads"].as_array().map_or(0, Vec::len),
            f["messages"].as_array().map_or(0, Vec::len),
            escape(f["deadline"].as_str().unwrap_or("")),
            id = escape(id),
        ));
    }
    out.push_str("</ul><h3>Recent</h3>");
    let recent = traces["recent"].as_array().cloned().unwrap_or_default();
    if recent.is_empty() {
        out.push_str("<p class=\"empty\">No snapshot with a trace id yet.</p>");
    }
    out.push_str("<ul class=\"traces\">");
    for t in recent.iter().take(10) {
        let id = escape(t["trace_id"].as_str().unwrap_or(""));
        out.push_str(&format!(
            "<li><a class=\"mono\" href=\"/traces/{id}\">{id}</a> <span class=\"dim\">{} · {}</span></li>",
            escape(t["function"].as_str().unwrap_or("")),
            escape(t["time"].as_str().unwrap_or("")),
        ));
    }
    out.push_str("</ul>");
    out
}

pub(super) async fn breakpoints(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
) -> Response {
    let bps = match web
        .api
        .list_breakpoints(who.request(v1::ListBreakpointsRequest {}))
        .await
    {
        Ok(r) => r.into_inner().breakpoints,
        Err(status) => return error_page(&status),
    };
    let mut body =
        String::from("<h1>Breakpoints</h1><div class=\"grid\"><section class=\"card wide\">");
    body.push_str(&breakpoint_table(&web, &bps, true));
    body.push_str("<div id=\"delete-message\" class=\"message\" role=\"status\"></div></section>");
    body.push_str(SET_FORM);
    body.push_str("</div>");
    html::layout("Breakpoints", &body).into_response()
}

/// `breakpoint set`'s flags as a form; `app.js` posts it as JSON and shows the answer.
const SET_FORM: &str = r#"<section class="card wide"><h2>Set a breakpoint</h2>
<form id="set-form" class="form">
<label>Target <span class="pair"><select name="target_kind"><option value="service">service</option><option value="pid">pid</option><option value="exe">exe</option></select>
<input name="target" placeholder="orders, 4242 or /usr/bin/orders" required></span></label>
<label>Location <input name="location" placeholder="orders.c:42 or process_order" required></label>
<label>When <input name="when" placeholder="order.qty > 10 (optional)"></label>
<label>Hits <input name="hits" type="number" min="1" placeholder="100"></label>
<label>Expire <input name="expire" placeholder="1h"></label>
<label>Rate (per s) <input name="rate" type="number" min="1" placeholder="10"></label>
<label>Trace id <input name="trace_id" placeholder="32 hex digits (optional)"></label>
<label>Header <input name="header" placeholder="x-tenant=acme (optional)"></label>
<label class="check"><input name="freeze" type="checkbox"> Freeze the request</label>
<label>Freeze timeout <input name="freeze_timeout" placeholder="60s"></label>
<label class="full">Captures, one per line <textarea name="captures" rows="2" placeholder="shop: SELECT * FROM orders WHERE customer = {order.customer}"></textarea></label>
<div class="full"><button type="submit">Set breakpoint</button></div>
</form><pre id="set-message" class="message" role="status"></pre></section>"#;
