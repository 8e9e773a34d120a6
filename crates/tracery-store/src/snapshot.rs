//! Stored snapshots: one row per breakpoint hit, the hit's JSON as its body.

use std::fmt;
use std::time::SystemTime;

use serde_json::Value as Json;
use sqlx::types::Json as SqlJson;
use sqlx::Row;

use crate::time::{from_nanos, to_nanos};
use crate::{with_pool, BreakpointId, Store, StoreError, StoreKind};

/// A snapshot's id: unique in one store, never reused, increasing in insertion order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId(pub i64);

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A breakpoint hit as an agent reports it.
#[derive(Clone, Copy, Debug)]
pub struct NewSnapshot<'a> {
    /// The reporting agent (its node name in a cluster).
    pub agent_id: &'a str,
    pub breakpoint_id: BreakpointId,
    /// The agent's sequence number for this breakpoint's hits: with `agent_id` and
    /// `breakpoint_id` it identifies a hit, so a resent hit is stored once.
    pub seq: u64,
    pub pid: u32,
    pub tid: u32,
    pub time: SystemTime,
    pub trace_id: Option<&'a str>,
    /// `Snapshot::to_json` of the agent, stored as is.
    pub body: &'a Json,
}

/// What [`Store::insert_snapshot`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inserted {
    pub id: SnapshotId,
    /// True when this hit was already stored: `id` is the earlier row's, and nothing was written.
    pub duplicate: bool,
}

/// A snapshot without its body, for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSummary {
    pub id: SnapshotId,
    pub breakpoint_id: BreakpointId,
    pub agent_id: String,
    pub seq: u64,
    pub pid: u32,
    pub tid: u32,
    pub time: SystemTime,
    pub trace_id: Option<String>,
}

/// A snapshot with its body.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotRecord {
    pub summary: SnapshotSummary,
    pub body: Json,
}

/// The columns [`summary`] reads, as a literal so that queries stay `&'static str`.
macro_rules! summary_columns {
    () => {
        "id, breakpoint_id, agent_id, seq, pid, tid, time, trace_id"
    };
}

impl Store {
    /// Stores a hit once: a hit already stored (same agent, breakpoint and seq) returns
    /// the existing id with `duplicate` set, and is not written again.
    pub async fn insert_snapshot(&self, new: &NewSnapshot<'_>) -> Result<Inserted, StoreError> {
        let seq = i64::try_from(new.seq).map_err(|_| StoreError::OutOfRange {
            field: "seq",
            value: new.seq.to_string(),
        })?;
        let time = to_nanos(new.time, "time")?;
        // Bound as text: PostgreSQL casts it to JSON, which keeps it byte for byte.
        let insert = match self.kind() {
            StoreKind::Sqlite => {
                "INSERT INTO snapshots (breakpoint_id, agent_id, seq, pid, tid, time, trace_id, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (agent_id, breakpoint_id, seq) DO NOTHING RETURNING id"
            }
            StoreKind::Postgres => {
                "INSERT INTO snapshots (breakpoint_id, agent_id, seq, pid, tid, time, trace_id, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8::json) \
                 ON CONFLICT (agent_id, breakpoint_id, seq) DO NOTHING RETURNING id"
            }
        };
        let existing =
            "SELECT id FROM snapshots WHERE agent_id = $1 AND breakpoint_id = $2 AND seq = $3";
        let body = new.body.to_string();
        let (id, duplicate) = with_pool!(self, pool => {
            let inserted: Option<i64> = sqlx::query_scalar(insert)
                .bind(new.breakpoint_id.0)
                .bind(new.agent_id)
                .bind(seq)
                .bind(i64::from(new.pid))
                .bind(i64::from(new.tid))
                .bind(time)
                .bind(new.trace_id)
                .bind(&body)
                .fetch_optional(pool)
                .await
                .map_err(|source| self.query_error("store a snapshot", source))?;
            match inserted {
                Some(id) => (id, false),
                // Rows are never deleted, so the conflicting one is still there.
                None => {
                    let id: i64 = sqlx::query_scalar(existing)
                        .bind(new.agent_id)
                        .bind(new.breakpoint_id.0)
                        .bind(seq)
                        .fetch_one(pool)
                        .await
                        .map_err(|source| self.query_error("find a stored snapshot", source))?;
                    (id, true)
                }
            }
        });
        if duplicate {
            tracing::debug!(
                agent = new.agent_id,
                breakpoint = new.breakpoint_id.0,
                seq = new.seq,
                "snapshot resent; already stored"
            );
        }
        Ok(Inserted {
            id: SnapshotId(id),
            duplicate,
        })
    }

    /// Up to `limit` snapshots in id order (oldest first), of one breakpoint or all, after
    /// the id `after` when given: pass the last id seen to read the next page or new ones.
    pub async fn list_snapshots(
        &self,
        breakpoint: Option<BreakpointId>,
        after: Option<SnapshotId>,
        limit: u32,
    ) -> Result<Vec<SnapshotSummary>, StoreError> {
        let sql = concat!(
            "SELECT ",
            summary_columns!(),
            " FROM snapshots WHERE ($1 IS NULL OR breakpoint_id = $1) AND id > $2 \
             ORDER BY id LIMIT $3"
        );
        // Ids start at 1 on both backends.
        let after = after.map_or(0, |id| id.0);
        with_pool!(self, pool => {
            let rows = sqlx::query(sql)
                .bind(breakpoint.map(|id| id.0))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(|source| self.query_error("list snapshots", source))?;
            rows.iter()
                .map(summary)
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(|source| self.query_error("read snapshots", source))
        })
    }

    /// Up to `limit` snapshots of one trace (`trace_id` as stored: 32 lowercase hex
    /// digits), oldest first, bodies included. Scans the table: traces are looked up by a
    /// person, not per hit.
    pub async fn list_trace_snapshots(
        &self,
        trace_id: &str,
        limit: u32,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            summary_columns!(),
            ", body FROM snapshots WHERE trace_id = $1 ORDER BY id LIMIT $2"
        );
        with_pool!(self, pool => {
            let rows = sqlx::query(sql)
                .bind(trace_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(|source| self.query_error("list the snapshots of a trace", source))?;
            rows.iter()
                .map(|row| {
                    Ok(SnapshotRecord {
                        summary: summary(row)?,
                        body: row.try_get::<SqlJson<Json>, _>("body")?.0,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(|source| self.query_error("read the snapshots of a trace", source))
        })
    }

    /// The snapshot with this id, body included; `None` when there is none.
    pub async fn get_snapshot(&self, id: SnapshotId) -> Result<Option<SnapshotRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            summary_columns!(),
            ", body FROM snapshots WHERE id = $1"
        );
        with_pool!(self, pool => {
            let row = sqlx::query(sql)
                .bind(id.0)
                .fetch_optional(pool)
                .await
                .map_err(|source| self.query_error("read a snapshot", source))?;
            row.map(|row| {
                Ok(SnapshotRecord {
                    summary: summary(&row)?,
                    body: row.try_get::<SqlJson<Json>, _>("body")?.0,
                })
            })
            .transpose()
            .map_err(|source| self.query_error("read a snapshot", source))
        })
    }
}

/// The summary columns of a row from either backend.
fn summary<R>(row: &R) -> Result<SnapshotSummary, sqlx::Error>
where
    R: Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(SnapshotSummary {
        id: SnapshotId(row.try_get("id")?),
        breakpoint_id: BreakpointId(row.try_get("breakpoint_id")?),
        agent_id: row.try_get("agent_id")?,
        seq: narrow("seq", row.try_get("seq")?)?,
        pid: narrow("pid", row.try_get("pid")?)?,
        tid: narrow("tid", row.try_get("tid")?)?,
        time: from_nanos(row.try_get("time")?),
        trace_id: row.try_get("trace_id")?,
    })
}

/// A stored `i64` as the unsigned type it was written from.
fn narrow<T>(column: &str, value: i64) -> Result<T, sqlx::Error>
where
    T: TryFrom<i64, Error = std::num::TryFromIntError>,
{
    T::try_from(value).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}
