//! The Tracery snapshot store: breakpoints, snapshots, agent-side drop counts and the
//! audit log.
//!
//! One API over two backends: an embedded SQLite file (standalone mode, the default) and
//! PostgreSQL (a cluster). [`Store::open`] picks the backend from the URL and brings the
//! schema up to date before it returns.
//!
//! Times are [`SystemTime`](std::time::SystemTime) in the API and unix nanoseconds in the
//! tables: SQLite has no time type and PostgreSQL's `TIMESTAMPTZ` keeps only microseconds,
//! while the agent's hit times carry nanoseconds. An integer column is lossless and sorts
//! the same on both backends.

mod audit;
mod breakpoint;
mod drops;
mod error;
mod message;
mod migrations;
mod open;
mod query;
mod snapshot;
mod time;

pub use audit::{AuditRecord, NewAuditEntry};
pub use breakpoint::{BreakpointId, BreakpointRecord};
pub use error::StoreError;
pub use message::{EventRef, MessageRecord, NewMessage};
pub use open::StoreKind;
pub use query::{QueryResult, QUERY_TIMEOUT};
pub use snapshot::{Inserted, NewSnapshot, SnapshotId, SnapshotRecord, SnapshotSummary};

use sqlx::{PgPool, SqlitePool};

/// A connection pool to the snapshot store; cheap to clone and share between tasks.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// The URL with any password masked, for messages.
    url: String,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same query code on whichever pool the store holds.
///
/// The body is compiled once per backend, so it may only use what both sqlx drivers
/// support; `$1`-style placeholders work on both.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

impl Store {
    /// Which database this store writes to.
    pub fn kind(&self) -> StoreKind {
        match self.backend {
            Backend::Sqlite(_) => StoreKind::Sqlite,
            Backend::Postgres(_) => StoreKind::Postgres,
        }
    }

    /// The URL the store was opened with, password masked: safe to log and show.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits for running queries and closes every connection (the SQLite file is then
    /// complete on disk, WAL checkpointed).
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}
