//! Expiry: every second, breakpoints past their expiry are disarmed on agents. They stay in
//! the store (their snapshots still name them) but are no longer listed or armed. Trace
//! holds past their deadline are resumed on every agent at the same pace.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::registry::{error_chain, Registry};

const PERIOD: Duration = Duration::from_secs(1);

pub(crate) async fn run(registry: Arc<Registry>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Expires traces as a side effect, resuming holds past their deadline.
        drop(registry.traces());
        let records = match registry.store.list_breakpoints(false).await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "cannot check breakpoint expiry; retrying");
                continue;
            }
        };
        let now = SystemTime::now();
        for record in records.iter().filter(|r| r.expires_at <= now) {
            let id = u64::try_from(record.id.0).unwrap_or_default();
            if registry.mark_expired(id) {
                tracing::info!(breakpoint = id, "breakpoint expired; disarming");
                registry.disarm(id);
            }
        }
    }
}
