//! What can go wrong opening or using the store, each with what to do about it.

use std::path::PathBuf;

/// An error from the snapshot store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported store URL {url:?}; pass --store sqlite:///path/to/file.db \
         or --store postgres://user@host/database"
    )]
    UnsupportedUrl { url: String },

    #[error("invalid store URL {url:?}; check the URL given to --store")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "cannot create the store directory {}; check its permissions or pass another --store",
        dir.display()
    )]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cannot open the SQLite store {}; check that the file is a Tracery store and writable, \
         or pass another --store",
        path.display()
    )]
    OpenSqlite {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "cannot reach PostgreSQL at {url}; is it running? check the URL given to --store \
         (user, host, database and credentials)"
    )]
    ConnectPostgres {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "the store at {url} holds schema version {version}, which this Tracery does not know; \
         it was written by a newer Tracery: upgrade, or pass another --store"
    )]
    NewerSchema { url: String, version: i64 },

    #[error(
        "cannot bring the store schema at {url} up to date; check that the database user \
         may create tables, then restart"
    )]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    #[error("the store failed to {operation}; check that the database at {url} is reachable")]
    Query {
        operation: &'static str,
        url: String,
        #[source]
        source: sqlx::Error,
    },

    #[error("{field} {value} cannot be stored: it does not fit a signed 64-bit integer")]
    OutOfRange { field: &'static str, value: String },

    #[error("queries are read-only; the database refused a write: {reason}")]
    ReadOnly { reason: String },

    #[error("the query failed: {reason}")]
    BadQuery { reason: String },
}
