//! How long a hit's read takes: one PostgreSQL and one Redis query, the shape of the
//! demo's freeze breakpoint. Prints p50/p99; fails only past a loose bound, since this
//! machine is shared.

mod common;

use std::time::{Duration, Instant};

use common::{bind, databases, pg_pool, redis_connection, unique};
use redis::AsyncCommands;
use sqlx::{AssertSqlSafe, SqlSafeStr};
use tracery_databases::{CaptureLimits, Param};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_postgres_and_one_redis_query_per_hit() {
    let pool = pg_pool().await;
    let t = unique("latency_orders");
    sqlx::raw_sql(
        AssertSqlSafe(format!(
            "CREATE TABLE {t} (id int4 PRIMARY KEY, customer text, total_cents int8); \
             INSERT INTO {t} SELECT n, 'c' || (n % 50), n * 10 FROM generate_series(1, 1000) n"
        ))
        .into_sql_str(),
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut con = redis_connection().await;
    let key = unique("tracery:test:latency");
    let _: () = con
        .hset_multiple(format!("{key}:c7"), &[("items", "3"), ("total", "120")])
        .await
        .unwrap();
    let dbs = databases(&[], CaptureLimits::default());
    let vars = [("order.customer", Param::Text("c7".into()))];
    let queries = vec![
        bind(
            &dbs,
            &format!(
                "shop: SELECT id, total_cents FROM {t} WHERE customer = {{order.customer}} \
                 ORDER BY id"
            ),
            &vars,
        ),
        bind(
            &dbs,
            &format!("cache: HGETALL {key}:{{order.customer}}"),
            &vars,
        ),
    ];
    // The first read connects; a hit after that should not.
    let first = Instant::now();
    dbs.capture(&queries).await;
    let connect = first.elapsed();
    let mut times = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let results = dbs.capture(&queries).await;
        times.push(started.elapsed());
        assert_eq!(results[0].error, None);
        assert_eq!(results[0].rows.len(), 20);
        assert_eq!(results[1].rows.len(), 2);
    }
    times.sort();
    let (p50, p99) = (times[100], times[197]);
    println!(
        "first read (connects) {connect:?}; then p50 {p50:?}, p99 {p99:?}, max {:?}",
        times[199]
    );
    assert!(p99 < Duration::from_millis(250), "p99 {p99:?}");
    sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {t}")).into_sql_str())
        .execute(&pool)
        .await
        .unwrap();
    let _: () = con.del(format!("{key}:c7")).await.unwrap();
}
