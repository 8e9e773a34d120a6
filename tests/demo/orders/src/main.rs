//! `demo-orders`: the Rust service of the demo. `POST /orders` prices an order, stores it
//! in PostgreSQL as pending, charges it through the payments service and marks it paid;
//! with `--redis`, it then adds the order to the customer's running totals in a Redis hash
//! (`customer:NAME`: `orders`, `spent_cents`, `last_order`) and enqueues a fulfilment job
//! for the worker (`job:<id>` with the job's trace context, `LPUSH jobs <id>`: see
//! `fulfilment`).
//! W3C `traceparent` is read from each request, logged, stored with the order and passed
//! on (as a child span) to payments, so one trace spans every service.
//!
//! Usage: demo-orders --listen ADDR --database URL --payments URL [--redis URL]

mod db;
mod fulfilment;
mod pricing;
mod trace;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{ToSql, Type};

use crate::{db::Db, pricing::NewOrder, trace::TraceParent};

struct App {
    db: Db,
    /// Customer totals; `None` without `--redis`.
    redis: Option<redis::aio::MultiplexedConnection>,
    /// Fulfilment jobs, a connection each; `None` without `--redis`.
    jobs: Option<redis::Client>,
    payments: String,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct OrderView {
    id: i64,
    customer: String,
    item: String,
    qty: i32,
    subtotal_cents: i64,
    discount_cents: i64,
    total_cents: i64,
    status: String,
    trace_id: Option<String>,
}

#[derive(Deserialize)]
struct PaymentReply {
    ok: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let config: tokio_postgres::Config = args
        .database
        .parse()
        .with_context(|| format!("bad --database URL {}", args.database))?;
    let db = Db::new(config, 4);
    create_schema(&db).await.with_context(|| {
        format!(
            "cannot create the orders table in PostgreSQL at {}",
            args.database
        )
    })?;
    let (redis, jobs) = match &args.redis {
        Some(url) => {
            let client = redis::Client::open(url.as_str())
                .with_context(|| format!("bad --redis URL {url}"))?;
            let totals = client
                .get_multiplexed_async_connection()
                .await
                .with_context(|| format!("cannot connect to Redis at {url}"))?;
            (Some(totals), Some(client))
        }
        None => (None, None),
    };
    let app = Arc::new(App {
        db,
        redis,
        jobs,
        payments: args.payments,
        http: reqwest::Client::new(),
    });
    let router = Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("ready {}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Creates the table if needed. Replicas starting together would race in
/// `CREATE TABLE IF NOT EXISTS` (PostgreSQL's catalog rejects the second one), so schema
/// creation is serialized by a transaction-scoped advisory lock.
async fn create_schema(db: &Db) -> anyhow::Result<()> {
    // Several instances may start at once: one creates the table, the others wait (the
    // advisory lock is the transaction's, so one batch does it all).
    let mut conn = db.get().await?;
    conn.run(|c| {
        c.batch_execute(
            "BEGIN;
         SELECT pg_advisory_xact_lock(32776859903423097);
         CREATE TABLE IF NOT EXISTS orders (
            id BIGSERIAL PRIMARY KEY,
            customer TEXT NOT NULL,
            item TEXT NOT NULL,
            qty INT NOT NULL,
            subtotal_cents BIGINT NOT NULL,
            discount_cents BIGINT NOT NULL,
            total_cents BIGINT NOT NULL,
            status TEXT NOT NULL,
            trace_id TEXT
        );
         COMMIT;",
        )
    })
    .await?;
    Ok(())
}

/// The credential orders presents to payments: a stand-in for a real secret, which the
/// redaction tests check never leaves the node (in a snapshot or a held request).
const PAYMENTS_TOKEN: &str = "pay-tok-5e6f7a8b";

/// The `Authorization` header of the payments call. Not inlined: its line is where tests
/// stop a request after its INSERT, just before the payments call goes out.
#[inline(never)]
fn payments_authorization(token: &str, order_id: i64) -> String {
    // Named so: at the probe this local is not yet set, and its stack slot may still hold
    // an earlier call's header, which redaction must hide like the token.
    let authorization = format!("Bearer {token}"); // @probe:demo_pay_auth
    std::hint::black_box(order_id);
    authorization
}

async fn place_order(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(order): Json<NewOrder>,
) -> Result<Json<OrderView>, (StatusCode, String)> {
    let parent = TraceParent::from_headers(&headers);
    access_log("POST", "/orders", parent.as_ref());
    let priced = pricing::process_order(&order).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let trace_id = parent.as_ref().map(|p| p.trace_id.clone());
    let values: [(&(dyn ToSql + Sync), Type); 7] = [
        (&order.customer, Type::TEXT),
        (&order.item, Type::TEXT),
        (&order.qty, Type::INT4),
        (&priced.subtotal_cents, Type::INT8),
        (&priced.discount_cents, Type::INT8),
        (&priced.total_cents, Type::INT8),
        (&trace_id, Type::TEXT),
    ];
    let mut db = app.db.get().await.map_err(internal)?;
    // `query_typed` sends Parse, Bind and Execute in one write (no prepare round trip).
    let rows = db
        .run(|c| {
            c.query_typed(
                "INSERT INTO orders
                   (customer, item, qty, subtotal_cents, discount_cents, total_cents, status, trace_id)
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) RETURNING id",
                &values,
            )
        })
        .await
        .map_err(internal)?;
    // Back to the pool before the payments call, which may take long.
    drop(db);
    let id: i64 = rows
        .first()
        .ok_or_else(|| internal("INSERT ... RETURNING id returned no row"))?
        .get(0);

    let mut req = app
        .http
        .post(format!("{}/pay", app.payments))
        .header("authorization", payments_authorization(PAYMENTS_TOKEN, id))
        .json(&serde_json::json!({ "order_id": id, "amount_cents": priced.total_cents }));
    if let Some(p) = &parent {
        req = req.header("traceparent", p.child().to_string());
    }
    let paid = match req.send().await {
        Ok(r) if r.status().is_success() => r.json::<PaymentReply>().await.is_ok_and(|p| p.ok),
        _ => false,
    };
    let status = if paid { "paid" } else { "payment_failed" };
    let update: [&(dyn ToSql + Sync); 2] = [&status, &id];
    app.db
        .get()
        .await
        .map_err(internal)?
        .run(|c| c.execute("UPDATE orders SET status = $1 WHERE id = $2", &update))
        .await
        .map_err(internal)?;
    if paid {
        add_to_customer_totals(&app, &order.customer, id, priced.total_cents)
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if let Some(jobs) = &app.jobs {
            fulfilment::enqueue(jobs, id, &order, parent.as_ref())
                .await
                .map_err(|e| {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot enqueue the fulfilment job of order {id}: {e}"),
                    )
                })?;
        }
    }
    Ok(Json(OrderView {
        id,
        customer: order.customer,
        item: order.item,
        qty: order.qty,
        subtotal_cents: priced.subtotal_cents,
        discount_cents: priced.discount_cents,
        total_cents: priced.total_cents,
        status: status.into(),
        trace_id,
    }))
}

async fn get_order(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<OrderView>, (StatusCode, String)> {
    access_log(
        "GET",
        &format!("/orders/{id}"),
        TraceParent::from_headers(&headers).as_ref(),
    );
    let key: [&(dyn ToSql + Sync); 1] = [&id];
    let mut db = app.db.get().await.map_err(internal)?;
    let row = db
        .run(|c| {
            c.query_opt(
                "SELECT id, customer, item, qty, subtotal_cents, discount_cents, total_cents,
                        status, trace_id
                 FROM orders WHERE id = $1",
                &key,
            )
        })
        .await
        .map_err(internal)?
        .ok_or((StatusCode::NOT_FOUND, format!("no order {id}")))?;
    Ok(Json(OrderView {
        id: row.get(0),
        customer: row.get(1),
        item: row.get(2),
        qty: row.get(3),
        subtotal_cents: row.get(4),
        discount_cents: row.get(5),
        total_cents: row.get(6),
        status: row.get(7),
        trace_id: row.get(8),
    }))
}

/// Adds a paid order to `customer:NAME` in one MULTI/EXEC, so a reader never sees the
/// count without the amount.
async fn add_to_customer_totals(
    app: &App,
    customer: &str,
    order_id: i64,
    total_cents: i64,
) -> redis::RedisResult<()> {
    let Some(redis) = &app.redis else {
        return Ok(());
    };
    let key = format!("customer:{customer}");
    redis::pipe()
        .atomic()
        .hincr(&key, "orders", 1)
        .hincr(&key, "spent_cents", total_cents)
        .hset(&key, "last_order", order_id)
        .exec_async(&mut redis.clone())
        .await
}

fn internal(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// One line per request, with the trace it belongs to: tests read these.
fn access_log(method: &str, path: &str, parent: Option<&TraceParent>) {
    let trace = parent.map_or("-".to_string(), |p| p.to_string());
    println!("access {method} {path} traceparent={trace}");
}

struct Args {
    listen: SocketAddr,
    database: String,
    payments: String,
    redis: Option<String>,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut listen = None;
        let mut database = None;
        let mut payments = None;
        let mut redis = None;
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--listen" => listen = Some(value.parse().context("--listen takes HOST:PORT")?),
                "--database" => database = Some(value),
                "--payments" => payments = Some(value.trim_end_matches('/').to_string()),
                "--redis" => redis = Some(value),
                _ => anyhow::bail!("unknown flag {flag}; usage: demo-orders --listen ADDR --database URL --payments URL [--redis URL]"),
            }
        }
        Ok(Self {
            listen: listen.context("--listen is required")?,
            database: database.context("--database is required")?,
            payments: payments.context("--payments is required")?,
            redis,
        })
    }
}
