//! `tracery-ctl query`: one read-only SQL statement over the store's documented views
//! (`snapshots`, `variables`, `messages`, `traces`; see the README).
//!
//! Read-only by the database itself, not by looking at the text:
//! - SQLite: a connection of its own, opened read-only (`SQLITE_OPEN_READONLY`) with
//!   `PRAGMA query_only`, so no statement of the text can write;
//! - PostgreSQL: a connection of its own (closed afterwards, so no session setting
//!   outlives the query), in a `READ ONLY` transaction with a statement timeout that is
//!   rolled back; the extended protocol runs one statement only.

use std::time::Duration;

use serde_json::{Number, Value as Json};
use sqlx::{Column, Connection, Row, TypeInfo, ValueRef};

use crate::{Backend, Store, StoreError};

/// Longest a query may run on PostgreSQL.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A query's result: column names and one JSON value per cell.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Json>>,
    /// More rows matched than the limit.
    pub truncated: bool,
}

/// SQLSTATE `read_only_sql_transaction`.
const PG_READ_ONLY: &str = "25006";

impl Store {
    /// Runs `sql` read-only and returns at most `limit` rows. A statement that would
    /// write fails with [`StoreError::ReadOnly`]; a bad one with [`StoreError::BadQuery`].
    pub async fn query_read_only(
        &self,
        sql: &str,
        limit: usize,
    ) -> Result<QueryResult, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let options = (*pool.connect_options()).clone().read_only(true);
                if options.get_filename().as_os_str() == ":memory:" {
                    return Err(StoreError::BadQuery {
                        reason: "an in-memory store cannot be queried from another connection"
                            .into(),
                    });
                }
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .map_err(|source| self.query_error("open a read-only connection", source))?;
                sqlx::query("PRAGMA query_only = ON")
                    .execute(&mut conn)
                    .await
                    .map_err(|source| self.query_error("open a read-only connection", source))?;
                let rows = first_rows(
                    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                        .persistent(false)
                        .fetch(&mut conn),
                    limit,
                )
                .await;
                let _ = conn.close().await;
                let rows = rows.map_err(refused)?;
                Ok(collect(&rows, limit, sqlite_cell))
            }
            Backend::Postgres(pool) => {
                // Detached: closed after the query, so nothing it set stays in the pool.
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|source| self.query_error("connect for a query", source))?
                    .detach();
                let setup = format!(
                    "SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = {}",
                    QUERY_TIMEOUT.as_millis()
                );
                let result = async {
                    sqlx::raw_sql("BEGIN").execute(&mut conn).await?;
                    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
                        .execute(&mut conn)
                        .await?;
                    first_rows(
                        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                            .persistent(false)
                            .fetch(&mut conn),
                        limit,
                    )
                    .await
                }
                .await;
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
                let _ = conn.close().await;
                let rows = result.map_err(refused)?;
                Ok(collect(&rows, limit, pg_cell))
            }
        }
    }
}

/// At most `limit + 1` rows of `rows` (one more than shown tells that the result was cut):
/// the rest are never fetched, so a huge result costs no memory.
async fn first_rows<R>(
    mut rows: futures_util::stream::BoxStream<'_, Result<R, sqlx::Error>>,
    limit: usize,
) -> Result<Vec<R>, sqlx::Error> {
    use futures_util::TryStreamExt;
    let mut out = Vec::new();
    while out.len() <= limit {
        match rows.try_next().await? {
            Some(row) => out.push(row),
            None => break,
        }
    }
    Ok(out)
}

/// A failed query as the user should hear it: a write is refused as such.
fn refused(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        let msg = db.message().to_owned();
        let read_only = db.code().as_deref() == Some(PG_READ_ONLY)
            || msg.contains("readonly database")
            || msg.contains("query_only");
        if read_only {
            return StoreError::ReadOnly { reason: msg };
        }
        return StoreError::BadQuery { reason: msg };
    }
    StoreError::BadQuery {
        reason: e.to_string(),
    }
}

fn collect<R: Row>(rows: &[R], limit: usize, cell: fn(&R, usize) -> Json) -> QueryResult {
    let columns = rows
        .first()
        .map(|r| r.columns().iter().map(|c| c.name().to_owned()).collect())
        .unwrap_or_default();
    QueryResult {
        columns,
        rows: rows
            .iter()
            .take(limit)
            .map(|r| (0..r.len()).map(|i| cell(r, i)).collect())
            .collect(),
        truncated: rows.len() > limit,
    }
}

fn float(f: f64) -> Json {
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}

fn sqlite_cell(row: &sqlx::sqlite::SqliteRow, i: usize) -> Json {
    let Ok(raw) = row.try_get_raw(i) else {
        return Json::Null;
    };
    if raw.is_null() {
        return Json::Null;
    }
    let ty = raw.type_info().name().to_owned();
    match ty.as_str() {
        "INTEGER" | "BOOLEAN" => row.try_get::<i64, _>(i).map(Json::from),
        "REAL" => row.try_get::<f64, _>(i).map(float),
        "BLOB" => row.try_get::<Vec<u8>, _>(i).map(|b| Json::from(hex(&b))),
        _ => row.try_get::<String, _>(i).map(Json::from),
    }
    .unwrap_or(Json::Null)
}

fn pg_cell(row: &sqlx::postgres::PgRow, i: usize) -> Json {
    let Ok(raw) = row.try_get_raw(i) else {
        return Json::Null;
    };
    if raw.is_null() {
        return Json::Null;
    }
    let ty = raw.type_info().name().to_owned();
    let bytes = raw.as_bytes().ok().map(<[u8]>::to_vec);
    match ty.as_str() {
        "BOOL" => row.try_get::<bool, _>(i).map(Json::from),
        "INT2" => row.try_get::<i16, _>(i).map(Json::from),
        "INT4" => row.try_get::<i32, _>(i).map(Json::from),
        "INT8" => row.try_get::<i64, _>(i).map(Json::from),
        "FLOAT4" => row.try_get::<f32, _>(i).map(|f| float(f64::from(f))),
        "FLOAT8" => row.try_get::<f64, _>(i).map(float),
        "JSON" | "JSONB" => row.try_get::<Json, _>(i),
        "NUMERIC" => Ok(bytes.as_deref().and_then(numeric).map_or(Json::Null, |s| {
            s.parse::<Number>().map_or(Json::from(s), Json::Number)
        })),
        "BYTEA" => row.try_get::<Vec<u8>, _>(i).map(|b| Json::from(hex(&b))),
        _ => Ok(row
            .try_get::<String, _>(i)
            .map_or_else(|_| Json::from(format!("<{ty}>")), Json::from)),
    }
    .unwrap_or(Json::Null)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// PostgreSQL's binary NUMERIC (`ndigits`, `weight`, `sign`, `dscale`, then base-10000
/// digits) as decimal text; sqlx decodes it only with an extra decimal crate.
fn numeric(b: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?])) };
    let ndigits = usize::from(word(0)?);
    let weight = word(2)? as i16;
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|k| word(8 + 2 * k))
        .collect::<Option<_>>()?;
    let digit = |pos: i32| -> u16 {
        usize::try_from(pos)
            .ok()
            .and_then(|p| digits.get(p).copied())
            .unwrap_or(0)
    };
    // Integer part: groups 0..=weight; fraction: the groups after, to `dscale` digits.
    let mut int = String::new();
    for g in 0..=i32::from(weight).max(-1) {
        let d = digit(g);
        if int.is_empty() {
            if d != 0 {
                int = d.to_string();
            }
        } else {
            int.push_str(&format!("{d:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut g = i32::from(weight) + 1;
    while frac.len() < dscale {
        frac.push_str(&format!("{:04}", digit(g)));
        g += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Some(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

#[cfg(test)]
mod tests {
    use super::numeric;

    fn num(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale].iter().chain(digits) {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_decode_to_decimal_text() {
        assert_eq!(numeric(&num(1, 0, 0, 0, &[5000])).unwrap(), "5000");
        assert_eq!(numeric(&num(2, 1, 0, 0, &[1, 2345])).unwrap(), "12345");
        assert_eq!(
            numeric(&num(2, 0, 0x4000, 2, &[12, 5000])).unwrap(),
            "-12.50"
        );
        assert_eq!(numeric(&num(1, -1, 0, 4, &[25])).unwrap(), "0.0025");
        assert_eq!(numeric(&num(0, 0, 0, 0, &[])).unwrap(), "0");
        // 1e8: one group 1 at weight 2, trailing zero groups not sent.
        assert_eq!(numeric(&num(1, 2, 0, 0, &[1])).unwrap(), "100000000");
    }
}
