//! Pricing: plain synchronous code, a natural place for a breakpoint
//! (`demo-orders` is the demo's probe target: `pricing.rs:LINE` or
//! `tracery_demo_orders::pricing::process_order`).

use serde::Deserialize;

/// An order as the gateway sends it.
#[derive(Debug, Deserialize)]
pub struct NewOrder {
    pub customer: String,
    pub item: String,
    pub qty: i32,
    pub unit_cents: i64,
    #[serde(default)]
    pub coupon: Option<String>,
}

/// What an order costs.
#[derive(Debug)]
pub struct Priced {
    pub subtotal_cents: i64,
    pub discount_cents: i64,
    pub total_cents: i64,
}

/// Prices an order; rejects quantities that make no sense.
#[inline(never)]
pub fn process_order(order: &NewOrder) -> Result<Priced, String> {
    if order.qty <= 0 || order.unit_cents < 0 {
        return Err(format!(
            "bad quantity {} or price {}",
            order.qty, order.unit_cents
        ));
    }
    let subtotal_cents = i64::from(order.qty) * order.unit_cents;
    let discount_cents = match order.coupon.as_deref() {
        Some("TENOFF") => subtotal_cents / 10,
        _ => 0,
    };
    let total_cents = subtotal_cents - discount_cents;
    let priced = Priced {
        subtotal_cents,
        discount_cents,
        total_cents,
    };
    Ok(priced) // @probe:demo_priced
}
