//! Redis: all of a hit's commands in one `MULTI`/`EXEC`, over one multiplexed connection.

use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, RedisResult, Value as Reply};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::{Consistency, Read, Rows};
use crate::{
    capture::{ArgPart, BoundQuery, CaptureQuery},
    config::{CaptureLimits, DatabaseConfig},
    param::{hex, Param},
};

/// The connection, made on first use; a failed attempt is retried at the next hit.
#[derive(Default)]
pub(super) struct RedisClient {
    connection: OnceCell<MultiplexedConnection>,
}

impl RedisClient {
    async fn connection(
        &self,
        config: &DatabaseConfig,
        limits: &CaptureLimits,
    ) -> Result<MultiplexedConnection, String> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                let client = redis::Client::open(config.url.expose_secret())
                    .map_err(|e| format!("bad Redis URL: {e}"))?;
                let timeout = Some(limits.statement_timeout());
                client
                    .get_multiplexed_async_connection_with_config(
                        &AsyncConnectionConfig::new()
                            .set_connection_timeout(timeout)
                            .set_response_timeout(timeout),
                    )
                    .await
                    .map_err(|e| format!("cannot connect to Redis: {e}"))
            })
            .await?;
        Ok(connection.clone())
    }

    pub(super) async fn read(
        &self,
        config: &DatabaseConfig,
        queries: &[(&BoundQuery, &[&Param])],
        limits: &CaptureLimits,
    ) -> Result<Read, String> {
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        pipe.cmd("TIME");
        // A command whose arguments cannot be built is left out, with its error.
        let mut built: Vec<Result<bool, String>> = Vec::with_capacity(queries.len());
        for (query, values) in queries {
            let CaptureQuery::Redis(command) = query.spec.query() else {
                built.push(Err("internal: not a Redis command".into()));
                continue;
            };
            match arguments(command, values) {
                Ok(args) => {
                    let cmd = pipe.cmd(&command.name);
                    for arg in args {
                        cmd.arg(arg);
                    }
                    built.push(Ok(command.name == "HGETALL"));
                }
                Err(message) => built.push(Err(message)),
            }
        }
        let commands = built.iter().filter(|b| b.is_ok()).count() + 1;
        let mut connection = self.connection(config, limits).await?;
        let replies: Vec<RedisResult<Reply>> = pipe
            .query_async(&mut connection)
            .await
            .map_err(|e| format!("Redis MULTI/EXEC failed: {e}"))?;
        let mut replies: Vec<RedisResult<Reply>> = replies.into_iter().rev().collect();
        let read_at = match replies.pop() {
            Some(Ok(time)) => server_micros(&time),
            _ => None,
        };
        let outcomes = built
            .into_iter()
            .map(|b| {
                let pairs = b?;
                match replies.pop() {
                    Some(Ok(reply)) => Ok(Rows::limited(reply_rows(reply, pairs), limits)),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("internal: Redis returned fewer replies than commands".into()),
                }
            })
            .collect();
        Ok(Read {
            consistency: Consistency::RedisMultiExec { commands },
            read_at,
            outcomes,
        })
    }
}

/// Each argument's bytes: literal parts and placeholder values joined, one argument each.
fn arguments(
    command: &crate::capture::RedisCommand,
    values: &[&Param],
) -> Result<Vec<Vec<u8>>, String> {
    command
        .args
        .iter()
        .map(|parts| {
            let mut arg = Vec::new();
            for part in parts {
                match part {
                    ArgPart::Literal(text) => arg.extend_from_slice(text.as_bytes()),
                    ArgPart::Slot(slot) => match values.get(*slot) {
                        Some(Param::Null) | None => {
                            return Err(format!(
                                "placeholder {{{}}} is null; a Redis argument needs a value",
                                command.paths.paths.get(*slot).map_or("?", String::as_str)
                            ))
                        }
                        Some(Param::Bytes(bytes)) => arg.extend_from_slice(bytes),
                        Some(other) => {
                            arg.extend_from_slice(other.to_text().unwrap_or_default().as_bytes())
                        }
                    },
                }
            }
            Ok(arg)
        })
        .collect()
}

/// `TIME`'s `[seconds, microseconds]`.
fn server_micros(reply: &Reply) -> Option<i64> {
    let Reply::Array(parts) = reply else {
        return None;
    };
    let number = |v: &Reply| match v {
        Reply::BulkString(b) => std::str::from_utf8(b).ok()?.parse::<i64>().ok(),
        Reply::Int(i) => Some(*i),
        _ => None,
    };
    Some(number(parts.first()?)? * 1_000_000 + number(parts.get(1)?)?)
}

/// A reply as rows: an array or set is one row per element, a map (or HGETALL's flat
/// field/value list when `pairs`) one `{field, value}` row per entry, anything else one
/// row.
fn reply_rows(reply: Reply, pairs: bool) -> Vec<Value> {
    match reply {
        Reply::Array(items) if pairs => {
            let mut rows = Vec::with_capacity(items.len() / 2);
            let mut items = items.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                rows.push(json!({"field": reply_json(k), "value": reply_json(v)}));
            }
            rows
        }
        Reply::Array(items) | Reply::Set(items) => items.into_iter().map(reply_json).collect(),
        Reply::Map(entries) => entries
            .into_iter()
            .map(|(k, v)| json!({"field": reply_json(k), "value": reply_json(v)}))
            .collect(),
        Reply::Nil => Vec::new(),
        other => vec![reply_json(other)],
    }
}

/// A reply as JSON: text as strings, non-UTF-8 bytes as `\x` hex.
fn reply_json(reply: Reply) -> Value {
    match reply {
        Reply::Nil => Value::Null,
        Reply::Int(i) => json!(i),
        Reply::BulkString(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Value::String(text),
            Err(e) => Value::String(hex(e.as_bytes())),
        },
        Reply::Array(items) | Reply::Set(items) => {
            Value::Array(items.into_iter().map(reply_json).collect())
        }
        Reply::SimpleString(s) => Value::String(s),
        Reply::Okay => Value::String("OK".into()),
        Reply::Map(entries) => {
            let mut object = serde_json::Map::new();
            for (k, v) in entries {
                let key = match reply_json(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                object.insert(key, reply_json(v));
            }
            Value::Object(object)
        }
        Reply::Double(f) => json!(f),
        Reply::Boolean(b) => json!(b),
        Reply::VerbatimString { text, .. } => Value::String(text),
        Reply::ServerError(e) => json!({ "error": e.to_string() }),
        other => Value::String(format!("{other:?}")),
    }
}
