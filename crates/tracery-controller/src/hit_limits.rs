//! Hit limits across nodes. Each agent stops at a breakpoint's limit on its own, but only
//! the controller sees every node's hits: when the stored hits of a breakpoint reach its
//! limit, it is disarmed on every agent, and no agent that connects later (or after a
//! restart of the controller) arms it again. Otherwise `--hits 1` on three nodes could
//! store three snapshots, and a spent breakpoint would keep costing the other nodes its
//! probes and tracking hooks until it expired.

use std::collections::HashMap;

use tokio::sync::Mutex;
use tracery_store::{BreakpointId, BreakpointRecord, StoreError};

use crate::registry::Registry;
use crate::spec::StoredSpec;

/// Stored hits per breakpoint, as far as this controller has counted them.
#[derive(Default)]
pub(crate) struct HitCounts {
    /// An async lock: a count is first read from the store while it is held, so a hit
    /// stored meanwhile is counted once.
    counts: Mutex<HashMap<i64, Count>>,
}

#[derive(Clone, Copy)]
struct Count {
    stored: u64,
    limit: u64,
    /// Disarmed everywhere by this controller.
    disarmed: bool,
}

impl Count {
    fn spent(&self) -> bool {
        self.stored >= self.limit
    }
}

impl Registry {
    /// Counts a hit of breakpoint `id` just stored. True once, when its stored hits have
    /// reached its limit: the caller disarms it everywhere. (Once more after a restart of
    /// the controller, if an agent still armed from before sends a hit.)
    pub async fn count_hit(&self, id: BreakpointId) -> Result<bool, StoreError> {
        let mut counts = self.hit_counts.counts.lock().await;
        let count = match counts.get_mut(&id.0) {
            Some(c) => {
                if !c.spent() {
                    c.stored += 1;
                    // Counted here and read from the store by `armable_breakpoints` at
                    // the same moment, one hit can be counted twice: the store settles it.
                    if c.spent() {
                        c.stored = self.hits(id).await?;
                    }
                }
                c
            }
            None => {
                let Some(record) = self.breakpoint_record(id).await? else {
                    return Ok(false);
                };
                // The store's count includes the hit just stored.
                let c = self.read_count(&record).await?;
                counts.entry(id.0).or_insert(c)
            }
        };
        let disarm = count.spent() && !count.disarmed;
        count.disarmed |= disarm;
        Ok(disarm)
    }

    /// The live breakpoints still to arm: those whose stored hits are below their limit.
    pub async fn armable_breakpoints(&self) -> Result<Vec<BreakpointRecord>, StoreError> {
        let live = self.live_breakpoints().await?;
        let mut counts = self.hit_counts.counts.lock().await;
        let mut armable = Vec::with_capacity(live.len());
        for record in live {
            let count = match counts.get(&record.id.0) {
                Some(c) => *c,
                None => {
                    let c = self.read_count(&record).await?;
                    counts.insert(record.id.0, c);
                    c
                }
            };
            if !count.spent() {
                armable.push(record);
            }
        }
        Ok(armable)
    }

    async fn read_count(&self, record: &BreakpointRecord) -> Result<Count, StoreError> {
        Ok(Count {
            stored: self.hits(record.id).await?,
            limit: hit_limit(record),
            disarmed: false,
        })
    }
}

/// A stored breakpoint's hit limit; a spec this controller cannot read has none.
fn hit_limit(record: &BreakpointRecord) -> u64 {
    StoredSpec::from_json(&record.spec).map_or(u64::MAX, |s| u64::from(s.hit_limit.max(1)))
}
