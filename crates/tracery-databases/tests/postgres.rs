//! Capture reads against the real test PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::{bind, capture_one, databases, pg_pool, unique};
use serde_json::json;
use sqlx::{AssertSqlSafe, SqlSafeStr};
use tracery_databases::{CaptureLimits, Consistency, Param};

async fn exec(pool: &sqlx::PgPool, sql: String) {
    sqlx::raw_sql(AssertSqlSafe(sql).into_sql_str())
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_rows_and_values_with_int_string_and_field_params() {
    let pool = pg_pool().await;
    let t = unique("orders");
    exec(
        &pool,
        format!(
            "CREATE TABLE {t} (id int4 PRIMARY KEY, customer text, total numeric(12,2), \
             paid bool, placed timestamptz, day date, tags text[], meta jsonb, raw bytea, \
             ref uuid, ratio float8, big int8); \
             INSERT INTO {t} VALUES \
             (1, 'alice', 12.50, true, '2026-01-02 03:04:05.5+00', '2026-01-02', \
              '{{a,b}}', '{{\"k\": [1, 2]}}', '\\x01ff', \
              'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 0.25, 9007199254740993), \
             (2, 'bob', 99999999.99, false, NULL, NULL, '{{}}', 'null', NULL, NULL, NULL, NULL), \
             (3, 'alice', 0.01, NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1.5, -7)"
        ),
    )
    .await;
    let dbs = databases(&[], CaptureLimits::default());

    // A string, through a struct field path.
    let r = capture_one(
        &dbs,
        &format!("shop: SELECT * FROM {t} WHERE customer = {{order.customer}} ORDER BY id"),
        &[("order.customer", Param::Text("alice".into()))],
    )
    .await;
    assert_eq!(r.error, None);
    assert_eq!(
        r.rows,
        vec![
            json!({"id": 1, "customer": "alice", "total": "12.50", "paid": true,
                   "placed": "2026-01-02T03:04:05.5+00:00", "day": "2026-01-02",
                   "tags": ["a", "b"], "meta": {"k": [1, 2]}, "raw": "\\x01ff",
                   "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "ratio": 0.25,
                   "big": 9007199254740993_i64}),
            json!({"id": 3, "customer": "alice", "total": "0.01", "paid": null,
                   "placed": null, "day": null, "tags": null, "meta": null, "raw": null,
                   "ref": null, "ratio": -1.5, "big": -7}),
        ]
    );
    assert!(!r.truncated);
    assert_eq!(r.kind.as_str(), "postgres");
    assert_eq!(r.params[0].path, "order.customer");
    match &r.consistency {
        Consistency::PostgresSnapshot { snapshot, .. } => {
            assert_eq!(snapshot.split(':').count(), 3, "{snapshot}")
        }
        other => panic!("{other:?}"),
    }
    assert!(r.read_at.ends_with('Z'), "{}", r.read_at);

    // An integer, and a field through a pointer; the same placeholder used twice.
    let r = capture_one(
        &dbs,
        &format!(
            "shop: SELECT id, total, customer FROM {t} \
             WHERE id = {{id}} OR (id = {{req->user.id}} AND {{id}} > 0) ORDER BY id"
        ),
        &[("id", Param::Int(2)), ("req->user.id", Param::UInt(3))],
    )
    .await;
    assert_eq!(r.error, None);
    assert_eq!(
        r.rows,
        vec![
            json!({"id": 2, "total": "99999999.99", "customer": "bob"}),
            json!({"id": 3, "total": "0.01", "customer": "alice"}),
        ]
    );

    // A captured string holding a number binds to the int4 column; a float to numeric.
    let r = capture_one(
        &dbs,
        &format!("shop: SELECT id FROM {t} WHERE id = {{s}} AND total > {{f}}"),
        &[("s", Param::Text("1".into())), ("f", Param::Float(12.25))],
    )
    .await;
    assert_eq!((r.error, r.rows), (None, vec![json!({"id": 1})]));

    // A value PostgreSQL cannot take is that query's error.
    let r = capture_one(
        &dbs,
        &format!("shop: SELECT id FROM {t} WHERE id = {{s}}"),
        &[("s", Param::Text("abc".into()))],
    )
    .await;
    let error = r.error.unwrap();
    assert!(
        error.contains("invalid input syntax for type integer"),
        "{error}"
    );

    exec(&pool, format!("DROP TABLE {t}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_unresolved_query_leaves_the_others_in_the_same_snapshot() {
    let dbs = databases(&[], CaptureLimits::default());
    let queries = vec![
        bind(
            &dbs,
            "shop: SELECT 1 / {zero} AS x",
            &[("zero", Param::Int(0))],
        ),
        bind(&dbs, "shop: SELECT {missing.field} AS x", &[]),
        bind(&dbs, "shop: SELECT 2 AS two", &[]),
    ];
    let results = dbs.capture(&queries).await;
    assert!(
        results[0]
            .error
            .as_deref()
            .unwrap()
            .contains("division by zero"),
        "{:?}",
        results[0].error
    );
    assert_eq!(
        results[1].error.as_deref(),
        Some("placeholder value not captured at this hit: missing.field")
    );
    assert_eq!(results[2].error, None);
    assert_eq!(results[2].rows, vec![json!({"two": 2})]);
    assert_eq!(results[0].consistency, results[2].consistency);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_and_bytes_are_truncated_at_the_limits() {
    let dbs = databases(&[], CaptureLimits::default());
    let r = capture_one(
        &dbs,
        "shop: SELECT n FROM generate_series(1, 150) AS n",
        &[],
    )
    .await;
    assert_eq!(r.error, None);
    assert_eq!(r.rows.len(), 100);
    assert_eq!(r.rows[99], json!({"n": 100}));
    assert!(r.truncated);

    let r = capture_one(
        &dbs,
        "shop: SELECT n FROM generate_series(1, 100) AS n",
        &[],
    )
    .await;
    assert_eq!((r.rows.len(), r.truncated), (100, false));

    let small = databases(
        &[],
        CaptureLimits {
            max_result_bytes: 1000,
            ..CaptureLimits::default()
        },
    );
    let r = capture_one(
        &small,
        "shop: SELECT repeat('x', 300) AS s FROM generate_series(1, 10)",
        &[],
    )
    .await;
    assert_eq!((r.rows.len(), r.truncated), (3, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_timeout_fails_at_the_timeout() {
    let dbs = databases(&[], CaptureLimits::default());
    let queries = vec![
        bind(&dbs, "shop: SELECT pg_sleep(5)", &[]),
        bind(&dbs, "cache: GET tracery:no-such-key", &[]),
    ];
    let started = Instant::now();
    let results = dbs.capture(&queries).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3000),
        "took {took:?}"
    );
    let error = results[0].error.as_deref().unwrap();
    assert!(error.contains("statement timeout"), "{error}");
    // The other database was read concurrently, unaffected.
    assert_eq!(results[1].error, None);
    assert!(results[1].rows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_its_query_quickly_without_the_password() {
    let url = "postgres://tracery:Sup3rSecretPw@127.0.0.1:1/shop";
    let dbs = databases(&[("down", url)], CaptureLimits::default());
    assert!(!format!("{dbs:?}").contains("Sup3rSecretPw"));
    let started = Instant::now();
    let r = capture_one(&dbs, "down: SELECT 1", &[]).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let error = r.error.clone().unwrap();
    assert!(error.contains("cannot connect to PostgreSQL"), "{error}");
    assert!(!error.contains("Sup3rSecretPw"), "{error}");
    assert_eq!(r.consistency, Consistency::NotRead);
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("Sup3rSecretPw"));
}

/// A writer moves money between two rows, one transaction per move; every capture of
/// both rows (two separate queries of one hit) must see the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_see_a_consistent_snapshot_while_a_writer_moves_money() {
    const TOTAL: i64 = 1_000_000;
    let pool = pg_pool().await;
    let t = unique("accounts");
    exec(
        &pool,
        format!(
            "CREATE TABLE {t} (id int4 PRIMARY KEY, balance int8 NOT NULL); \
             INSERT INTO {t} VALUES (1, {TOTAL}), (2, 0)"
        ),
    )
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = tokio::spawn({
        let (pool, t, stop, progress) = (pool.clone(), t.clone(), stop.clone(), progress.clone());
        async move {
            let mut moves = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let amount = (moves % 7) as i64 + 1;
                let (from, to) = (1, 2);
                let mut tx = pool.begin().await.unwrap();
                for (id, delta) in [(from, -amount), (to, amount)] {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {t} SET balance = balance + $1 WHERE id = $2"
                    )))
                    .bind(delta)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                    // Widen the window between the two updates.
                    tokio::task::yield_now().await;
                }
                tx.commit().await.unwrap();
                moves += 1;
                progress.store(moves, std::sync::atomic::Ordering::Relaxed);
            }
            moves
        }
    });
    let dbs = databases(&[], CaptureLimits::default());
    let queries = vec![
        bind(
            &dbs,
            &format!("shop: SELECT balance FROM {t} WHERE id = {{a}}"),
            &[("a", Param::Int(1))],
        ),
        bind(
            &dbs,
            &format!("shop: SELECT balance FROM {t} WHERE id = {{b}}"),
            &[("b", Param::Int(2))],
        ),
    ];
    let mut others_in_progress = 0;
    // Capture only once the writer is under way (its connection can take a while).
    let started = std::time::Instant::now();
    while progress.load(std::sync::atomic::Ordering::Relaxed) < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the writer does not start"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..200 {
        let results = dbs.capture(&queries).await;
        let balance = |k: usize| {
            assert_eq!(results[k].error, None);
            results[k].rows[0]["balance"].as_i64().unwrap()
        };
        assert_eq!(balance(0) + balance(1), TOTAL, "capture {i}: {results:?}");
        seen.insert(balance(0));
        if let Consistency::PostgresSnapshot {
            others_in_progress: true,
            ..
        } = results[0].consistency
        {
            others_in_progress += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let moves = writer.await.unwrap();
    // The captures ran while the money moved: they saw many different balances.
    assert!(
        seen.len() >= 10,
        "only {} states seen in {moves} moves",
        seen.len()
    );
    // The record says when a writer was mid-move: some captures must have seen one.
    assert!(
        others_in_progress > 0,
        "no capture saw the writer in progress"
    );
    println!("200 captures during {moves} moves, {} distinct balances; {others_in_progress} saw a writer in progress", seen.len());
    exec(&pool, format!("DROP TABLE {t}")).await;
}
