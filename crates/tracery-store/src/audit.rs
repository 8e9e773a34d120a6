//! The audit log: who set, deleted, froze, resumed or evaluated what, from where, and how
//! it ended, refused calls included. Rows are only ever appended: this module has no
//! update or delete, and the tables' triggers refuse both.

use std::time::SystemTime;

use sqlx::Row;

use crate::time::{from_nanos, to_nanos};
use crate::{with_pool, Store, StoreError};

/// One audited call, as it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEntry<'a> {
    pub time: SystemTime,
    /// The caller: a Kubernetes user name, or `standalone-token`.
    pub who: &'a str,
    /// `set`, `freeze`, `delete`, `resume` or `eval`.
    pub action: &'a str,
    /// What it acted on, e.g. `breakpoint 7` or `trace 4bf9…`.
    pub target: &'a str,
    /// The Kubernetes namespace; empty outside cluster mode or when none applies.
    pub namespace: &'a str,
    /// The caller's address.
    pub peer: &'a str,
    /// `ok`, or the refusal or error the caller got.
    pub result: &'a str,
}

/// One stored audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub time: SystemTime,
    pub who: String,
    pub action: String,
    pub target: String,
    pub namespace: String,
    pub peer: String,
    pub result: String,
}

impl Store {
    /// Appends one entry.
    pub async fn append_audit(&self, e: &NewAuditEntry<'_>) -> Result<(), StoreError> {
        let time = to_nanos(e.time, "audit time")?;
        let sql = "INSERT INTO audit (time, who, action, target, namespace, peer, result) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(time)
            .bind(e.who)
            .bind(e.action)
            .bind(e.target)
            .bind(e.namespace)
            .bind(e.peer)
            .bind(e.result)
            .execute(pool)
            .await
            .map(drop))
        .map_err(|source| self.query_error("append to the audit log", source))
    }

    /// Entries at or after `since` (all when `None`), oldest first, at most `limit`.
    pub async fn list_audit(
        &self,
        since: Option<SystemTime>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let since = since.map(|t| to_nanos(t, "audit since")).transpose()?;
        let sql = "SELECT id, time, who, action, target, namespace, peer, result FROM audit \
                   WHERE time >= $1 ORDER BY id LIMIT $2";
        let rows = with_pool!(self, pool => sqlx::query(sql)
            .bind(since.unwrap_or(0))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| Ok(AuditRecord {
                id: r.try_get(0)?,
                time: from_nanos(r.try_get(1)?),
                who: r.try_get(2)?,
                action: r.try_get(3)?,
                target: r.try_get(4)?,
                namespace: r.try_get(5)?,
                peer: r.try_get(6)?,
                result: r.try_get(7)?,
            })).collect::<Result<Vec<_>, sqlx::Error>>()))
        .map_err(|source| self.query_error("read the audit log", source))?;
        Ok(rows)
    }
}
