//! Database records at the instant of a breakpoint hit.
//!
//! - [`config`]: databases named once (`--database NAME=URL`, `[databases.NAME]`), with
//!   URLs whose password never prints.
//! - [`capture`]: a breakpoint's capture queries (`shop: SELECT ... {order.id}`), checked
//!   when it is set: known database, read-only, valid syntax, placeholders in scope.
//! - [`read`]: at the hit, one consistent read per database (a PostgreSQL
//!   `REPEATABLE READ READ ONLY` transaction, a Redis `MULTI`/`EXEC`, a MongoDB snapshot
//!   session), all databases at once, bounded by the statement timeout.

pub mod capture;
pub mod config;
pub mod param;
pub mod read;

pub use capture::{BoundParam, BoundQuery, CaptureError, CaptureQuery, CaptureSpec};
pub use config::{
    resolve_databases, CaptureLimits, ConfigError, DatabaseConfig, DatabaseEntry, DatabaseKind,
    DatabaseUrl, DatabasesSection, UrlError,
};
pub use param::Param;
pub use read::{ClusterTime, Consistency, Databases, QueryResult};

// Tests: `cargo xtask test -p tracery-databases` starts PostgreSQL and Redis and runs them
// all. The MongoDB server tests are `#[ignore]`d (no server can be installed on the
// development machines): set TRACERY_TEST_MONGODB_URL and add `-- --include-ignored`.
