//! Database records read at a hit: one result per `--capture` query of the breakpoint.

use std::time::SystemTime;

use serde_json::{json, Value as Json};

/// One capture query as the controller read it at a hit.
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseRead {
    /// The database's configured name (`--database NAME=URL`, `[databases.NAME]`).
    pub database: String,
    /// `postgres`, `redis` or `mongodb`.
    pub kind: String,
    /// The query as the breakpoint names it, placeholders included.
    pub query: String,
    /// Each placeholder's path and the value bound to it (`null` when it did not resolve).
    pub params: Vec<(String, Json)>,
    /// The rows: PostgreSQL rows are objects keyed by column, Redis replies one per
    /// command, MongoDB documents as relaxed extended JSON.
    pub rows: Vec<Json>,
    /// The row or byte limit cut the result; `rows` holds its first rows.
    pub truncated: bool,
    /// When the read ran.
    pub read_at: SystemTime,
    /// What made this database's reads of the hit one consistent cut.
    pub consistency: Json,
    /// Why the query has no rows; never carries a password.
    pub error: Option<String>,
}

impl DatabaseRead {
    /// The object of the snapshot JSON's `databases` array.
    pub fn to_json(&self) -> Json {
        let params: serde_json::Map<String, Json> = self
            .params
            .iter()
            .map(|(path, value)| (path.clone(), value.clone()))
            .collect();
        json!({
            "database": self.database,
            "kind": self.kind,
            "query": self.query,
            "params": params,
            "rows": self.rows,
            "truncated": self.truncated,
            "read_at": humantime::format_rfc3339_micros(self.read_at).to_string(),
            "consistency": self.consistency,
            "error": self.error,
        })
    }
}
