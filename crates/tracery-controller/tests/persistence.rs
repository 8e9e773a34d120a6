//! The controller across restarts, on SQLite and on the real PostgreSQL.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::*;

#[tokio::test]
async fn breakpoints_and_snapshots_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    restart_persists(&url).await;
}

/// Stores a breakpoint and hits, restarts the controller on the same store, and checks
/// that everything is still there and a reconnecting agent is armed again.
async fn restart_persists(url: &str) {
    let controller = Controller::start(url).await;
    let (bp, stored) = hit_round_trip(&controller).await;
    let mut agent = controller.agent("node-1").await;
    agent.expect_arm(bp.id).await;
    controller.stop().await;

    let controller = Controller::start(url).await;
    let mut client = controller.client().await;
    let listed = list_breakpoints(&mut client).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, bp.id);
    assert_eq!(listed[0].spec, bp.spec);
    assert_eq!(listed[0].hits, 2);
    let fetched = client
        .get_snapshot(v1::GetSnapshotRequest { id: stored.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, stored);
    let mut agent = controller.agent("node-1").await;
    agent.expect_arm(bp.id).await;
    controller.stop().await;
}

#[tokio::test]
async fn postgres_store_persists_across_a_restart() {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::env::var("TRACERY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!(
        "controller_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach PostgreSQL at {base}: {e}\n\
             run the tests with `cargo xtask test`, which starts PostgreSQL and creates the \
             test database, or point TRACERY_TEST_PG_URL at one"
            )
        });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("cannot create the test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    restart_persists(&format!("{base}{sep}options[search_path]={schema}")).await;
    // A failed test leaves the schema for inspection.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_told_how_many_it_missed() {
    const HITS: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&sqlite_url(dir.path())).await;
    let mut client = controller.client().await;
    let bp = client
        .set_breakpoint(spec_at("orders.rs:39"))
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap();
    // Opened and then not read while the hits arrive.
    let mut slow = watch(&mut client, Some(bp.id)).await;
    let agent = controller.agent("node-1").await;
    // Large hits fill the gRPC flow-control window quickly, so the backlog overflows.
    let mut big = snapshot(bp.id, 0);
    big.variables.push(v1::Variable {
        name: "payload".into(),
        kind: v1::VarKind::Local.into(),
        type_name: "char[4096]".into(),
        value: Some(v1::Value {
            kind: Some(v1::value::Kind::Str(v1::value::Str {
                text: "x".repeat(4096),
                truncated: false,
            })),
        }),
        frame: None,
    });
    for seq in 1..=HITS {
        agent.send(hit(big.clone(), seq)).await;
    }
    status_until(&mut client, |s| {
        s.breakpoints.first().is_some_and(|b| b.hits == HITS)
    })
    .await;

    let mut received = 0u64;
    let err = loop {
        match tokio::time::timeout(WAIT, slow.message())
            .await
            .expect("the watch stalled")
        {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the watch ended silently after {received} of {HITS} snapshots"),
            Err(status) => break status,
        }
    };
    assert!(received < HITS);
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("missed"), "{}", err.message());
    assert!(err.message().contains("snapshot list"), "{}", err.message());
    controller.stop().await;
}
