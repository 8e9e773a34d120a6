//! Message events and `tracery-ctl query`'s read-only SQL over the documented views, the
//! same tests on SQLite and on the real PostgreSQL that `cargo xtask test` starts.

mod common;

use std::time::{Duration, SystemTime};

use common::Fixture;
use serde_json::{json, Value as Json};
use tracery_store::{BreakpointId, EventRef, NewMessage, NewSnapshot, Store, StoreError};

const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T2: &str = "5cf92f3577b34da6a3ce929d0e0e4737";

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000) + Duration::from_millis(ms)
}

fn order(customer: &str, total: i64) -> Json {
    json!({
        "variables": [
            {"name": "order", "kind": "arg", "type": "Order", "value": {
                "customer": customer, "total": total, "items": [{"qty": 2}],
                "note": "a\u{0}b", "paid": false, "coupon": null
            }},
            {"name": "rate", "kind": "local", "type": "f64", "value": 0.5}
        ],
    })
}

/// Stores a hit of `trace` at `ms` with `body`; returns its id.
async fn hit(store: &Store, seq: u64, trace: &str, ms: u64, body: &Json) -> i64 {
    store
        .insert_snapshot(&NewSnapshot {
            agent_id: "node-a",
            breakpoint_id: BreakpointId(1),
            seq,
            pid: 10,
            tid: 11,
            time: at(ms),
            trace_id: Some(trace),
            body,
        })
        .await
        .unwrap()
        .id
        .0
}

fn message<'a>(trace: &'a str, kind: &'a str, seq: Option<u32>, ms: u64) -> NewMessage<'a> {
    NewMessage {
        agent_id: "node-a",
        node: "a",
        trace_id: trace,
        kind,
        local_addr: "127.0.0.1:40000",
        remote_addr: "127.0.0.1:8080",
        seq,
        bytes: 120,
        pid: 10,
        tid: 11,
        task: 0xc000_1234_5678,
        process_name: "demo-gateway",
        time: at(ms),
        held: seq.is_none(),
    }
}

async fn messages_are_stored_and_listed_by_trace(fx: Fixture) {
    let store = fx.open().await;
    let n = store
        .insert_messages(&[
            message(T1, "send", Some(u32::MAX), 1),
            message(T2, "recv", Some(5), 2),
            message(T1, "recv", None, 3),
        ])
        .await
        .unwrap();
    assert_eq!(n, 3);
    let t1 = store.list_trace_messages(T1, 100).await.unwrap();
    assert_eq!(t1.len(), 2);
    let first = &t1[0];
    assert_eq!(
        (
            first.kind.as_str(),
            first.seq,
            first.task,
            first.time,
            first.held
        ),
        ("send", Some(u32::MAX), 0xc000_1234_5678, at(1), false)
    );
    assert_eq!(first.process_name, "demo-gateway");
    assert_eq!((t1[1].seq, t1[1].held), (None, true));
    assert!(store
        .list_trace_messages("0", 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.traces_to_order(10).await.unwrap(), [T1, T2]);
    store
        .set_lamports(&[
            (EventRef::Message(first.id), 1),
            (EventRef::Message(t1[1].id), 2),
        ])
        .await
        .unwrap();
    assert_eq!(store.traces_to_order(10).await.unwrap(), [T2]);
    store.close().await;
    fx.cleanup().await;
}

/// The issue's example: every value of `order.total` for customer ana, in causal order.
/// In T1 the orders hit's clock says it came first; its Lamport order says second.
const ANA_TOTALS: &str = "\
    SELECT v.trace_id, v.number AS total, v.lamport \
    FROM variables v \
    JOIN variables c ON c.snapshot_id = v.snapshot_id \
    JOIN traces t ON t.trace_id = v.trace_id \
    WHERE v.path = 'order.total' AND c.path = 'order.customer' AND c.value = 'ana' \
    ORDER BY t.first_time, v.lamport";

async fn the_issue_s_example_query_follows_causal_order(fx: Fixture) {
    let store = fx.open().await;
    let gateway = hit(&store, 1, T1, 100, &order("ana", 2500)).await;
    // On a node whose clock is behind: before the gateway's hit by time, after it causally.
    let orders = hit(&store, 2, T1, 40, &order("ana", 2250)).await;
    let bob = hit(&store, 3, T2, 200, &order("bob", 999)).await;
    let later = hit(&store, 4, T2, 300, &order("ana", 10)).await;
    store
        .set_lamports(&[
            (EventRef::Snapshot(gateway), 1),
            (EventRef::Snapshot(orders), 4),
            (EventRef::Snapshot(bob), 1),
            (EventRef::Snapshot(later), 2),
        ])
        .await
        .unwrap();
    let r = store.query_read_only(ANA_TOTALS, 100).await.unwrap();
    assert_eq!(r.columns, ["trace_id", "total", "lamport"]);
    assert_eq!(
        r.rows,
        vec![
            vec![json!(T1), json!(2500.0), json!(1)],
            vec![json!(T1), json!(2250.0), json!(4)],
            vec![json!(T2), json!(10.0), json!(2)],
        ]
    );
    assert!(!r.truncated);

    // Every value path, typed alike on both backends.
    let r = store
        .query_read_only(
            &format!("SELECT path, type, value, json FROM variables WHERE snapshot_id = {gateway}"),
            100,
        )
        .await
        .unwrap();
    // Sorted here: PostgreSQL's collation may order punctuation unlike SQLite.
    let mut r = r;
    r.rows.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
    let rows: Vec<(String, String)> = r
        .rows
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_owned(),
                row[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = [
        ("order", "object"),
        ("order.coupon", "null"),
        ("order.customer", "string"),
        ("order.items", "array"),
        ("order.items[0]", "object"),
        ("order.items[0].qty", "number"),
        ("order.note", "string"),
        ("order.paid", "boolean"),
        ("order.total", "number"),
        ("rate", "number"),
    ];
    assert_eq!(
        rows,
        expect.map(|(p, t)| (p.to_owned(), t.to_owned())).to_vec()
    );
    let paid = &r.rows[7];
    assert_eq!(
        (paid[2].clone(), paid[3].clone()),
        (json!("false"), json!("false"))
    );
    let qty = &r.rows[5];
    assert_eq!((qty[2].clone(), qty[3].clone()), (json!("2"), json!("2")));

    // `traces` and `messages` answer too; a limit truncates.
    store
        .insert_messages(&[message(T1, "send", Some(1), 150)])
        .await
        .unwrap();
    let r = store
        .query_read_only(
            "SELECT trace_id, snapshots, messages FROM traces ORDER BY trace_id",
            1,
        )
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![json!(T1), json!(2), json!(1)]]);
    assert!(r.truncated);
    let r = store
        .query_read_only("SELECT kind, seq, held FROM messages", 10)
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![json!("send"), json!(1), json!(0)]]);
    store.close().await;
    fx.cleanup().await;
}

async fn a_write_is_refused_and_changes_nothing(fx: Fixture) {
    let store = fx.open().await;
    hit(&store, 1, T1, 1, &order("ana", 1)).await;
    for sql in [
        "DELETE FROM snapshots",
        "UPDATE snapshots SET trace_id = NULL",
        "INSERT INTO messages (agent_id, node, trace_id, kind, local_addr, remote_addr, \
         bytes, pid, tid, task, process_name, time, held) \
         VALUES ('x', 'x', 'x', 'send', 'x', 'x', 1, 1, 1, 1, 'x', 1, 0)",
        "DROP VIEW variables",
        "CREATE TABLE evil (x INTEGER)",
    ] {
        let err = store.query_read_only(sql, 10).await.unwrap_err();
        assert!(matches!(err, StoreError::ReadOnly { .. }), "{sql}: {err:?}");
        assert!(
            err.to_string().starts_with("queries are read-only"),
            "{err}"
        );
    }
    // Two statements: the second never writes either.
    let err = store
        .query_read_only("SELECT 1; DELETE FROM snapshots", 10)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::ReadOnly { .. } | StoreError::BadQuery { .. }
        ),
        "{err:?}"
    );
    let err = store
        .query_read_only("SELECT nothing FROM nowhere", 10)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadQuery { .. }), "{err:?}");
    let r = store
        .query_read_only("SELECT COUNT(*) AS n FROM snapshots", 10)
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![json!(1)]], "nothing was deleted");
    // The store itself still writes.
    hit(&store, 2, T1, 2, &order("ana", 2)).await;
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
    messages_are_stored_and_listed_by_trace,
    the_issue_s_example_query_follows_causal_order,
    a_write_is_refused_and_changes_nothing,
);
