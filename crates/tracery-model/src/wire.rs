//! A held message decoded by its protocol: what a frozen request was about to send.

use serde_json::{json, Value as Json};

/// A held message's first bytes, decoded by the protocol they look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedMessage {
    /// What the bytes say.
    pub content: WireContent,
    /// Only the message's first bytes were seen: what follows them is not shown.
    pub truncated: bool,
}

/// The message by protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireContent {
    /// PostgreSQL frontend messages, in the order they were sent.
    Postgres(Vec<PgMessage>),
    /// Redis commands (RESP arrays), pipelined ones included, each as its arguments.
    Redis(Vec<Vec<String>>),
    /// An HTTP/1.x request or response.
    Http(HttpMessage),
    /// Bytes of no known protocol: a short hex and text preview.
    Raw {
        /// Lowercase hex of the first bytes.
        hex: String,
        /// The same bytes as text, control bytes shown as dots.
        text: String,
    },
}

/// One PostgreSQL frontend message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PgMessage {
    /// `Query`, `Parse`, `Bind`, `Execute`, `Describe`, `Sync`, ...
    pub kind: String,
    /// The prepared statement (`Parse`, `Bind`); empty for the unnamed one.
    pub statement: String,
    /// SQL text (`Query`, `Parse`).
    pub sql: String,
    /// Bound parameters (`Bind`), rendered as text; `None` is SQL NULL.
    pub params: Vec<Option<String>>,
}

/// An HTTP/1.x message's head and the start of its body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpMessage {
    /// Request method; empty for a response.
    pub method: String,
    /// Request path; empty for a response.
    pub path: String,
    /// Response status; 0 for a request.
    pub status: u16,
    /// Headers in the order sent.
    pub headers: Vec<(String, String)>,
    /// The start of the body, as text.
    pub body: String,
}

impl DecodedMessage {
    /// The protocol's name as the CLI and JSON show it.
    pub fn protocol(&self) -> &'static str {
        match self.content {
            WireContent::Postgres(_) => "postgresql",
            WireContent::Redis(_) => "redis",
            WireContent::Http(_) => "http",
            WireContent::Raw { .. } => "unknown",
        }
    }

    /// The JSON form `trace view --output json` prints.
    pub fn to_json(&self) -> Json {
        let mut j = json!({ "protocol": self.protocol(), "truncated": self.truncated });
        match &self.content {
            WireContent::Postgres(ms) => {
                j["messages"] = ms
                    .iter()
                    .map(|m| {
                        json!({"kind": m.kind, "statement": m.statement, "sql": m.sql,
                               "params": m.params})
                    })
                    .collect();
            }
            WireContent::Redis(cmds) => j["commands"] = json!(cmds),
            WireContent::Http(h) => {
                j["method"] = json!(h.method);
                j["path"] = json!(h.path);
                j["status"] = json!(h.status);
                j["headers"] = h.headers.iter().map(|(k, v)| json!([k, v])).collect();
                j["body"] = json!(h.body);
            }
            WireContent::Raw { hex, text } => {
                j["hex"] = json!(hex);
                j["text"] = json!(text);
            }
        }
        j
    }

    /// One line per message part, as `trace view` prints them under the held message.
    pub fn lines(&self) -> Vec<String> {
        let mut out = match &self.content {
            WireContent::Postgres(ms) => ms.iter().map(pg_line).collect(),
            WireContent::Redis(cmds) => cmds.iter().map(|c| redis_line(c)).collect(),
            WireContent::Http(h) => http_lines(h),
            WireContent::Raw { hex, text } => vec![format!("hex {hex}"), format!("text {text}")],
        };
        if self.truncated {
            out.push("(only the start of the message was kept)".into());
        }
        out
    }
}

fn pg_line(m: &PgMessage) -> String {
    let stmt = if m.statement.is_empty() {
        String::new()
    } else {
        format!(" [{}]", m.statement)
    };
    match m.kind.as_str() {
        "Query" | "Parse" => format!("{}{stmt}: {}", m.kind, one_line(&m.sql)),
        "Bind" => {
            let params: Vec<String> = m
                .params
                .iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Some(v) => format!("${}={}", i + 1, quoted(v)),
                    None => format!("${}=NULL", i + 1),
                })
                .collect();
            format!("Bind{stmt}: {}", params.join(" "))
        }
        _ => m.kind.clone(),
    }
}

fn redis_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn http_lines(h: &HttpMessage) -> Vec<String> {
    let mut out = vec![if h.method.is_empty() {
        format!("HTTP {}", h.status)
    } else {
        format!("{} {}", h.method, h.path)
    }];
    out.extend(h.headers.iter().map(|(k, v)| format!("{k}: {v}")));
    if !h.body.is_empty() {
        out.push(format!("body: {}", one_line(&h.body)));
    }
    out
}

/// Whitespace runs (SQL laid out over lines) as one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn quoted(v: &str) -> String {
    if v.parse::<f64>().is_ok() {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_shows_each_parameter_numbered_and_quoted_as_sql() {
        let m = DecodedMessage {
            content: WireContent::Postgres(vec![
                PgMessage {
                    kind: "Parse".into(),
                    sql: "INSERT INTO t\n   VALUES ($1, $2, $3)".into(),
                    ..PgMessage::default()
                },
                PgMessage {
                    kind: "Bind".into(),
                    params: vec![Some("o'neil".into()), Some("42".into()), None],
                    ..PgMessage::default()
                },
                PgMessage {
                    kind: "Sync".into(),
                    ..PgMessage::default()
                },
            ]),
            truncated: true,
        };
        assert_eq!(
            m.lines(),
            [
                "Parse: INSERT INTO t VALUES ($1, $2, $3)",
                "Bind: $1='o''neil' $2=42 $3=NULL",
                "Sync",
                "(only the start of the message was kept)"
            ]
        );
        let j = m.to_json();
        assert_eq!(j["protocol"], "postgresql");
        assert_eq!(j["messages"][1]["params"], json!(["o'neil", "42", null]));
    }

    #[test]
    fn redis_arguments_with_spaces_are_quoted() {
        let m = DecodedMessage {
            content: WireContent::Redis(vec![vec!["HSET".into(), "k".into(), "a b".into()]]),
            truncated: false,
        };
        assert_eq!(m.lines(), [r#"HSET k "a b""#]);
        assert_eq!(m.to_json()["commands"], json!([["HSET", "k", "a b"]]));
    }
}
