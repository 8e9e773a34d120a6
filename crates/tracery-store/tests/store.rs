//! The store's behaviour, the same tests on both backends: SQLite in a temporary
//! directory and the real PostgreSQL that `cargo xtask test` starts.
//!
//! PostgreSQL tests read `TRACERY_TEST_PG_URL` (default: role `root` over the unix socket,
//! database `tracery_test`) and each works in a schema of its own, so they run in parallel.
//! They fail, never skip, when PostgreSQL is not there.

mod common;

use std::time::{Duration, SystemTime};

use common::Fixture;
use serde_json::{json, Value as Json};
use sqlx::Connection;
use tracery_model::error::chain;
use tracery_store::{
    BreakpointId, Inserted, NewAuditEntry, NewSnapshot, SnapshotId, Store, StoreError, StoreKind,
};

fn at(secs: u64, nanos: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
}

/// A body shaped like the agent's `Snapshot::to_json`.
fn body(seq: u64) -> Json {
    json!({
        "breakpoint_id": 1,
        "pid": 4242,
        "tid": 4243,
        "time": "2026-11-22T22:14:24.123456789Z",
        "location": {"function": "orders::process", "file": "src/orders.rs", "line": 42, "address": "0x5555_0000_1234"},
        "variables": [
            {"name": "seq", "kind": "arg", "type": "u64", "value": seq},
            {"name": "order", "kind": "local", "type": "Order", "value": {
                "id": u64::MAX, "qty": -7, "price": 12.5, "note": "café ☕ \"quoted\"\n",
                "raw": "a\u{0}b", "tags": ["x", "y"], "parent": null, "paid": false
            }}
        ],
        "stack": [{"function": "main", "file": null, "line": null, "address": "0x1000", "inlined": false}],
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"
    })
}

fn hit<'a>(agent: &'a str, breakpoint: BreakpointId, seq: u64, body: &'a Json) -> NewSnapshot<'a> {
    NewSnapshot {
        agent_id: agent,
        breakpoint_id: breakpoint,
        seq,
        pid: 4242,
        tid: 4243,
        time: at(1_795_000_000, 123_456_789),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        body,
    }
}

async fn migrations_run_once_and_reopen_is_idempotent(fx: Fixture) {
    let store = fx.open().await;
    let kind = store.kind();
    assert!(store.list_breakpoints(true).await.unwrap().is_empty());
    store.close().await;
    // A second and a third open find the schema current and change nothing.
    for _ in 0..2 {
        let store = fx.open().await;
        assert_eq!(store.kind(), kind);
        assert!(store.list_breakpoints(true).await.unwrap().is_empty());
        store.close().await;
    }
    fx.cleanup().await;
}

async fn breakpoints_create_list_delete(fx: Fixture) {
    let store = fx.open().await;
    let before = SystemTime::now();
    let spec_a =
        json!({"exe": "/usr/bin/orders", "at": "orders.go:42", "hits": 100, "when": "qty > 10"});
    let spec_b = json!({"service": "cart", "at": "cart::add", "rate": 10});
    let expires = at(1_795_003_600, 999_999_999);
    let a = store.create_breakpoint(&spec_a, expires).await.unwrap();
    let b = store.create_breakpoint(&spec_b, expires).await.unwrap();
    let after = SystemTime::now();
    assert!(b > a, "ids increase: {a} then {b}");

    let live = store.list_breakpoints(false).await.unwrap();
    assert_eq!(live.iter().map(|r| r.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(live[0].spec, spec_a);
    assert_eq!(live[1].spec, spec_b);
    assert_eq!(live[0].expires_at, expires, "times keep their nanoseconds");
    assert!(live[0].created_at >= before && live[0].created_at <= after);
    assert_eq!(live[0].deleted_at, None);

    assert!(store.delete_breakpoint(a).await.unwrap());
    assert!(!store.delete_breakpoint(a).await.unwrap(), "deleting twice");
    assert!(
        !store
            .delete_breakpoint(BreakpointId(b.0 + 1000))
            .await
            .unwrap(),
        "unknown id"
    );

    let live = store.list_breakpoints(false).await.unwrap();
    assert_eq!(live.iter().map(|r| r.id).collect::<Vec<_>>(), [b]);
    let all = store.list_breakpoints(true).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [a, b]);
    assert!(all[0].deleted_at.is_some_and(|t| t >= after));
    assert_eq!(all[0].spec, spec_a, "a deleted breakpoint keeps its spec");
    store.close().await;
    fx.cleanup().await;
}

async fn a_resent_hit_is_stored_once(fx: Fixture) {
    let store = fx.open().await;
    let bp = store
        .create_breakpoint(&json!({}), at(1_795_003_600, 0))
        .await
        .unwrap();
    let first = body(1);
    let inserted = store
        .insert_snapshot(&hit("node-a", bp, 1, &first))
        .await
        .unwrap();
    assert!(!inserted.duplicate);

    // The resend carries the same identity; even a different body does not overwrite.
    let resent_body = body(999);
    let again = store
        .insert_snapshot(&hit("node-a", bp, 1, &resent_body))
        .await
        .unwrap();
    assert_eq!(
        again,
        Inserted {
            id: inserted.id,
            duplicate: true
        }
    );
    assert_eq!(
        store.list_snapshots(None, None, 100).await.unwrap().len(),
        1
    );
    assert_eq!(
        store.get_snapshot(inserted.id).await.unwrap().unwrap().body,
        first
    );

    // Another agent, or another seq, is another hit.
    let other_agent = store
        .insert_snapshot(&hit("node-b", bp, 1, &first))
        .await
        .unwrap();
    let other_seq = store
        .insert_snapshot(&hit("node-a", bp, 2, &first))
        .await
        .unwrap();
    assert!(!other_agent.duplicate && !other_seq.duplicate);
    assert_ne!(other_agent.id, inserted.id);
    assert_ne!(other_seq.id, other_agent.id);

    // Concurrent resends of one new hit: exactly one row, one writer, one id.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let b = body(3);
                store
                    .insert_snapshot(&hit("node-a", bp, 3, &b))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert_eq!(
        results.iter().filter(|r| !r.duplicate).count(),
        1,
        "{results:?}"
    );
    assert!(results.iter().all(|r| r.id == results[0].id), "{results:?}");
    assert_eq!(
        store.list_snapshots(None, None, 100).await.unwrap().len(),
        4
    );
    store.close().await;
    fx.cleanup().await;
}

async fn snapshots_list_in_id_order_with_filter_and_pages(fx: Fixture) {
    let store = fx.open().await;
    let expires = at(1_795_003_600, 0);
    let bp1 = store
        .create_breakpoint(&json!({"n": 1}), expires)
        .await
        .unwrap();
    let bp2 = store
        .create_breakpoint(&json!({"n": 2}), expires)
        .await
        .unwrap();
    let b = body(0);
    let mut ids = Vec::new();
    for seq in 0..6 {
        let bp = if seq % 2 == 0 { bp1 } else { bp2 };
        ids.push(
            store
                .insert_snapshot(&hit("node-a", bp, seq, &b))
                .await
                .unwrap()
                .id,
        );
    }
    let listed =
        |v: Vec<tracery_store::SnapshotSummary>| v.iter().map(|s| s.id).collect::<Vec<_>>();

    assert_eq!(
        listed(store.list_snapshots(None, None, 100).await.unwrap()),
        ids
    );
    // Pages of two, each after the last id of the one before.
    let page1 = listed(store.list_snapshots(None, None, 2).await.unwrap());
    let page2 = listed(store.list_snapshots(None, Some(page1[1]), 2).await.unwrap());
    let page3 = listed(store.list_snapshots(None, Some(page2[1]), 2).await.unwrap());
    let page4 = listed(store.list_snapshots(None, Some(page3[1]), 2).await.unwrap());
    assert_eq!([page1, page2, page3].concat(), ids);
    assert!(page4.is_empty());

    let of_bp1 = store.list_snapshots(Some(bp1), None, 100).await.unwrap();
    assert_eq!(listed(of_bp1.clone()), [ids[0], ids[2], ids[4]]);
    assert!(of_bp1.iter().all(|s| s.breakpoint_id == bp1));
    assert_eq!(of_bp1.iter().map(|s| s.seq).collect::<Vec<_>>(), [0, 2, 4]);
    assert_eq!(
        listed(
            store
                .list_snapshots(Some(bp2), Some(ids[1]), 1)
                .await
                .unwrap()
        ),
        [ids[3]]
    );
    assert!(store
        .list_snapshots(Some(BreakpointId(bp2.0 + 100)), None, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_snapshots(None, None, 0)
        .await
        .unwrap()
        .is_empty());
    store.close().await;
    fx.cleanup().await;
}

async fn get_returns_the_exact_body(fx: Fixture) {
    let store = fx.open().await;
    let bp = store
        .create_breakpoint(&json!({}), at(1_795_003_600, 0))
        .await
        .unwrap();
    let b = body(7);
    let new = NewSnapshot {
        pid: u32::MAX,
        tid: 1,
        trace_id: None,
        time: at(1_795_000_001, 1),
        ..hit("node-ä", bp, u64::try_from(i64::MAX).unwrap(), &b)
    };
    let id = store.insert_snapshot(&new).await.unwrap().id;
    let got = store
        .get_snapshot(id)
        .await
        .unwrap()
        .expect("stored snapshot");
    assert_eq!(got.body, b);
    assert_eq!(got.body.to_string(), b.to_string());
    let s = &got.summary;
    assert_eq!(
        (s.id, s.breakpoint_id, s.agent_id.as_str()),
        (id, bp, "node-ä")
    );
    assert_eq!((s.seq, s.pid, s.tid), (new.seq, u32::MAX, 1));
    assert_eq!((s.time, s.trace_id.as_deref()), (new.time, None));

    assert_eq!(
        store.get_snapshot(SnapshotId(id.0 + 1000)).await.unwrap(),
        None
    );
    // A seq beyond what the column holds is refused, not wrapped.
    let err = store
        .insert_snapshot(&NewSnapshot {
            seq: u64::MAX,
            ..new
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::OutOfRange { field: "seq", .. }),
        "{err}"
    );
    store.close().await;
    fx.cleanup().await;
}

async fn snapshots_of_one_trace_list_oldest_first(fx: Fixture) {
    let store = fx.open().await;
    let bp = store
        .create_breakpoint(&json!({}), at(1_795_003_600, 0))
        .await
        .unwrap();
    let b = body(1);
    let mut ids = Vec::new();
    for (seq, trace) in [
        (1, Some("4bf92f3577b34da6a3ce929d0e0e4736")),
        (2, None),
        (3, Some("0000000000000000a3ce929d0e0e4736")),
        (4, Some("4bf92f3577b34da6a3ce929d0e0e4736")),
    ] {
        let new = NewSnapshot {
            trace_id: trace,
            ..hit("node-1", bp, seq, &b)
        };
        ids.push(store.insert_snapshot(&new).await.unwrap().id);
    }
    let of = store
        .list_trace_snapshots("4bf92f3577b34da6a3ce929d0e0e4736", 10)
        .await
        .unwrap();
    let got: Vec<_> = of.iter().map(|r| r.summary.id).collect();
    assert_eq!(got, vec![ids[0], ids[3]]);
    assert_eq!(of[0].body, b);
    let first = store
        .list_trace_snapshots("4bf92f3577b34da6a3ce929d0e0e4736", 1)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(store
        .list_trace_snapshots("ffffffffffffffffffffffffffffffff", 10)
        .await
        .unwrap()
        .is_empty());
    store.close().await;
    fx.cleanup().await;
}

async fn drops_add_up(fx: Fixture) {
    let store = fx.open().await;
    let (bp1, bp2) = (BreakpointId(1), BreakpointId(2));
    assert_eq!(store.drops(None).await.unwrap(), 0);
    store.add_drops("node-a", bp1, 3).await.unwrap();
    store.add_drops("node-a", bp1, 4).await.unwrap();
    store.add_drops("node-b", bp1, 5).await.unwrap();
    store.add_drops("node-a", bp2, 2).await.unwrap();
    store.add_drops("node-a", bp2, 0).await.unwrap();
    assert_eq!(store.drops(Some(bp1)).await.unwrap(), 12);
    assert_eq!(store.drops(Some(bp2)).await.unwrap(), 2);
    assert_eq!(store.drops(None).await.unwrap(), 14);
    assert_eq!(store.drops(Some(BreakpointId(3))).await.unwrap(), 0);
    store.close().await;
    fx.cleanup().await;
}

async fn everything_survives_a_reopen(fx: Fixture) {
    let store = fx.open().await;
    let spec = json!({"at": "main.rs:7"});
    let bp = store
        .create_breakpoint(&spec, at(1_795_003_600, 5))
        .await
        .unwrap();
    let gone = store
        .create_breakpoint(&json!({}), at(1_795_003_600, 5))
        .await
        .unwrap();
    store.delete_breakpoint(gone).await.unwrap();
    let b = body(1);
    let id = store
        .insert_snapshot(&hit("node-a", bp, 1, &b))
        .await
        .unwrap()
        .id;
    store.add_drops("node-a", bp, 9).await.unwrap();
    store.close().await;
    drop(store);

    let store = fx.open().await;
    let live = store.list_breakpoints(false).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].id, &live[0].spec), (bp, &spec));
    assert_eq!(store.list_breakpoints(true).await.unwrap().len(), 2);
    assert_eq!(store.get_snapshot(id).await.unwrap().unwrap().body, b);
    assert_eq!(store.drops(Some(bp)).await.unwrap(), 9);
    // The resend after a restart is still recognised.
    let again = store
        .insert_snapshot(&hit("node-a", bp, 1, &b))
        .await
        .unwrap();
    assert_eq!(
        again,
        Inserted {
            id,
            duplicate: true
        }
    );
    // Ids are not reused after a restart.
    let next = store
        .create_breakpoint(&json!({}), at(1_795_003_600, 5))
        .await
        .unwrap();
    assert!(next > gone);
    store.close().await;
    fx.cleanup().await;
}

async fn audit_appends_lists_since_and_refuses_changes(fx: Fixture) {
    let store = fx.open().await;
    for (secs, action) in [(1_795_000_000, "set"), (1_795_000_060, "delete")] {
        let entry = NewAuditEntry {
            time: at(secs, 7),
            who: "alice",
            action,
            target: "breakpoint 1",
            namespace: "team-a",
            peer: "10.0.0.9:5000",
            result: "ok",
        };
        store.append_audit(&entry).await.unwrap();
    }
    let all = store.list_audit(None, 100).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].action.as_str(), all[0].time),
        ("set", at(1_795_000_000, 7))
    );
    let since = store
        .list_audit(Some(at(1_795_000_001, 0)), 100)
        .await
        .unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].action, "delete");
    // The store has no update or delete path; the triggers refuse them from any client too.
    for sql in ["UPDATE audit SET result = 'forged'", "DELETE FROM audit"] {
        let refused = match &fx {
            Fixture::Sqlite { .. } => {
                let mut c = sqlx::SqliteConnection::connect(&fx.url()).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .map(drop)
            }
            Fixture::Postgres { .. } => {
                let mut c = sqlx::PgConnection::connect(&fx.url()).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .map(drop)
            }
        };
        let e = refused.expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(store.list_audit(None, 100).await.unwrap(), all);
    store.close().await;
    fx.cleanup().await;
}

/// Each scenario above, once per backend.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Fixture::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Fixture::postgres().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    migrations_run_once_and_reopen_is_idempotent,
    breakpoints_create_list_delete,
    a_resent_hit_is_stored_once,
    snapshots_list_in_id_order_with_filter_and_pages,
    get_returns_the_exact_body,
    snapshots_of_one_trace_list_oldest_first,
    drops_add_up,
    everything_survives_a_reopen,
    audit_appends_lists_since_and_refuses_changes,
);

// Backend-specific behaviour.

#[tokio::test]
async fn sqlite_creates_the_file_and_its_directories_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/store.db");
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(store.kind(), StoreKind::Sqlite);
    assert!(path.is_file());
    store
        .create_breakpoint(&json!({}), at(1_795_003_600, 0))
        .await
        .unwrap();
    assert!(
        path.with_extension("db-wal").exists(),
        "WAL journal next to the file"
    );
    store.close().await;

    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3], "each migration recorded once");
}

#[tokio::test]
async fn a_store_from_a_newer_tracery_is_refused() {
    let fx = Fixture::sqlite();
    fx.open().await.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&fx.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', TRUE, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let err = Store::open(&fx.url()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { version: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer Tracery"), "{err}");
}

#[tokio::test]
async fn an_unknown_url_scheme_says_what_is_accepted() {
    let err = Store::open("mysql://db/tracery").await.unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }));
    assert!(
        err.to_string()
            .contains("--store sqlite:///path/to/file.db"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_postgres_says_where_and_hides_the_password() {
    // Port 1 on loopback: nothing listens there.
    let err = Store::open("postgres://tracery:s3cret@127.0.0.1:1/tracery")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConnectPostgres { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("cannot reach PostgreSQL at postgres://tracery:***@127.0.0.1:1/tracery"),
        "{text}"
    );
    assert!(text.contains("is it running?"), "{text}");
    assert!(!chain(&err).contains("s3cret"), "{}", chain(&err));
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "not a database, just text that is long enough to have a header",
    )
    .unwrap();
    let err = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_err();
    eprintln!("{}", chain(&err));
    assert!(matches!(err, StoreError::OpenSqlite { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}
