//! Test servers and helpers shared by the database tests.
//!
//! PostgreSQL: `TRACERY_TEST_PG_URL` (default: role `root` over the unix socket, database
//! `tracery_test`); Redis: `TRACERY_TEST_REDIS_URL` (default 127.0.0.1:6379). Both are
//! started by `cargo xtask test -p tracery-databases`.

#![expect(dead_code, reason = "each test binary uses part of the helpers")]

use std::sync::atomic::{AtomicU32, Ordering};

use tracery_databases::{
    BoundQuery, CaptureLimits, CaptureSpec, DatabaseConfig, Databases, Param, QueryResult,
};

pub const DEFAULT_PG_URL: &str = "postgres://root@localhost/tracery_test?host=/var/run/postgresql";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

pub fn pg_url() -> String {
    std::env::var("TRACERY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into())
}

pub fn redis_url() -> String {
    std::env::var("TRACERY_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.into())
}

/// A name no other test (or parallel run) uses: tables and key prefixes.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A registry of `shop` (PostgreSQL) and `cache` (Redis) plus `extra` databases.
pub fn databases(extra: &[(&str, &str)], limits: CaptureLimits) -> Databases {
    let mut configs = vec![
        DatabaseConfig::new("shop", &pg_url()).unwrap(),
        DatabaseConfig::new("cache", &redis_url()).unwrap(),
    ];
    for (name, url) in extra {
        configs.push(DatabaseConfig::new(name, url).unwrap());
    }
    Databases::new(configs, limits)
}

/// Parses and binds `capture` with `vars` as the captured values.
pub fn bind(dbs: &Databases, capture: &str, vars: &[(&str, Param)]) -> BoundQuery {
    let spec =
        CaptureSpec::parse(capture, dbs.configs()).unwrap_or_else(|e| panic!("{capture}: {e}"));
    spec.bind(|path| {
        vars.iter()
            .find(|(name, _)| *name == path)
            .map(|(_, v)| v.clone())
    })
}

/// Runs one capture and returns its only result.
pub async fn capture_one(dbs: &Databases, capture: &str, vars: &[(&str, Param)]) -> QueryResult {
    let query = bind(dbs, capture, vars);
    let mut results = dbs.capture(&[query]).await;
    assert_eq!(results.len(), 1);
    results.remove(0)
}

/// A direct connection for setting up tables.
pub async fn pg_pool() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&pg_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to the test PostgreSQL ({e}); run `cargo xtask test -p \
                 tracery-databases` to start it, or point TRACERY_TEST_PG_URL at one"
            )
        })
}

/// A direct Redis connection for setting up keys.
pub async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to the test Redis ({e}); run `cargo xtask test -p \
                 tracery-databases` to start it, or point TRACERY_TEST_REDIS_URL at one"
            )
        })
}
