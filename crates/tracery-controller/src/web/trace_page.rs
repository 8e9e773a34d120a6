//! The Trace page: what is frozen where (deadline countdown, Resume), then the timeline,
//! arrows, critical path, service graph and time slider, which `trace.js` draws from
//! `GET /api/v1/traces/{id}` (one request; the drawing is one SVG string, so 2,000 events
//! render in one layout pass).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::Value;

use super::auth::Presented;
use super::html::{self, escape};
use super::{error_page, timeline, Web};

pub(super) async fn page(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
    Path(id): Path<String>,
) -> Response {
    let trace = match timeline::trace(&web, &who, &id).await {
        Ok(t) => t,
        Err(status) => return error_page(&status),
    };
    let trace_id = trace["trace_id"].as_str().unwrap_or(&id).to_owned();
    let mut body = format!(
        "<h1>Trace <span class=\"mono\">{t}</span></h1><div id=\"trace\" data-trace=\"{t}\">",
        t = escape(&trace_id)
    );
    body.push_str(&frozen_box(&trace));
    body.push_str(
        "<section class=\"card wide\"><h2>Timeline <span class=\"sub\" id=\"timeline-note\"></span></h2>\
         <div class=\"legend\"><span class=\"dot hit\"></span>hit <span class=\"dot recv\"></span>receive \
         <span class=\"dot send\"></span>send <span class=\"dot held\"></span>held \
         <span class=\"line crit\"></span>critical path</div>\
         <div id=\"timeline\" class=\"timeline\"><p class=\"empty\">Loading…</p></div>\
         <div class=\"slider\"><label for=\"step\">Step</label>\
         <input type=\"range\" id=\"step\" min=\"0\" max=\"0\" value=\"0\">\
         <span id=\"step-label\"></span></div>\
         <div class=\"split\"><div id=\"details\" class=\"details\"><p class=\"empty\">\
         Click an event, or move the slider.</p></div>\
         <div id=\"state\" class=\"details\"></div></div></section>\
         <section class=\"card\"><h2>Service graph</h2><div id=\"graph\"></div></section>",
    );
    body.push_str(&snapshots_box(&trace));
    body.push_str("</div><script src=\"/assets/trace.js\"></script>");
    html::layout(&format!("Trace {trace_id}"), &body).into_response()
}

/// What is frozen where, the deadline, and Resume; or how the last freeze ended.
fn frozen_box(t: &Value) -> String {
    let f = &t["frozen"];
    if f["frozen"] != true {
        let last = match t["last_release"]["reason"].as_str() {
            Some(reason) => format!(
                "Not frozen; last released ({}) at {}.",
                escape(reason),
                escape(t["last_release"]["at"].as_str().unwrap_or("?"))
            ),
            None => "Not frozen.".into(),
        };
        return format!("<section class=\"card wide\" id=\"frozen\"><p>{last}</p></section>");
    }
    let mut out = format!(
        "<section class=\"card wide frozen\" id=\"frozen\"><h2>Frozen \
         <span class=\"countdown\">deadline in <time id=\"deadline\" data-countdown=\"{}\"></time></span></h2>\
         <button id=\"resume\" class=\"primary\">Resume</button> \
         <span id=\"resume-message\" class=\"message\" role=\"status\"></span>",
        escape(f["deadline"].as_str().unwrap_or(""))
    );
    let threads = f["threads"].as_array().cloned().unwrap_or_default();
    if !threads.is_empty() {
        out.push_str(
            "<h3>Held threads</h3><table class=\"list\"><thead><tr><th>node</th><th>process</th>\
             <th>where</th><th>stopped</th></tr></thead><tbody>",
        );
        for th in &threads {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}/{}</td><td><code>{}</code></td><td>{}</td></tr>",
                escape(th["node"].as_str().unwrap_or("")),
                th["pid"],
                th["tid"],
                escape(th["location"].as_str().unwrap_or("")),
                match th["not_suspended_reason"].as_str() {
                    Some(r) => format!("no: {}", escape(r)),
                    None => "yes".into(),
                }
            ));
        }
        out.push_str("</tbody></table>");
    }
    let messages = f["messages"].as_array().cloned().unwrap_or_default();
    if !messages.is_empty() {
        out.push_str("<h3>Held messages</h3>");
        out.push_str(&held_table(&messages));
    }
    out.push_str("</section>");
    out
}

fn snapshots_box(t: &Value) -> String {
    let snaps = t["snapshots"].as_array().cloned().unwrap_or_default();
    let mut out = String::from("<section class=\"card\"><h2>Snapshots</h2>");
    if snaps.is_empty() {
        out.push_str("<p class=\"empty\">No snapshot of this trace.</p>");
    }
    out.push_str("<ul class=\"traces\">");
    for s in &snaps {
        out.push_str(&format!(
            "<li><a href=\"/snapshots/{id}\">#{id}</a> <span class=\"fn\">{}</span> \
             <span class=\"loc\">{}:{}</span> <span class=\"dim\">pid {}</span></li>",
            escape(s["function"].as_str().unwrap_or("")),
            escape(html::base_name(s["file"].as_str().unwrap_or(""))),
            s["line"],
            s["pid"],
            id = s["id"],
        ));
    }
    out.push_str("</ul></section>");
    out
}

/// Held messages (as `json::held`): node, process, connection, bytes, and the decoded SQL
/// or the first line.
pub(super) fn held_table(messages: &[Value]) -> String {
    let mut out = String::from(
        "<table class=\"list\"><thead><tr><th>node</th><th>process</th><th>connection</th>\
         <th>bytes</th><th>message</th></tr></thead><tbody>",
    );
    for m in messages {
        let what = m["decoded"]["messages"]
            .as_array()
            // The first part with SQL: a Close or Sync before a Parse has none ("").
            .and_then(|ms| {
                ms.iter()
                    .find_map(|x| x["sql"].as_str().filter(|q| !q.is_empty()))
            })
            .or_else(|| m["first_line"].as_str())
            .unwrap_or("");
        out.push_str(&format!(
            "<tr class=\"held-row\"><td>{}</td><td>{}/{}</td><td class=\"mono\">{} → {}</td>\
             <td>{}</td><td><span class=\"tag held\">held{}</span> <code>{}</code></td></tr>",
            escape(m["node"].as_str().unwrap_or("")),
            m["pid"],
            m["tid"],
            escape(m["local"].as_str().unwrap_or("?")),
            escape(m["peer"].as_str().unwrap_or("?")),
            m["bytes"],
            if m["behind"] == true { ", behind" } else { "" },
            escape(what)
        ));
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::held_table;

    #[test]
    fn a_held_message_shows_the_sql_of_its_first_part_that_has_any() {
        // One write of Close, Sync and Parse, as tokio-postgres sends an INSERT at times.
        let m = json!({
            "node": "n", "pid": 1, "tid": 2, "local": "a:1", "peer": "b:2", "bytes": 396,
            "first_line": "C....Ss1.S....P.....INSERT INTO orders",
            "decoded": {"protocol": "postgresql", "messages": [
                {"kind": "Close", "sql": ""},
                {"kind": "Sync", "sql": ""},
                {"kind": "Parse", "sql": "INSERT INTO orders (customer) VALUES ($1)"},
            ]},
        });
        let html = held_table(&[m]);
        assert!(
            html.contains("<code>INSERT INTO orders (customer) VALUES ($1)</code>"),
            "{html}"
        );
    }

    #[test]
    fn a_held_message_without_sql_shows_its_first_line() {
        let m = json!({
            "node": "n", "pid": 1, "tid": 2, "local": "a:1", "peer": "b:2", "bytes": 14,
            "first_line": "C....Ss1.S....",
            "decoded": {"protocol": "postgresql", "messages": [
                {"kind": "Close", "sql": ""}, {"kind": "Sync", "sql": ""},
            ]},
        });
        assert!(held_table(&[m]).contains("<code>C....Ss1.S....</code>"));
    }
}
