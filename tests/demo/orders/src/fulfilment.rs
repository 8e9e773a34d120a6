//! Fulfilment jobs for the demo's worker, through Redis: the job's JSON, with its trace
//! context as an OpenTracing TEXT_MAP carrier (`uber-trace-id`), under `job:<order id>`,
//! and the order id pushed on the `jobs` list. The worker BRPOPs the id and GETs the JSON.

use crate::{pricing::NewOrder, trace::TraceParent};

/// The list the worker takes jobs from.
pub const JOBS: &str = "jobs";

/// The job JSON stored under `job:<order id>`. `parent` is this request's trace context:
/// the job becomes a child span of it.
///
/// Not inlined: the demo freezes a request here, after its job's Redis connection is
/// open and before the job is sent (`demo_orders::fulfilment::job_json`).
#[inline(never)]
pub fn job_json(order_id: i64, order: &NewOrder, parent: Option<&TraceParent>) -> String {
    let mut job = serde_json::json!({
        "order": order_id,
        "customer": order.customer,
        "item": order.item,
        "qty": order.qty,
    });
    if let Some(p) = parent {
        let child = p.child();
        // Jaeger's `{trace}:{span}:{parent span}:{flags}`.
        job["uber-trace-id"] = format!(
            "{}:{}:{}:{}",
            child.trace_id, child.span_id, p.span_id, child.flags
        )
        .into();
    }
    job.to_string()
}

/// Enqueues the job of a paid order. A connection of its own per job, apart from the
/// customer-totals one: while a trace is frozen, its job's bytes are held, and a held
/// message holds every later message of its socket.
pub async fn enqueue(
    client: &redis::Client,
    order_id: i64,
    order: &NewOrder,
    parent: Option<&TraceParent>,
) -> redis::RedisResult<()> {
    // No response timeout (redis-rs waits 500 ms by default): while the request is frozen
    // its job waits in the kernel's hold, and a client that gave up would close the
    // connection, losing the job at the resume. The request's other calls wait too.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    // SET and LPUSH in one write: the job's context goes out with its id.
    redis::pipe()
        .set(format!("job:{order_id}"), job_json(order_id, order, parent))
        .lpush(JOBS, order_id)
        .exec_async(&mut conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_carries_an_uber_trace_id_child_of_the_request() {
        let order = NewOrder {
            customer: "ana".into(),
            item: "lamp".into(),
            qty: 3,
            unit_cents: 1250,
            coupon: None,
        };
        let p =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let v: serde_json::Value = serde_json::from_str(&job_json(7, &order, Some(&p))).unwrap();
        let uber = v["uber-trace-id"].as_str().unwrap();
        let parts: Vec<&str> = uber.split(':').collect();
        assert_eq!(parts.len(), 4, "{uber}");
        assert_eq!(parts[0], p.trace_id);
        assert_ne!(parts[1], p.span_id);
        assert_eq!(parts[2], p.span_id);
        assert_eq!(v["order"], 7);
        let untraced: serde_json::Value = serde_json::from_str(&job_json(8, &order, None)).unwrap();
        assert!(untraced.get("uber-trace-id").is_none());
    }
}
