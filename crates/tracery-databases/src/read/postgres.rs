//! PostgreSQL: all of a hit's queries in one `REPEATABLE READ READ ONLY` transaction.

use std::{str::FromStr, sync::Mutex};

use serde_json::{Map, Value};
use sqlx::{
    postgres::{PgConnectOptions, PgConnection, PgTypeInfo},
    AssertSqlSafe, Column, ConnectOptions, Either, Executor, Row, SqlSafeStr, Statement, TypeInfo,
};

use super::{Consistency, Read, Rows};
use crate::{
    capture::{BoundQuery, CaptureQuery},
    config::{CaptureLimits, DatabaseConfig},
    param::Param,
};

/// OID of `numeric`: shown as a string so no digit is lost to a JSON float.
const NUMERIC_OID: u32 = 1700;
/// Idle connections kept per database: a hit's read takes one.
const MAX_IDLE: usize = 4;

/// Connections made on demand and kept for the next hit. Not sqlx's pool: its acquire
/// retries a refused connection until its own deadline and then reports only "timed out",
/// where a capture wants the real cause, at once.
pub(super) struct PgClient {
    options: Result<PgConnectOptions, String>,
    idle: Mutex<Vec<PgConnection>>,
}

impl PgClient {
    pub(super) fn new(config: &DatabaseConfig) -> Self {
        let options = PgConnectOptions::from_str(config.url.expose_secret())
            .map(|options| options.application_name("tracery-capture"))
            .map_err(|e| config.url.scrub(&format!("bad PostgreSQL URL: {e}")));
        Self {
            options,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn take_idle(&self) -> Option<PgConnection> {
        self.idle.lock().ok()?.pop()
    }

    fn give_back(&self, connection: PgConnection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(connection);
            }
        }
    }

    /// A connection inside a fresh `REPEATABLE READ READ ONLY` transaction with the
    /// statement timeout set (one round trip). An idle connection that fails (the server
    /// restarted) is replaced by a new one.
    async fn begin(&self, limits: &CaptureLimits) -> Result<PgConnection, String> {
        let begin = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = {}",
            limits.statement_timeout_ms
        );
        if let Some(mut connection) = self.take_idle() {
            if sqlx::raw_sql(AssertSqlSafe(begin.clone()))
                .execute(&mut connection)
                .await
                .is_ok()
            {
                return Ok(connection);
            }
        }
        let options = self.options.as_ref().map_err(Clone::clone)?;
        let mut connection = options
            .connect()
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
        sqlx::raw_sql(AssertSqlSafe(begin))
            .execute(&mut connection)
            .await
            .map_err(|e| format!("cannot begin a read-only transaction: {e}"))?;
        Ok(connection)
    }

    pub(super) async fn read(
        &self,
        queries: &[(&BoundQuery, &[&Param])],
        limits: &CaptureLimits,
    ) -> Result<Read, String> {
        let mut tx = self.begin(limits).await?;
        // The first query fixes the transaction's snapshot; record it right away. Its xip
        // list misses writers whose xid is at or past xmax (xmax is the latest completed
        // xid + 1, not the next xid), so writers holding their transaction-id lock count too.
        let (snapshot, xip, writers, read_at): (String, i64, i64, i64) = sqlx::query_as(
            "SELECT pg_current_snapshot()::text, \
                    cardinality(ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot())))::int8, \
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' \
                       AND mode = 'ExclusiveLock' AND granted \
                       AND pid <> pg_backend_pid())::int8, \
                    (extract(epoch FROM clock_timestamp()) * 1000000)::int8",
        )
        .fetch_one(&mut tx)
        .await
        .map_err(|e| format!("cannot read the transaction snapshot: {e}"))?;
        let mut outcomes = Vec::with_capacity(queries.len());
        for (i, (query, values)) in queries.iter().enumerate() {
            let CaptureQuery::Postgres(pg) = query.spec.query() else {
                outcomes.push(Err("internal: not a PostgreSQL query".into()));
                continue;
            };
            // A failed statement aborts the transaction; a savepoint keeps the queries
            // after it (the last query needs none).
            let savepoint = i + 1 < queries.len();
            if savepoint {
                sqlx::query("SAVEPOINT tracery_capture")
                    .execute(&mut tx)
                    .await
                    .map_err(|e| format!("cannot set a savepoint: {e}"))?;
            }
            let outcome = run_one(&mut tx, pg, values, limits).await;
            if outcome.is_err() && savepoint {
                sqlx::query("ROLLBACK TO SAVEPOINT tracery_capture")
                    .execute(&mut tx)
                    .await
                    .map_err(|e| format!("cannot roll back a failed query: {e}"))?;
            }
            outcomes.push(outcome);
        }
        // Read-only: nothing to keep. Only a connection back outside a transaction is kept.
        if sqlx::query("ROLLBACK").execute(&mut tx).await.is_ok() {
            self.give_back(tx);
        }
        Ok(Read {
            consistency: Consistency::PostgresSnapshot {
                snapshot,
                others_in_progress: xip > 0 || writers > 0,
                writers_in_progress: u64::try_from(xip.max(writers)).unwrap_or(0),
            },
            read_at: Some(read_at),
            outcomes,
        })
    }
}

/// Runs one query in the transaction. Its parameters are sent as text and cast to the
/// type PostgreSQL infers for each `$n`, so the server converts them with its own input
/// rules (a captured `"42"` binds to an `int4` column; `"abc"` is a clear error). Rows
/// come back as `to_json` of the row, so every type gets PostgreSQL's JSON form.
async fn run_one(
    conn: &mut PgConnection,
    query: &crate::capture::PgQuery,
    values: &[&Param],
    limits: &CaptureLimits,
) -> Result<Rows, String> {
    let statement = (&mut *conn)
        .prepare(AssertSqlSafe(query.sql.clone()).into_sql_str())
        .await
        .map_err(|e| e.to_string())?;
    let param_types: Vec<PgTypeInfo> = match statement.parameters() {
        Some(Either::Left(types)) => types.to_vec(),
        _ => Vec::new(),
    };
    let columns: Vec<(String, bool)> = statement
        .columns()
        .iter()
        .map(|c| {
            let numeric = c.type_info().oid().is_some_and(|oid| oid.0 == NUMERIC_OID);
            (c.name().to_owned(), numeric)
        })
        .collect();
    let inner = query.render(|k| match param_types.get(k - 1) {
        Some(ty) if ty.name() != "TEXT" => format!("${k}::text::{}", ty.name()),
        _ => format!("${k}::text"),
    });
    let limit = limits.max_rows + 1;
    let sql = if columns.is_empty() {
        format!("SELECT '{{}}' FROM ({inner}) AS q LIMIT {limit}")
    } else {
        let select: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (_, numeric))| {
                if *numeric {
                    format!("q.c{i}::text AS c{i}")
                } else {
                    format!("q.c{i}")
                }
            })
            .collect();
        let aliases: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
        format!(
            "SELECT to_json(r)::text FROM (SELECT {} FROM ({inner}) AS q({})) AS r LIMIT {limit}",
            select.join(", "),
            aliases.join(", ")
        )
    };
    let mut run = sqlx::query(AssertSqlSafe(sql));
    for value in values {
        run = run.bind(value.to_text());
    }
    let fetched = run.fetch_all(&mut *conn).await.map_err(|e| e.to_string())?;
    let mut rows = Vec::with_capacity(fetched.len());
    for row in fetched {
        let text: String = row.try_get(0).map_err(|e| e.to_string())?;
        let Value::Object(mut by_alias) = serde_json::from_str(&text).map_err(|e| e.to_string())?
        else {
            return Err("internal: a row did not come back as a JSON object".into());
        };
        let mut object = Map::new();
        for (i, (name, _)) in columns.iter().enumerate() {
            let value = by_alias.remove(&format!("c{i}")).unwrap_or(Value::Null);
            // Two columns of one name: keep both.
            let key = if object.contains_key(name) {
                format!("{name}#{}", i + 1)
            } else {
                name.clone()
            };
            object.insert(key, value);
        }
        rows.push(Value::Object(object));
    }
    Ok(Rows::limited(rows, limits))
}
