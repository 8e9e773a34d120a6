//! Database captures end to end: `breakpoint set --capture` on a real standalone Tracery,
//! hits in real C, Rust and Go processes, reads from the real PostgreSQL and Redis that
//! `cargo xtask test` starts.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{standalone::Standalone, *};
use serde_json::{json, Value};
use tracery_tests::{require_root, FixtureProcess, PrivateCopy};

fn pg_url() -> String {
    std::env::var("TRACERY_TEST_PG_URL").unwrap_or_else(|_| {
        "postgres://root@localhost/tracery_test?host=/var/run/postgresql".into()
    })
}

fn redis_url() -> String {
    std::env::var("TRACERY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A table name or key prefix no other test (or run) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs SQL on the test PostgreSQL with psql.
fn psql(sql: &str) {
    let out = std::process::Command::new("psql")
        .args([
            pg_url().as_str(),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}; run the tests with `cargo xtask test`, which starts PostgreSQL",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs one Redis command on the test Redis with redis-cli.
fn redis_cli(args: &[&str]) {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", &redis_url()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A standalone Tracery whose service `orders` runs `variant`, reading `shop`
/// (PostgreSQL) and `cache` (Redis) plus `extra` arguments.
fn start(variant: &str, extra: &[&str]) -> (Standalone, Served) {
    let served = Served::copy_of(variant);
    let shop = format!("shop={}", pg_url());
    let cache = format!("cache={}", redis_url());
    let mut args = vec!["--database", &shop, "--database", &cache];
    args.extend_from_slice(extra);
    let t = Standalone::start_with(&[("orders", served.copy.path())], None, &args);
    (t, served)
}

/// A private copy of a fixture, serving: service `orders` matches it and nothing that
/// other tests run at the same time.
struct Served {
    // Declared first so the process is killed before its binary is removed.
    _process: FixtureProcess,
    copy: PrivateCopy,
}

impl Served {
    fn copy_of(variant: &str) -> Self {
        let copy = PrivateCopy::of(variant, "tracery-dbcap");
        Self {
            _process: FixtureProcess::spawn_path(copy.path(), &["serve"]),
            copy,
        }
    }
}

/// Snapshot `id` as `snapshot view --output json` prints it.
fn view(t: &Standalone, id: &Value) -> Value {
    let out = t.ctl_ok(&["snapshot", "view", &id.to_string(), "--output", "json"]);
    serde_json::from_str(out.trim()).unwrap()
}

/// The fixtures' values at their `*_after_total` lines, as placeholders see them.
struct Case {
    variant: &'static str,
    marker: &'static str,
    /// An integer, a string and a struct field reached through a pointer.
    int: &'static str,
    string: &'static str,
    via_pointer: &'static str,
    /// The row those values select, and the string's Redis hash.
    row: Value,
    string_value: &'static str,
}

#[test]
fn captures_bind_ints_strings_and_fields_through_pointers_in_c_rust_and_go() {
    require_root();
    let cases = [
        Case {
            variant: "c-O0",
            marker: "c_after_total",
            int: "id",
            string: "customer",
            via_pointer: "by_ptr->ship.city",
            row: json!({"id": 42, "customer": "alice", "city": "Lisbon"}),
            string_value: "alice",
        },
        Case {
            variant: "rust-debug",
            marker: "rust_after_total",
            int: "order.id",
            string: "name",
            via_pointer: "order.customer",
            row: json!({"id": 42, "customer": "widget", "city": "bob"}),
            string_value: "widget",
        },
        Case {
            variant: "go-noopt",
            marker: "go_after_total",
            int: "o.ID",
            string: "name",
            via_pointer: "p.Customer",
            row: json!({"id": 42, "customer": "widget", "city": "bob"}),
            string_value: "widget",
        },
    ];
    let table = unique("cap_orders");
    psql(&format!(
        "CREATE TABLE {table} (id int, customer text, city text);
         INSERT INTO {table} VALUES (42, 'alice', 'Lisbon'), (42, 'widget', 'bob'),
           (42, 'alice', 'Porto'), (7, 'alice', 'Lisbon'), (42, 'widget', 'ann')"
    ));
    let keys = unique("cap");
    redis_cli(&[
        "HSET",
        &format!("{keys}:alice"),
        "orders",
        "3",
        "spent",
        "1250",
    ]);
    redis_cli(&["HSET", &format!("{keys}:widget"), "stock", "17"]);

    for case in &cases {
        let (mut t, _served) = start(case.variant, &[]);
        let pg = format!(
            "shop: SELECT id, customer, city FROM {table} WHERE id = {{{}}} AND customer = {{{}}} \
             AND city = {{{}}}",
            case.int, case.string, case.via_pointer
        );
        let redis = format!("cache: HGETALL {keys}:{{{}}}", case.string);
        let id = t.set(&[
            "--service",
            "orders",
            "--at",
            &at(case.marker),
            "--hits",
            "1",
            "--capture",
            &pg,
            "--capture",
            &redis,
        ]);
        let snap = &t.snapshots(&id, 1)[0];
        let s = view(&t, &snap["id"]);
        let dbs = s["databases"].as_array().unwrap_or_else(|| panic!("{s:#}"));
        assert_eq!(dbs.len(), 2, "{}: {s:#}", case.variant);

        let shop = &dbs[0];
        assert_eq!(shop["error"], Value::Null, "{}: {shop:#}", case.variant);
        assert_eq!(shop["database"], "shop");
        assert_eq!(shop["kind"], "postgres");
        assert_eq!(
            shop["rows"],
            json!([case.row]),
            "{}: {shop:#}",
            case.variant
        );
        assert_eq!(shop["truncated"], false);
        assert_eq!(shop["params"][case.int], json!(42), "{}", case.variant);
        assert_eq!(shop["params"][case.string], json!(case.string_value));
        assert!(
            shop["consistency"].is_object(),
            "{}: {shop:#}",
            case.variant
        );

        let cache = &dbs[1];
        assert_eq!(cache["error"], Value::Null, "{}: {cache:#}", case.variant);
        assert_eq!(cache["kind"], "redis");
        let expected = if case.string_value == "alice" {
            json!([{"field": "orders", "value": "3"}, {"field": "spent", "value": "1250"}])
        } else {
            json!([{"field": "stock", "value": "17"}])
        };
        assert_eq!(cache["rows"], expected, "{}: {cache:#}", case.variant);

        // People read the same rows as a table.
        let text = t.ctl_ok(&["snapshot", "view", &snap["id"].to_string()]);
        assert!(text.contains("databases:"), "{text}");
        assert!(text.contains("1 row"), "{text}");
        assert!(text.contains(case.row["city"].as_str().unwrap()), "{text}");
        // The rows are part of the stored snapshot: kept across restarts.
        t.restart();
        assert_eq!(view(&t, &snap["id"])["databases"], s["databases"]);
    }
    psql(&format!("DROP TABLE {table}"));
}

#[test]
fn two_hundred_hits_always_see_a_consistent_cut_of_postgres_and_redis() {
    require_root();
    const TOTAL: i64 = 1000;
    let table = unique("cap_accounts");
    let keys = unique("cap_acct");
    psql(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, balance bigint);
         INSERT INTO {table} VALUES (1, {TOTAL}), (2, 0)"
    ));
    let (a, b) = (format!("{keys}:a"), format!("{keys}:b"));
    redis_cli(&["MSET", &a, &TOTAL.to_string(), &b, "0"]);

    // A writer moving money between the two rows and the two keys, each move one
    // transaction, as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let moves = Arc::new(AtomicU32::new(0));
    let writer = {
        let (stop, moves, table, a, b) = (
            stop.clone(),
            moves.clone(),
            table.clone(),
            a.clone(),
            b.clone(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let pool = sqlx::PgPool::connect(&pg_url()).await.unwrap();
                let client = redis::Client::open(redis_url()).unwrap();
                let mut con = client.get_multiplexed_async_connection().await.unwrap();
                // The table name is this test's own, never input.
                let update = format!("UPDATE {table} SET balance = balance + $1 WHERE id = $2");
                let mut n: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let amount = n % 7 + 1;
                    let (from, to) = if n % 2 == 0 { (1, 2) } else { (2, 1) };
                    let mut tx = pool.begin().await.unwrap();
                    for (id, delta) in [(from, -amount), (to, amount)] {
                        sqlx::query(sqlx::AssertSqlSafe(update.clone()))
                            .bind(delta)
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                    }
                    tx.commit().await.unwrap();
                    let (rf, rt) = if from == 1 { (&a, &b) } else { (&b, &a) };
                    let _: () = redis::pipe()
                        .atomic()
                        .decr(rf, amount)
                        .ignore()
                        .incr(rt, amount)
                        .ignore()
                        .query_async(&mut con)
                        .await
                        .unwrap();
                    n += 1;
                    moves.store(n as u32, Ordering::Relaxed);
                }
            });
        })
    };
    while moves.load(Ordering::Relaxed) < 5 {
        std::thread::sleep(Duration::from_millis(5));
    }

    let (t, _served) = start("c-O0", &[]);
    let id = t.set(&[
        "--service",
        "orders",
        "--at",
        "level3",
        "--hits",
        "200",
        "--rate",
        "1000",
        "--capture",
        &format!("shop: SELECT id, balance FROM {table} WHERE id IN (1, 2) ORDER BY id"),
        "--capture",
        &format!("cache: MGET {a} {b}"),
    ]);
    let snaps = t.snapshots_within(&id, 200, Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(moves.load(Ordering::Relaxed) > 20, "the writer barely ran");

    let mut seen = std::collections::BTreeSet::new();
    for s in &snaps {
        let dbs = &s["databases"];
        assert_eq!(dbs[0]["error"], Value::Null, "{s:#}");
        assert_eq!(dbs[1]["error"], Value::Null, "{s:#}");
        let rows = dbs[0]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{s:#}");
        let pg: i64 = rows.iter().map(|r| r["balance"].as_i64().unwrap()).sum();
        assert_eq!(
            pg, TOTAL,
            "PostgreSQL cut of snapshot {}: {rows:?}",
            s["id"]
        );
        let values = dbs[1]["rows"].as_array().unwrap();
        let redis: i64 = values
            .iter()
            .map(|v| v.as_str().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(
            redis, TOTAL,
            "Redis cut of snapshot {}: {values:?}",
            s["id"]
        );
        seen.insert(rows[0]["balance"].as_i64().unwrap());
    }
    assert!(
        seen.len() > 1,
        "every hit saw the same balances: the writer did not overlap the hits"
    );
    psql(&format!("DROP TABLE {table}"));
}

#[test]
fn bad_captures_are_refused_when_the_breakpoint_is_set() {
    require_root();
    let (t, _served) = start("c-O0", &["--database", "docs=mongodb://127.0.0.1:1/shop"]);
    let refused = |capture: &str, says: &[&str]| {
        let out = t.ctl(&[
            "breakpoint",
            "set",
            "--service",
            "orders",
            "--at",
            &at("c_after_total"),
            "--capture",
            capture,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{capture}: accepted");
        for s in says {
            assert!(err.contains(s), "{capture}: {err}");
        }
    };
    refused(
        "nope: SELECT 1",
        &["unknown database `nope`", "cache, docs, shop"],
    );
    refused(
        "shop: DELETE FROM orders WHERE id = {id}",
        &["refused", "may only read"],
    );
    refused("shop: UPDATE orders SET paid = true", &["may only read"]);
    refused("shop: SELECT * FROM orders FOR UPDATE", &["may only read"]);
    refused("shop: SELEC id FROM orders", &["PostgreSQL syntax error"]);
    refused("shop: SELECT 1; SELECT 2", &["2 statements"]);
    refused(
        "cache: SET k {customer}",
        &["Redis command SET is not allowed"],
    );
    refused("cache: FLUSHALL", &["FLUSHALL is not allowed"]);
    refused(r#"docs: orders.aggregate([{"$out": "copy"}])"#, &["$out"]);
    refused("shop: SELECT 1 WHERE 1 = {", &["bad placeholder"]);
    // Checked where it arms: the variables in scope at that line.
    refused(
        "shop: SELECT * FROM orders WHERE customer = {cust.name}",
        &["{cust.name}", "no variable in scope", "customer", "by_ptr"],
    );
    let list = t.ctl_ok(&["breakpoint", "list", "--output", "json"]);
    assert_eq!(list.trim(), "", "a refused breakpoint is not kept: {list}");
}

#[test]
fn an_unreachable_database_or_a_slow_query_is_recorded_and_the_hit_kept() {
    require_root();
    let (t, _served) = start(
        "c-O0",
        &[
            "--database",
            "gone=postgres://root@127.0.0.1:1/shop",
            "--capture-timeout-ms",
            "500",
        ],
    );
    let id = t.set(&[
        "--service",
        "orders",
        "--at",
        "level3",
        "--hits",
        "1",
        "--capture",
        "gone: SELECT 1 WHERE 1 = {x}",
        "--capture",
        "shop: SELECT pg_sleep(10)",
        "--capture",
        "cache: GET nothing-here",
    ]);
    // From the armed breakpoint, not before arming (seconds on a busy machine): the hit
    // comes at once, and a hit held by the query would take most of its 10 s.
    let armed = std::time::Instant::now();
    let s = &t.snapshots(&id, 1)[0];
    assert!(
        armed.elapsed() < Duration::from_secs(5),
        "the slow query held the hit past its timeout: {:?} after arming",
        armed.elapsed()
    );
    let s = view(&t, &s["id"]);
    assert_eq!(s["variables"][0]["value"], json!(4), "{s:#}");
    let dbs = &s["databases"];
    let gone = dbs[0]["error"].as_str().unwrap_or_else(|| panic!("{s:#}"));
    assert!(gone.contains("gone") || gone.contains("connect"), "{gone}");
    assert_eq!(dbs[0]["rows"], json!([]));
    let slow = dbs[1]["error"].as_str().unwrap_or_else(|| panic!("{s:#}"));
    assert!(
        slow.contains("timeout") || slow.contains("timed out"),
        "{slow}"
    );
    // Other databases are read as usual: a missing key is no row.
    assert_eq!(dbs[2]["error"], Value::Null, "{s:#}");
    assert_eq!(dbs[2]["rows"], json!([]), "{s:#}");
}

#[test]
fn a_password_never_shows_in_list_status_logs_or_store() {
    require_root();
    const SECRET: &str = "hunter2-tracery";
    let url = format!("postgres://root:{SECRET}@127.0.0.1:1/shop");
    let (t, _served) = start("c-O0", &["--database", &format!("secret={url}")]);
    let id = t.set(&[
        "--service",
        "orders",
        "--at",
        "level3",
        "--hits",
        "1",
        "--capture",
        "secret: SELECT 1 WHERE 1 = {x}",
    ]);
    let s = &t.snapshots(&id, 1)[0];
    let view = t.ctl_ok(&["snapshot", "view", &s["id"].to_string(), "--output", "json"]);
    let status = t.ctl_ok(&["status"]);
    assert!(status.contains("secret"), "{status}");
    assert!(status.contains("***"), "{status}");
    let outputs = [
        view,
        t.ctl_ok(&["snapshot", "view", &s["id"].to_string()]),
        t.ctl_ok(&["breakpoint", "list"]),
        t.ctl_ok(&["breakpoint", "list", "--output", "json"]),
        status,
        t.ctl_ok(&["status", "--output", "json"]),
        std::fs::read_to_string(&t.log).unwrap(),
    ];
    for out in &outputs {
        assert!(!out.contains(SECRET), "the password shows: {out}");
    }
    // The store, byte for byte (SQLite file and its WAL).
    let db = t.store.trim_start_matches("sqlite://");
    for path in [db.to_owned(), format!("{db}-wal")] {
        if let Ok(bytes) = std::fs::read(&path) {
            let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
            assert!(!found, "the password is in {path}");
        }
    }
}
