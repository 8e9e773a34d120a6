//! Reading at a hit: one consistent read per database, all databases at once, every
//! failure recorded on its query and every read bounded by the statement timeout.

mod mongodb;
mod postgres;
mod redis;

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use serde_json::Value;

use crate::{
    capture::{BoundParam, BoundQuery},
    config::{CaptureLimits, DatabaseConfig, DatabaseKind},
    param::Param,
};

/// Extra time past the statement timeout before the client gives up on a database, so
/// the server's own timeout message wins when it can.
const CLIENT_GRACE: Duration = Duration::from_millis(300);

/// The configured databases and their clients. Clients connect on first use and are
/// kept: the first capture of a database pays the connection, later ones do not.
pub struct Databases {
    entries: BTreeMap<String, Entry>,
    configs: Vec<DatabaseConfig>,
    limits: CaptureLimits,
}

struct Entry {
    config: DatabaseConfig,
    client: Client,
}

/// One per configured database, made once: the size difference does not matter.
#[expect(
    clippy::large_enum_variant,
    reason = "one per database, never moved in a hot path"
)]
enum Client {
    Postgres(postgres::PgClient),
    Redis(redis::RedisClient),
    Mongodb(mongodb::MongoClient),
}

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Databases")
            .field("configs", &self.configs)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Databases {
    /// A registry of `configs` (a later config of the same name replaces an earlier one).
    /// Connects nothing yet.
    pub fn new(configs: Vec<DatabaseConfig>, limits: CaptureLimits) -> Self {
        let mut entries = BTreeMap::new();
        for config in configs {
            let client = match config.kind() {
                DatabaseKind::Postgres => Client::Postgres(postgres::PgClient::new(&config)),
                DatabaseKind::Redis => Client::Redis(redis::RedisClient::default()),
                DatabaseKind::Mongodb => Client::Mongodb(mongodb::MongoClient::default()),
            };
            entries.insert(config.name.clone(), Entry { config, client });
        }
        let configs = entries.values().map(|e| e.config.clone()).collect();
        Self {
            entries,
            configs,
            limits,
        }
    }

    /// The databases, sorted by name: pass them to [`crate::CaptureSpec::parse`].
    pub fn configs(&self) -> &[DatabaseConfig] {
        &self.configs
    }

    /// The limits every read uses.
    pub fn limits(&self) -> CaptureLimits {
        self.limits
    }

    /// Runs a hit's queries: one consistent read per database, the databases concurrently.
    /// Returns one result per query, in order. Never fails as a whole; returns within
    /// about the statement timeout.
    pub async fn capture(&self, queries: &[BoundQuery]) -> Vec<QueryResult> {
        let mut results: Vec<Option<QueryResult>> = vec![None; queries.len()];
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, query) in queries.iter().enumerate() {
            groups.entry(query.spec.database()).or_default().push(i);
        }
        let reads = groups.into_iter().map(|(name, indices)| async move {
            let group: Vec<&BoundQuery> = indices.iter().map(|&i| &queries[i]).collect();
            let results = self.read_database(name, &group).await;
            indices.into_iter().zip(results).collect::<Vec<_>>()
        });
        for (i, result) in futures_util::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
        {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .zip(queries)
            .map(|(result, query)| {
                result.unwrap_or_else(|| {
                    QueryResult::failed(query, "internal: no result was produced".into())
                })
            })
            .collect()
    }

    /// One database's queries, in one consistent read.
    async fn read_database(&self, name: &str, queries: &[&BoundQuery]) -> Vec<QueryResult> {
        let Some(entry) = self.entries.get(name) else {
            return queries
                .iter()
                .map(|q| {
                    QueryResult::failed(q, format!("database `{name}` is not configured here"))
                })
                .collect();
        };
        // Queries whose placeholders did not resolve fail alone; the rest still run.
        let mut results: Vec<Option<QueryResult>> = vec![None; queries.len()];
        let mut runnable = Vec::new();
        for (i, query) in queries.iter().enumerate() {
            match query.values() {
                Ok(values) => runnable.push((i, *query, values)),
                Err(missing) => {
                    results[i] = Some(QueryResult::failed(
                        query,
                        format!(
                            "placeholder value not captured at this hit: {}",
                            missing.join(", ")
                        ),
                    ))
                }
            }
        }
        if !runnable.is_empty() {
            let timeout = self.limits.statement_timeout();
            let run = self.read_kind(entry, &runnable);
            let read = match tokio::time::timeout(timeout + CLIENT_GRACE, run).await {
                Ok(Ok(read)) => read,
                Ok(Err(message)) => Read::failed(runnable.len(), message),
                Err(_) => Read::failed(
                    runnable.len(),
                    format!(
                        "timed out after {} ms (statement timeout {} ms); \
                         raise statement_timeout_ms if the query needs longer",
                        (timeout + CLIENT_GRACE).as_millis(),
                        timeout.as_millis()
                    ),
                ),
            };
            let read_at = read.read_at.unwrap_or_else(now_micros);
            for ((i, query, _), outcome) in runnable.iter().zip(read.outcomes) {
                let mut result = QueryResult::new(query);
                result.read_at = rfc3339_micros(read_at);
                result.consistency = read.consistency.clone();
                match outcome {
                    Ok(rows) => {
                        result.rows = rows.rows;
                        result.truncated = rows.truncated;
                    }
                    Err(message) => {
                        let message = entry.config.url.scrub(&message);
                        tracing::debug!(database = name, error = %message, "capture query failed");
                        result.error = Some(message);
                    }
                }
                results[*i] = Some(result);
            }
        }
        results.into_iter().flatten().collect()
    }

    async fn read_kind(
        &self,
        entry: &Entry,
        queries: &[(usize, &BoundQuery, Vec<&Param>)],
    ) -> Result<Read, String> {
        let queries: Vec<(&BoundQuery, &[&Param])> =
            queries.iter().map(|(_, q, v)| (*q, v.as_slice())).collect();
        let scrub = |message: String| entry.config.url.scrub(&message);
        match &entry.client {
            Client::Postgres(client) => client.read(&queries, &self.limits).await,
            Client::Redis(client) => client.read(&entry.config, &queries, &self.limits).await,
            Client::Mongodb(client) => client.read(&entry.config, &queries, &self.limits).await,
        }
        .map_err(scrub)
    }
}

/// What one database read produced: one outcome per query, in order.
struct Read {
    consistency: Consistency,
    /// Microseconds since the Unix epoch, from the server where it says.
    read_at: Option<i64>,
    outcomes: Vec<Result<Rows, String>>,
}

impl Read {
    fn failed(count: usize, message: String) -> Self {
        Self {
            consistency: Consistency::NotRead,
            read_at: None,
            outcomes: vec![Err(message); count],
        }
    }
}

/// Rows kept under the limits.
#[derive(Clone)]
struct Rows {
    rows: Vec<Value>,
    truncated: bool,
}

impl Rows {
    /// Keeps rows while both limits allow; `more` says the source had more rows.
    fn limited(all: impl IntoIterator<Item = Value>, limits: &CaptureLimits) -> Self {
        let mut rows = Vec::new();
        let mut bytes = 0usize;
        let mut truncated = false;
        for row in all {
            if rows.len() == limits.max_rows {
                truncated = true;
                break;
            }
            bytes += serde_json::to_string(&row).map_or(0, |s| s.len());
            if bytes > limits.max_result_bytes {
                truncated = true;
                break;
            }
            rows.push(row);
        }
        Self { rows, truncated }
    }
}

/// One capture query's outcome at a hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    /// The database's name.
    pub database: String,
    /// Its kind.
    pub kind: DatabaseKind,
    /// The query as written after `NAME:`.
    pub query: String,
    /// The placeholder values bound.
    pub params: Vec<BoundParam>,
    /// The rows: PostgreSQL rows are objects keyed by column; Redis replies and MongoDB
    /// documents (relaxed extended JSON) are one row per element.
    pub rows: Vec<Value>,
    /// More rows or bytes existed than the limits keep.
    pub truncated: bool,
    /// When the read happened (RFC 3339, UTC), by the server's clock where it says.
    pub read_at: String,
    /// How this read was kept consistent with the database's other queries of the hit.
    pub consistency: Consistency,
    /// Why the query has no rows: unreachable, timeout, query error (never a password).
    pub error: Option<String>,
}

impl QueryResult {
    fn new(query: &BoundQuery) -> Self {
        Self {
            database: query.spec.database().to_owned(),
            kind: query.spec.kind(),
            query: query.spec.query_text().to_owned(),
            params: query.params.clone(),
            rows: Vec::new(),
            truncated: false,
            read_at: rfc3339_micros(now_micros()),
            consistency: Consistency::NotRead,
            error: None,
        }
    }

    fn failed(query: &BoundQuery, message: String) -> Self {
        Self {
            error: Some(message),
            ..Self::new(query)
        }
    }
}

/// The record of a database read's consistency.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Consistency {
    /// One `REPEATABLE READ READ ONLY` transaction.
    PostgresSnapshot {
        /// `pg_current_snapshot()`: `xmin:xmax:xip,...`.
        snapshot: String,
        /// Other writing transactions were in progress when the snapshot was taken (its
        /// xip list, or transaction-id locks held): their writes are not in these rows.
        others_in_progress: bool,
        /// How many such transactions there were.
        writers_in_progress: u64,
    },
    /// One `MULTI`/`EXEC`.
    RedisMultiExec {
        /// Commands in the transaction (the hit's queries and a `TIME`).
        commands: usize,
    },
    /// One snapshot session.
    MongodbSnapshot {
        /// The session's `atClusterTime`, when the server reported it.
        at_cluster_time: Option<ClusterTime>,
    },
    /// Nothing was read (connection failure, timeout, unresolved placeholder).
    NotRead,
}

/// A MongoDB cluster time (a BSON timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClusterTime {
    /// Seconds since the Unix epoch.
    pub time: u32,
    /// Ordinal within the second.
    pub increment: u32,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// `2026-12-04T18:11:03.123456Z` from microseconds since the Unix epoch.
pub fn rfc3339_micros(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_796_407_863_123_456),
            "2026-12-04T18:11:03.123456Z"
        );
        assert_eq!(
            rfc3339_micros(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
    }

    #[test]
    fn limits_rows_and_bytes() {
        let limits = CaptureLimits {
            max_rows: 2,
            max_result_bytes: 1000,
            ..CaptureLimits::default()
        };
        let rows = Rows::limited((0..5).map(Value::from), &limits);
        assert_eq!((rows.rows.len(), rows.truncated), (2, true));
        let limits = CaptureLimits {
            max_rows: 10,
            max_result_bytes: 7,
            ..CaptureLimits::default()
        };
        let rows = Rows::limited(["abc", "def", "ghi"].map(Value::from), &limits);
        assert_eq!((rows.rows.len(), rows.truncated), (1, true));
        let rows = Rows::limited(["a"].map(Value::from), &limits);
        assert_eq!((rows.rows.len(), rows.truncated), (1, false));
    }
}
