//! Redaction on the node, end to end: a real C process holding a password, a token and a
//! nested card number, a breakpoint there through a standalone Tracery with captures from
//! the real PostgreSQL and Redis that `cargo xtask test` starts. No secret may show in
//! the CLI's output, the logs, the SQLite store's files (bytes, and the base64 snapshot
//! bodies inside them) or the PostgreSQL store's tables.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use common::{standalone::PgSchema, standalone::Standalone, *};
use serde_json::{json, Value};
use tracery_tests::{require_root, FixtureProcess, PrivateCopy};

/// What the fixture and the test's rows hold; every one must stay on the node.
const SECRETS: &[&str] = &[
    "hunter2-S3CRET",
    "tok-9f8e7d",
    "4111111111111111",
    "pbkdf2-Z9Q8-HASH",
    "rk-77aa55",
];

fn pg_url() -> String {
    std::env::var("TRACERY_TEST_PG_URL").unwrap_or_else(|_| {
        "postgres://root@localhost/tracery_test?host=/var/run/postgresql".into()
    })
}

fn redis_url() -> String {
    std::env::var("TRACERY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `args` and returns stdout; panics with stderr when it fails.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}; run the tests with `cargo xtask test`",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn psql(url: &str, sql: &str) -> String {
    run(
        "psql",
        &[
            url,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
    )
}

/// `bytes` and every base64 run inside them, decoded: the store keeps snapshot bodies as
/// base64 protobuf, where a plain search would find nothing.
fn searchable(bytes: &[u8]) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let runs = bytes
        .split(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
        .filter(|r| r.len() >= 16)
        .filter_map(|r| b64.decode(&r[..r.len() / 4 * 4]).ok());
    std::iter::once(bytes.to_vec()).chain(runs).collect()
}

fn contains(text: &[u8], s: &str) -> bool {
    s.is_empty() || text.windows(s.len()).any(|w| w == s.as_bytes())
}

/// Fails when any of `secrets` is in `bytes` or a base64 body inside them; returns true
/// when `visible` (a value that is not secret) is there, proving the search saw the data.
fn assert_clean(what: &str, bytes: &[u8], secrets: &[&str], visible: &str) -> bool {
    let texts = searchable(bytes);
    for text in &texts {
        for s in secrets {
            assert!(!contains(text, s), "secret {s:?} is in {what}");
        }
    }
    texts.iter().any(|t| contains(t, visible))
}

/// One standalone run against `store` (None: SQLite in its own directory); returns it with
/// the snapshot as `snapshot view --output json` printed it.
fn hit_with_secrets(store: Option<String>, table: &str, keys: &str) -> (Standalone, Value) {
    let copy = PrivateCopy::of("c-O0", "tracery-redact");
    let _process = FixtureProcess::spawn_path(copy.path(), &["serve"]);
    let shop = format!("shop={}", pg_url());
    let cache = format!("cache={}", redis_url());
    let t = Standalone::start_with(
        &[("orders", copy.path())],
        store,
        &["--database", &shop, "--database", &cache],
    );
    let id = t.set(&[
        "--service",
        "orders",
        "--at",
        &at("c_login"),
        "--hits",
        "1",
        "--capture",
        &format!(
            "shop: SELECT name, password_hash, plan FROM {table} WHERE name = {{login->user}}"
        ),
        "--capture",
        &format!("shop: SELECT name FROM {table} WHERE password_hash = {{password}}"),
        "--capture",
        &format!("cache: HGETALL {keys}:{{login->user}}"),
    ]);
    let snap = &t.snapshots(&id, 1)[0];
    let view = t.ctl_ok(&[
        "snapshot",
        "view",
        &snap["id"].to_string(),
        "--output",
        "json",
    ]);
    let s: Value = serde_json::from_str(view.trim()).unwrap();
    let text = t.ctl_ok(&["snapshot", "view", &snap["id"].to_string()]);
    // Every other way the CLI shows the snapshot; the views show the user's name.
    for (what, out, visible) in [
        ("snapshot view", view.as_str(), "ann"),
        ("snapshot view (text)", text.as_str(), "ann"),
        (
            "snapshot list",
            &t.ctl_ok(&["snapshot", "list", "--output", "json"]),
            "",
        ),
        (
            "breakpoint list",
            &t.ctl_ok(&["breakpoint", "list", "--output", "json"]),
            "",
        ),
    ] {
        assert!(
            assert_clean(what, out.as_bytes(), SECRETS, visible),
            "{what}: {out}"
        );
    }
    assert!(text.contains("<redacted: password>"), "{text}");
    assert!(text.contains("<redacted: card_number>"), "{text}");
    drop(_process);
    (t, s)
}

fn var<'a>(s: &'a Value, name: &str) -> &'a Value {
    &s["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no variable {name}: {s:#}"))["value"]
}

fn check_snapshot(s: &Value) {
    let red = |rule: &str| json!({ "redacted": rule });
    assert_eq!(var(s, "password"), &red("password"), "{s:#}");
    assert_eq!(var(s, "token"), &red("token"), "{s:#}");
    let login = &var(s, "login")["target"];
    assert_eq!(login["user"], "ann", "{s:#}");
    assert_eq!(login["password"], red("password"), "{s:#}");
    assert_eq!(login["token"], red("token"), "{s:#}");
    let card = &login["payment"]["card"];
    assert_eq!(card["card_number"], red("card_number"), "{s:#}");
    assert_eq!(card["cvv"], red("cvv"), "{s:#}");
    assert_eq!(card["holder"], "ANN LEE", "{s:#}");
    assert_eq!(login["payment"]["amount"], 1250, "{s:#}");

    let dbs = &s["databases"];
    assert_eq!(dbs[0]["error"], Value::Null, "{s:#}");
    assert_eq!(
        dbs[0]["rows"],
        json!([{"name": "ann", "password_hash": red("password"), "plan": "gold"}]),
        "{s:#}"
    );
    // A redacted value is never bound: the query says why and reads nothing.
    let refused = dbs[1]["error"].as_str().unwrap_or_else(|| panic!("{s:#}"));
    assert!(refused.contains("redacted on the node"), "{refused}");
    assert_eq!(dbs[1]["rows"], json!([]), "{s:#}");
    assert_eq!(dbs[1]["params"]["password"], Value::Null, "{s:#}");
    assert_eq!(
        dbs[2]["rows"],
        json!([{"field": "api_token", "value": red("token")}, {"field": "plan", "value": "gold"}]),
        "{s:#}"
    );
}

#[test]
fn no_secret_leaves_the_node_in_snapshots_rows_logs_or_either_store() {
    require_root();
    let table = unique("redact_users");
    let keys = unique("redact");
    let pg = pg_url();
    psql(
        &pg,
        &format!(
            "CREATE TABLE {table} (name text, password_hash text, plan text);
             INSERT INTO {table} VALUES ('ann', 'pbkdf2-Z9Q8-HASH', 'gold')"
        ),
    );
    run(
        "redis-cli",
        &[
            "-u",
            &redis_url(),
            "HSET",
            &format!("{keys}:ann"),
            "api_token",
            "rk-77aa55",
            "plan",
            "gold",
        ],
    );

    // SQLite: the database file and its WAL, byte for byte.
    let dir = std::env::temp_dir().join(unique("tracery-redact-store"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("tracery.db");
    let (mut t, s) = hit_with_secrets(Some(format!("sqlite://{}", db.display())), &table, &keys);
    check_snapshot(&s);
    assert_clean(
        "the agent's log",
        &std::fs::read(&t.log).unwrap(),
        SECRETS,
        "",
    );
    t.stop();
    let mut seen = false;
    for path in [db.clone(), dir.join("tracery.db-wal")] {
        if let Ok(bytes) = std::fs::read(&path) {
            let what = format!("the SQLite store {}", path.display());
            seen |= assert_clean(&what, &bytes, SECRETS, "ANN LEE");
        }
    }
    assert!(
        seen,
        "no snapshot body in the SQLite store in {}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);

    // PostgreSQL: every table of the store's schema, as text.
    let schema = PgSchema::create();
    let (mut t, s) = hit_with_secrets(Some(schema.url()), &table, &keys);
    check_snapshot(&s);
    t.stop();
    let tables = psql(
        schema.base(),
        &format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '{}'",
            schema.name()
        ),
    );
    let mut dumped = String::new();
    for name in tables.lines().filter(|l| !l.is_empty()) {
        dumped += &psql(
            schema.base(),
            &format!("SELECT t::text FROM \"{}\".\"{name}\" t", schema.name()),
        );
    }
    let seen = assert_clean(
        "the PostgreSQL store",
        dumped.as_bytes(),
        SECRETS,
        "ANN LEE",
    );
    assert!(seen, "no snapshot body in the PostgreSQL store: {dumped}");

    psql(&pg, &format!("DROP TABLE {table}"));
    run(
        "redis-cli",
        &["-u", &redis_url(), "DEL", &format!("{keys}:ann")],
    );
}

/// Polls `trace list --output json` until trace `id` holds a message to HTTP.
fn wait_held_http(t: &Standalone, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = t.ctl_ok(&["trace", "list", "--output", "json"]);
        let held = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["trace_id"] == id)
            .and_then(|v| {
                v["messages"]
                    .as_array()?
                    .iter()
                    .find(|m| m["decoded"]["protocol"] == "http")
                    .cloned()
            });
        if let Some(m) = held {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "trace {id} held no HTTP message; trace list: {out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The demo's orders service frozen right before its payments call, whose
/// `Authorization: Bearer` header carries the demo's payments token: the held request's
/// preview, the snapshot, the CLI and the store show the header only as redacted.
#[test]
fn a_held_request_s_bearer_token_stays_on_the_node() {
    use tracery_tests::{
        demo::DemoServices,
        held::{checkout, fresh_trace, orders_bin, TestCgroup, PG_TCP},
    };
    const TOKEN: &str = "pay-tok-5e6f7a8b";
    require_root();
    let t = Standalone::start(&[], None);
    let services = DemoServices::start(&orders_bin(), PG_TCP);
    let cg = TestCgroup::new("redact");
    cg.adopt(services.orders.process.pid());
    let trace = fresh_trace(0x5a);
    let id = t.set(&[
        "--pid",
        &services.orders.process.pid().to_string(),
        "--at",
        &at("demo_pay_auth"),
        "--trace-id",
        &trace,
        "--freeze",
        "--freeze-timeout",
        "60s",
    ]);
    let gateway = services.gateway.addr.clone();
    let (status, body, _) = checkout(&gateway, &fresh_trace(0x5b), "00f067aa0ba902b7");
    assert_eq!(status, 200, "{body}");
    let (g, tr) = (gateway.clone(), trace.clone());
    let request = std::thread::spawn(move || checkout(&g, &tr, "00f067aa0ba902b7"));

    let held = wait_held_http(&t, &trace);
    let decoded = &held["decoded"];
    assert_eq!(decoded["path"], "/pay", "{held:#}");
    let auth = decoded["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| {
            h[0].as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("authorization"))
        })
        .unwrap_or_else(|| panic!("no Authorization header: {held:#}"));
    assert_eq!(auth[1], "<redacted: authorization>", "{held:#}");
    let snap = &t.snapshots(&id, 1)[0];
    let s = t.ctl_ok(&[
        "snapshot",
        "view",
        &snap["id"].to_string(),
        "--output",
        "json",
    ]);
    let s: Value = serde_json::from_str(s.trim()).unwrap();
    assert_eq!(var(&s, "token"), &json!({"redacted": "token"}), "{s:#}");

    let outputs = [
        t.ctl_ok(&["trace", "list", "--output", "json"]),
        t.ctl_ok(&["trace", "view", &trace]),
        t.ctl_ok(&["trace", "view", &trace, "--output", "json"]),
        t.ctl_ok(&["snapshot", "view", &snap["id"].to_string()]),
        s.to_string(),
    ];
    for out in &outputs {
        assert!(!out.contains(TOKEN), "the payments token shows: {out}");
    }
    t.ctl_ok(&["trace", "resume", &trace]);
    let (status, body, _) = request.join().unwrap();
    assert_eq!(
        status, 200,
        "the held call still carries its real header: {body}"
    );
    let secrets = &[TOKEN];
    assert_clean(
        "the agent's log",
        &std::fs::read(&t.log).unwrap(),
        secrets,
        "",
    );
    if let Some(db) = t.store.strip_prefix("sqlite://") {
        let mut seen = false;
        for path in [db.to_owned(), format!("{db}-wal")] {
            if let Ok(bytes) = std::fs::read(&path) {
                seen |= assert_clean(&path, &bytes, secrets, "payments_authorization");
            }
        }
        assert!(seen, "the snapshot body was not found in {db}");
    }
}
