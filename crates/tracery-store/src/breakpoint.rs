//! Breakpoints as the controller registered them: the spec, its expiry, its deletion.

use std::fmt;
use std::time::SystemTime;

use serde_json::Value as Json;
use sqlx::types::Json as SqlJson;
use sqlx::Row;

use crate::time::{from_nanos, to_nanos};
use crate::{with_pool, Store, StoreError};

/// A breakpoint's id, unique in one store and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BreakpointId(pub i64);

impl fmt::Display for BreakpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stored breakpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakpointRecord {
    pub id: BreakpointId,
    /// What the user asked for (target, location, condition, limits), as the controller
    /// serialized it; the store does not interpret it.
    pub spec: Json,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
    /// Set by [`Store::delete_breakpoint`]; deleted breakpoints keep their snapshots.
    pub deleted_at: Option<SystemTime>,
}

impl Store {
    /// Stores a new breakpoint and returns its id.
    pub async fn create_breakpoint(
        &self,
        spec: &Json,
        expires_at: SystemTime,
    ) -> Result<BreakpointId, StoreError> {
        let created_at = to_nanos(SystemTime::now(), "created_at")?;
        let expires_at = to_nanos(expires_at, "expires_at")?;
        // Bound as text: PostgreSQL casts it to JSON, SQLite checks it with json_valid.
        let sql = match self.kind() {
            crate::StoreKind::Sqlite => {
                "INSERT INTO breakpoints (spec, created_at, expires_at) VALUES ($1, $2, $3) RETURNING id"
            }
            crate::StoreKind::Postgres => {
                "INSERT INTO breakpoints (spec, created_at, expires_at) VALUES ($1::json, $2, $3) RETURNING id"
            }
        };
        let spec = spec.to_string();
        let id: i64 = with_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(&spec)
            .bind(created_at)
            .bind(expires_at)
            .fetch_one(pool)
            .await)
        .map_err(|source| self.query_error("create a breakpoint", source))?;
        Ok(BreakpointId(id))
    }

    /// All breakpoints in id order; deleted ones only when `include_deleted`.
    pub async fn list_breakpoints(
        &self,
        include_deleted: bool,
    ) -> Result<Vec<BreakpointRecord>, StoreError> {
        let sql = "SELECT id, spec, created_at, expires_at, deleted_at FROM breakpoints \
                   WHERE $1 OR deleted_at IS NULL ORDER BY id";
        with_pool!(self, pool => {
            let rows = sqlx::query(sql)
                .bind(include_deleted)
                .fetch_all(pool)
                .await
                .map_err(|source| self.query_error("list breakpoints", source))?;
            rows.iter()
                .map(|row| {
                    Ok(BreakpointRecord {
                        id: BreakpointId(row.try_get("id")?),
                        spec: row.try_get::<SqlJson<Json>, _>("spec")?.0,
                        created_at: from_nanos(row.try_get("created_at")?),
                        expires_at: from_nanos(row.try_get("expires_at")?),
                        deleted_at: row.try_get::<Option<i64>, _>("deleted_at")?.map(from_nanos),
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(|source| self.query_error("read breakpoints", source))
        })
    }

    /// Marks a breakpoint deleted; false when no live breakpoint has this id.
    ///
    /// The row stays, so that its snapshots still name it.
    pub async fn delete_breakpoint(&self, id: BreakpointId) -> Result<bool, StoreError> {
        let now = to_nanos(SystemTime::now(), "deleted_at")?;
        let sql = "UPDATE breakpoints SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL";
        let done = with_pool!(self, pool => sqlx::query(sql)
            .bind(now)
            .bind(id.0)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))
        .map_err(|source| self.query_error("delete a breakpoint", source))?;
        Ok(done == 1)
    }

    pub(crate) fn query_error(&self, operation: &'static str, source: sqlx::Error) -> StoreError {
        StoreError::Query {
            operation,
            url: self.url.clone(),
            source,
        }
    }
}
