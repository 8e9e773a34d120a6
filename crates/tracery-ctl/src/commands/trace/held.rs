//! Held messages in `trace list|view|resume`: the outbound messages of a frozen trace that
//! wait on their node, and the warning when other requests wait behind them.

use std::collections::BTreeMap;

use comfy_table::Table;
use serde_json::{json, Value as Json};
use tracery_model::wire::DecodedMessage;
use tracery_proto::v1;

use super::rfc3339;

/// Characters of a message's first line shown in a table (JSON has all of it).
const FIRST_LINE_SHOWN: usize = 48;

/// A held message as JSON, every field included.
pub fn held_json(h: &v1::NodeHeldMessage) -> Json {
    let m = h.message.clone().unwrap_or_default();
    let decoded = decoded(&m).map(|d| d.to_json());
    json!({
        "agent_id": h.agent_id, "node": h.node, "agent_connected": h.agent_connected,
        "pid": m.pid, "tid": m.tid, "socket": m.socket,
        "local": (!m.local.is_empty()).then_some(m.local),
        "peer": (!m.peer.is_empty()).then_some(m.peer),
        "bytes": m.bytes, "first_line": m.first_line,
        "decoded": decoded,
        "behind": m.behind, "shared": m.shared, "at": rfc3339(m.at),
    })
}

/// The message's decoded form; `None` when the agent saw no bytes of it (or an agent of
/// another version sent one this CLI cannot read).
fn decoded(m: &v1::HeldMessage) -> Option<DecodedMessage> {
    DecodedMessage::try_from(m.decoded.clone()?).ok()
}

/// What the trace was about to send, one block per held message of its own (those held
/// behind it belong to other requests), each decoded by protocol.
pub fn pending_text(messages: &[v1::NodeHeldMessage]) -> String {
    let mut out = String::new();
    for h in messages {
        let Some(m) = h.message.as_ref().filter(|m| !m.behind) else {
            continue;
        };
        let Some(d) = decoded(m) else { continue };
        out.push_str(&format!(
            "  {} pid {} {} ({}, {} bytes)\n",
            h.node,
            m.pid,
            connection(m),
            d.protocol(),
            m.bytes
        ));
        for line in d.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

/// A hold release of one node as JSON.
pub fn hold_release_json(r: &v1::NodeHoldRelease) -> Json {
    let release = r.release.clone().unwrap_or_default();
    json!({
        "agent_id": r.agent_id, "node": r.node, "messages": release.messages,
        "bytes": release.bytes, "dropped_bytes": release.dropped_bytes,
        "reason": v1::ReleaseReason::try_from(release.reason).unwrap_or_default().describe(),
        "at": rfc3339(release.at),
    })
}

fn addr(a: &str) -> &str {
    if a.is_empty() {
        "?"
    } else {
        a
    }
}

/// `local -> peer`, `?` for an unknown side.
fn connection(m: &v1::HeldMessage) -> String {
    format!("{} -> {}", addr(&m.local), addr(&m.peer))
}

/// At most [`FIRST_LINE_SHOWN`] characters, `…` when cut.
fn shortened(line: &str) -> String {
    match line.char_indices().nth(FIRST_LINE_SHOWN) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// Held messages as a table; with a `trace` column when they come from several traces.
pub fn held_table(rows: &[(&str, &v1::NodeHeldMessage)], with_trace: bool) -> Table {
    let mut t = Table::new();
    let mut header = vec![
        "node",
        "pid/tid",
        "socket",
        "connection",
        "bytes",
        "first line",
    ];
    if with_trace {
        header.insert(0, "trace");
    }
    t.set_header(header);
    for (trace_id, h) in rows {
        let m = h.message.clone().unwrap_or_default();
        let node = if h.agent_connected {
            h.node.clone()
        } else {
            format!("{} (agent disconnected)", h.node)
        };
        // A message of another request, held only so T's bytes keep their order.
        let line = if m.behind {
            format!("[behind] {}", shortened(&m.first_line))
        } else {
            shortened(&m.first_line)
        };
        let mut row = vec![
            node,
            format!("{}/{}", m.pid, m.tid),
            m.socket.to_string(),
            connection(&m),
            m.bytes.to_string(),
            line,
        ];
        if with_trace {
            row.insert(0, (*trace_id).to_owned());
        }
        t.add_row(row);
    }
    t
}

/// One warning per connection of the trace that other requests use too: their messages
/// sent after the trace's wait behind it, so freezing T also delays them.
pub fn shared_warnings(trace_id: &str, messages: &[v1::NodeHeldMessage]) -> Vec<String> {
    // (node, socket) -> (first message seen, shared, messages behind)
    let mut by_socket: BTreeMap<(&str, u64), (&v1::HeldMessage, bool, usize)> = BTreeMap::new();
    for h in messages {
        let Some(m) = &h.message else { continue };
        let e = by_socket
            .entry((h.node.as_str(), m.socket))
            .or_insert((m, false, 0));
        e.1 |= m.shared;
        e.2 += usize::from(m.behind);
    }
    by_socket
        .into_iter()
        .filter(|(_, (_, shared, _))| *shared)
        .map(|((node, socket), (m, _, behind))| {
            let queued = match behind {
                0 => "until resume, any of theirs would wait behind".to_string(),
                n => format!("{n} of their messages are held behind"),
            };
            format!(
                "warning: connection {} (socket {socket}) on {node} also carries other \
                 requests (a pooled or reused connection); {queued} trace {trace_id}'s to \
                 keep byte order",
                connection(m)
            )
        })
        .collect()
}

/// `  node: sent N held message(s), B bytes[, dropped D bytes ...]`, one line per node.
pub fn hold_release_lines(released: &[v1::NodeHoldRelease]) -> String {
    let mut out = String::new();
    for r in released {
        let release = r.release.clone().unwrap_or_default();
        out.push_str(&format!(
            "  {}: sent {} held message(s), {} bytes",
            r.node, release.messages, release.bytes
        ));
        if release.dropped_bytes > 0 {
            out.push_str(&format!(
                "; dropped {} bytes whose connection was closed meanwhile",
                release.dropped_bytes
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn held(node: &str, socket: u64, behind: bool, shared: bool) -> v1::NodeHeldMessage {
        v1::NodeHeldMessage {
            agent_id: format!("agent-{node}"),
            node: node.into(),
            agent_connected: true,
            message: Some(v1::HeldMessage {
                trace_id: T.into(),
                pid: 10,
                tid: 11,
                socket,
                local: "10.0.0.2:41234".into(),
                peer: "10.0.0.3:5432".into(),
                bytes: 64,
                first_line: "x".repeat(60),
                decoded: None,
                behind,
                shared,
                at: None,
            }),
        }
    }

    #[test]
    fn a_shared_connection_warns_with_the_count_held_behind() {
        let messages = [
            held("node-2", 1234, false, true),
            held("node-2", 1234, true, true),
            held("node-2", 1234, true, true),
            held("node-2", 99, false, false),
        ];
        assert_eq!(
            shared_warnings(T, &messages),
            vec![format!(
                "warning: connection 10.0.0.2:41234 -> 10.0.0.3:5432 (socket 1234) on node-2 \
                 also carries other requests (a pooled or reused connection); 2 of their \
                 messages are held behind trace {T}'s to keep byte order"
            )]
        );
        assert!(shared_warnings(T, &messages[3..]).is_empty());
    }

    #[test]
    fn the_table_cuts_first_lines_and_marks_messages_held_behind() {
        let behind = held("node-2", 1234, true, true);
        let text = held_table(&[(T, &behind)], true).to_string();
        assert!(text.contains(T), "{text}");
        assert!(text.contains("10.0.0.2:41234 -> 10.0.0.3:5432"), "{text}");
        assert!(
            text.contains(&format!("[behind] {}…", "x".repeat(FIRST_LINE_SHOWN))),
            "{text}"
        );
        let json = held_json(&behind);
        assert_eq!(json["first_line"], "x".repeat(60));
        assert_eq!(json["socket"], 1234);
        assert_eq!(json["behind"], true);
        assert_eq!(json["peer"], "10.0.0.3:5432");
    }

    #[test]
    fn resume_lines_say_what_went_out_and_what_was_dropped() {
        let r = |node: &str, dropped| v1::NodeHoldRelease {
            agent_id: node.into(),
            node: node.into(),
            release: Some(v1::HoldRelease {
                trace_id: T.into(),
                messages: 3,
                bytes: 512,
                dropped_bytes: dropped,
                reason: v1::ReleaseReason::Resumed.into(),
                at: None,
            }),
        };
        assert_eq!(
            hold_release_lines(&[r("node-1", 0), r("node-2", 10)]),
            "  node-1: sent 3 held message(s), 512 bytes\n  node-2: sent 3 held message(s), \
             512 bytes; dropped 10 bytes whose connection was closed meanwhile\n"
        );
    }
}
