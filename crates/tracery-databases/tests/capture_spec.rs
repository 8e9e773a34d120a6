//! Capture queries are checked when a breakpoint is set: each bad input, its message.
//! No server is needed.

use tracery_databases::{
    resolve_databases, CaptureError, CaptureSpec, ConfigError, DatabaseConfig, DatabaseEntry,
    DatabaseKind, DatabasesSection, Param,
};

fn known() -> Vec<DatabaseConfig> {
    vec![
        DatabaseConfig::new("shop", "postgres://demo:pw@127.0.0.1:5432/demo").unwrap(),
        DatabaseConfig::new("cache", "redis://127.0.0.1:6379/").unwrap(),
        DatabaseConfig::new("docs", "mongodb://127.0.0.1/shop").unwrap(),
    ]
}

fn error(text: &str) -> String {
    match CaptureSpec::parse(text, &known()) {
        Ok(spec) => panic!("accepted {text}: {spec:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_unknown_database_lists_the_known_ones() {
    assert_eq!(
        error("orders: SELECT 1"),
        "unknown database `orders` (known: cache, docs, shop); add it with \
         --database orders=URL or a [databases.orders] table"
    );
    assert_eq!(
        CaptureSpec::parse("x: SELECT 1", &[])
            .unwrap_err()
            .to_string(),
        "unknown database `x` (none are configured); add it with --database x=URL or a \
         [databases.x] table"
    );
    assert_eq!(
        error("SELECT 1"),
        "capture `SELECT 1` names no database; write NAME: QUERY, e.g. `shop: SELECT ...`"
    );
    assert_eq!(
        error("shop:  "),
        "the capture query is empty; write a query after `NAME:`"
    );
}

#[test]
fn postgres_statements_that_write_are_refused() {
    let cases = [
        (
            "shop: INSERT INTO orders VALUES (1)",
            "refused `INSERT INTO orders VALUES (1)`: it is a INSERT statement, not a query; \
             capture queries may only read",
        ),
        (
            "shop: UPDATE orders SET total = 0 WHERE id = {order.id}",
            "refused `UPDATE orders SET total = 0 WHERE id = {order.id}`: it is a UPDATE \
             statement, not a query; capture queries may only read",
        ),
        (
            "shop: DELETE FROM orders",
            "refused `DELETE FROM orders`: it is a DELETE statement, not a query; capture \
             queries may only read",
        ),
        (
            "shop: DROP TABLE orders",
            "refused `DROP TABLE orders`: it is a DROP TABLE statement, not a query; capture \
             queries may only read",
        ),
        (
            "shop: CREATE TABLE t (a int)",
            "refused `CREATE TABLE t (a int)`: it is a CREATE TABLE statement, not a query; \
             capture queries may only read",
        ),
        (
            "shop: WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone",
            "refused `WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone`: it \
             contains a DELETE statement (a data-modifying WITH); capture queries may only read",
        ),
        (
            "shop: SELECT * INTO copy FROM orders",
            "refused `SELECT * INTO copy FROM orders`: SELECT INTO creates a table; drop the \
             INTO clause; capture queries may only read",
        ),
        (
            "shop: SELECT * FROM orders WHERE id = {id} FOR UPDATE",
            "refused `SELECT * FROM orders WHERE id = {id} FOR UPDATE`: it takes row locks \
             (FOR UPDATE); drop the FOR UPDATE/SHARE clause; capture queries may only read",
        ),
        (
            "shop: SELECT * FROM (SELECT * FROM orders FOR SHARE) AS o",
            "refused `SELECT * FROM (SELECT * FROM orders FOR SHARE) AS o`: it takes row \
             locks (FOR SHARE); drop the FOR UPDATE/SHARE clause; capture queries may only read",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(error(text), message, "{text}");
    }
}

#[test]
fn postgres_syntax_and_shape_errors() {
    let syntax = error("shop: SELEC id FROM orders");
    assert!(
        syntax.starts_with("PostgreSQL syntax error in `SELEC id FROM orders`: "),
        "{syntax}"
    );
    let syntax = error("shop: SELECT id FROM WHERE");
    assert!(
        syntax.starts_with("PostgreSQL syntax error in "),
        "{syntax}"
    );
    assert_eq!(
        error("shop: SELECT 1; SELECT 2"),
        "`SELECT 1; SELECT 2` has 2 statements; a capture runs exactly one query"
    );
    assert_eq!(
        error("shop: SELECT 1; DELETE FROM orders"),
        "`SELECT 1; DELETE FROM orders` has 2 statements; a capture runs exactly one query"
    );
    assert_eq!(
        error("shop: SELECT * FROM orders WHERE id = $1"),
        "`SELECT * FROM orders WHERE id = $1` uses a $n parameter; write {variable} \
         placeholders instead"
    );
    assert_eq!(
        error("shop: SELECT * FROM orders WHERE id = {order id}"),
        "bad placeholder at `{order id}` in `SELECT * FROM orders WHERE id = {order id}`; \
         write {name}, {name.field}, {ptr->field} or {items[0]}"
    );
}

#[test]
fn redis_commands_come_from_a_read_only_allowlist() {
    let message = error("cache: SET cart:{user} 1");
    assert!(
        message.starts_with(
            "Redis command SET is not allowed: captures run read-only commands only (GET, MGET,"
        ),
        "{message}"
    );
    for write in [
        "DEL k",
        "FLUSHALL",
        "EVAL x 0",
        "SORT k STORE d",
        "GETDEL k",
        "MULTI",
    ] {
        let text = format!("cache: {write}");
        assert!(error(&text).contains("is not allowed"), "{text}");
    }
    assert_eq!(
        error("cache: GET \"unclosed"),
        "unclosed quote in `GET \"unclosed`"
    );
    for read in [
        "GET k",
        "mget a b",
        "HGET h f",
        "HMGET h a b",
        "HGETALL h",
        "HKEYS h",
        "HLEN h",
        "LRANGE l 0 -1",
        "LLEN l",
        "LINDEX l 0",
        "SMEMBERS s",
        "SISMEMBER s m",
        "SCARD s",
        "ZRANGE z 0 -1",
        "ZRANGEBYSCORE z 0 10",
        "ZSCORE z m",
        "ZCARD z",
        "XRANGE x - +",
        "XREVRANGE x + -",
        "XLEN x",
        "EXISTS a",
        "TTL a",
        "PTTL a",
        "TYPE a",
        "STRLEN a",
        "GETRANGE a 0 3",
    ] {
        CaptureSpec::parse(&format!("cache: {read}"), &known())
            .unwrap_or_else(|e| panic!("{read}: {e}"));
    }
}

#[test]
fn mongodb_queries_are_find_or_aggregate_without_out_or_merge() {
    assert_eq!(
        error(r#"docs: orders.deleteMany({"a": 1})"#),
        "MongoDB method `deleteMany` is not allowed; captures run find or aggregate only"
    );
    assert_eq!(
        error(r#"docs: orders.aggregate([{"$match": {}}, {"$out": "copy"}])"#),
        r#"refused `orders.aggregate([{"$match": {}}, {"$out": "copy"}])`: its pipeline has a $out stage, which writes; capture queries may only read"#
    );
    assert!(
        error(r#"docs: orders.aggregate([{"$facet": {"a": [{"$merge": {"into": "x"}}]}}])"#)
            .contains("$merge stage")
    );
    assert_eq!(
        error("docs: orders.find({customer: 1})"),
        "bad MongoDB query `orders.find({customer: 1})`: the arguments are not JSON (key must \
         be a string at line 1 column 3); quote keys with \""
    );
    assert_eq!(
        error("docs: orders"),
        "bad MongoDB query `orders`: write collection.find({...}) or collection.aggregate([...])"
    );
    assert_eq!(
        error(r#"docs: orders.find({}, {}, {})"#),
        "bad MongoDB query `orders.find({}, {}, {})`: find takes a filter document and an \
         optional projection document"
    );
    let spec = CaptureSpec::parse(
        r#"docs: orders.find({"customer": {order.customer}, "items.0": {items[0]}})"#,
        &known(),
    )
    .unwrap();
    assert_eq!(spec.kind(), DatabaseKind::Mongodb);
    assert_eq!(spec.placeholders(), ["order.customer", "items[0]"]);
}

#[test]
fn placeholders_are_listed_and_checked_against_the_scope() {
    let spec = CaptureSpec::parse(
        "shop: SELECT * FROM orders WHERE customer = {order.customer} AND id = {req->user.id} \
         AND n = {items[0]} AND c = {order.customer}",
        &known(),
    )
    .unwrap();
    assert_eq!(spec.database(), "shop");
    assert_eq!(spec.kind(), DatabaseKind::Postgres);
    assert_eq!(
        spec.placeholders(),
        ["order.customer", "req->user.id", "items[0]"]
    );
    spec.check_in_scope(&["order", "req", "items", "other"])
        .unwrap();
    assert_eq!(
        spec.check_in_scope(&["total", "order", "items"])
            .unwrap_err()
            .to_string(),
        "placeholder {req->user.id} names no variable in scope here; in scope: items, order, total"
    );
    assert_eq!(
        spec.check_in_scope::<&str>(&[]).unwrap_err(),
        CaptureError::NotInScope {
            placeholder: "order.customer".into(),
            in_scope: "none".into()
        }
    );
    let bound = spec.bind(|path| (path == "order.customer").then(|| Param::from("alice")));
    assert_eq!(bound.values().unwrap_err(), ["req->user.id", "items[0]"]);
}

#[test]
fn database_urls_and_their_kinds() {
    for (url, kind) in [
        ("postgres://h/db", DatabaseKind::Postgres),
        ("postgresql://h/db", DatabaseKind::Postgres),
        (
            "postgres://root@localhost/t?host=/var/run/postgresql",
            DatabaseKind::Postgres,
        ),
        ("redis://127.0.0.1:6379/0", DatabaseKind::Redis),
        (
            "mongodb://a:1,b:2/shop?replicaSet=rs",
            DatabaseKind::Mongodb,
        ),
        (
            "mongodb+srv://cluster.example.net/shop",
            DatabaseKind::Mongodb,
        ),
    ] {
        assert_eq!(DatabaseConfig::new("x", url).unwrap().kind(), kind, "{url}");
    }
    let flag: DatabaseConfig = "shop=postgres://demo:s3cr%40t@10.0.0.1:5432/demo"
        .parse()
        .unwrap();
    assert_eq!(flag.name, "shop");
    assert_eq!(
        flag.url.redacted(),
        "postgres://demo:***@10.0.0.1:5432/demo"
    );
    assert_eq!(
        flag.to_string(),
        "shop=postgres://demo:***@10.0.0.1:5432/demo"
    );
    let debug = format!("{flag:?}");
    assert!(!debug.contains("s3cr"), "{debug}");
    assert_eq!(
        flag.url.scrub("auth failed for s3cr@t and s3cr%40t"),
        "auth failed for *** and ***"
    );
    let query_password =
        DatabaseConfig::new("q", "postgres://h/db?user=u&password=hunter22").unwrap();
    assert_eq!(
        query_password.url.redacted(),
        "postgres://h/db?user=u&password=***"
    );
    assert!(!format!("{query_password:?} {query_password}").contains("hunter22"));

    let err = |r: Result<DatabaseConfig, ConfigError>| {
        let e = r.unwrap_err();
        let mut text = e.to_string();
        if let Some(source) = std::error::Error::source(&e) {
            text.push_str(": ");
            text.push_str(&source.to_string());
        }
        text
    };
    assert_eq!(
        err(DatabaseConfig::parse_flag("mysql://u:topsecret@h/db")),
        "`--database mysql://u:***@h/db` has no name; write --database NAME=URL, e.g. \
         shop=postgres://host/db"
    );
    assert_eq!(
        err(DatabaseConfig::parse_flag("shop=mysql://u:topsecret@h/db")),
        "database `shop`: bad URL: unknown database scheme `mysql://`; use postgres://, \
         postgresql://, redis://, mongodb:// or mongodb+srv://"
    );
    assert_eq!(
        err(DatabaseConfig::parse_flag("shop=localhost:5432")),
        "database `shop`: bad URL: `localhost:5432` has no scheme; write postgres://, \
         redis:// or mongodb://"
    );
    assert_eq!(
        err(DatabaseConfig::parse_flag(
            "shop=postgres://u:topsecret@/db"
        )),
        "database `shop`: bad URL: `postgres://u:***@/db` names no host; write \
         scheme://[user[:password]@]host[:port]/..."
    );
    assert_eq!(
        err(DatabaseConfig::parse_flag("sh op=redis://h")),
        "database name `sh op` must be non-empty letters, digits, `_` or `-`"
    );
}

#[test]
fn databases_from_a_toml_section_and_flags() {
    #[derive(serde::Deserialize)]
    struct File {
        databases: DatabasesSection,
    }
    let file: File = toml::from_str(
        r#"
        [databases.shop]
        url = "postgres://demo:pw1234@127.0.0.1:5432/demo"
        [databases.cache]
        url_env = "TRACERY_TEST_DBCAP_CACHE_URL"
        "#,
    )
    .unwrap();
    let shop = file.databases["shop"].resolve("shop").unwrap();
    assert_eq!(
        shop.url.redacted(),
        "postgres://demo:***@127.0.0.1:5432/demo"
    );
    assert!(!format!("{:?}", file.databases["shop"]).contains("pw1234"));
    let cache = file.databases["cache"]
        .resolve_with("cache", |var| {
            (var == "TRACERY_TEST_DBCAP_CACHE_URL").then(|| "redis://127.0.0.1/".to_owned())
        })
        .unwrap();
    assert_eq!(cache.kind(), DatabaseKind::Redis);
    assert_eq!(
        file.databases["cache"]
            .resolve_with("cache", |_| None)
            .unwrap_err()
            .to_string(),
        "database `cache`: environment variable TRACERY_TEST_DBCAP_CACHE_URL (its url_env) \
         is not set; export it or write url = \"...\""
    );
    assert_eq!(
        DatabaseEntry::default()
            .resolve("x")
            .unwrap_err()
            .to_string(),
        "[databases.x] has no url; add url = \"...\" or url_env = \"VAR\""
    );
    let both = DatabaseEntry {
        url: Some("redis://h".into()),
        url_env: Some("V".into()),
    };
    assert_eq!(
        both.resolve("x").unwrap_err().to_string(),
        "[databases.x] has both url and url_env; keep one"
    );
    let bad: Result<File, _> = toml::from_str("[databases.x]\nurl = \"redis://h\"\nuser = \"u\"\n");
    assert!(bad.is_err());

    // A flag replaces the table of the same name.
    let mut section = DatabasesSection::new();
    section.insert("shop".into(), file.databases["shop"].clone());
    let all = resolve_databases(
        &section,
        &["shop=redis://h/".into(), "more=redis://m/".into()],
    )
    .unwrap();
    let names: Vec<(&str, DatabaseKind)> =
        all.iter().map(|d| (d.name.as_str(), d.kind())).collect();
    assert_eq!(
        names,
        [("more", DatabaseKind::Redis), ("shop", DatabaseKind::Redis)]
    );
}
