//! Hits an agent captured but could not deliver (its buffer was full while the controller
//! was away): counted per agent and breakpoint, so that losses are shown, never silent.

use crate::{with_pool, BreakpointId, Store, StoreError};

impl Store {
    /// Adds `n` dropped hits to the count of `agent_id` and `breakpoint_id`.
    pub async fn add_drops(
        &self,
        agent_id: &str,
        breakpoint_id: BreakpointId,
        n: u64,
    ) -> Result<(), StoreError> {
        if n == 0 {
            return Ok(());
        }
        let n = i64::try_from(n).map_err(|_| StoreError::OutOfRange {
            field: "drop count",
            value: n.to_string(),
        })?;
        let sql = "INSERT INTO drops (agent_id, breakpoint_id, count) VALUES ($1, $2, $3) \
                   ON CONFLICT (agent_id, breakpoint_id) DO UPDATE SET count = drops.count + excluded.count";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(agent_id)
            .bind(breakpoint_id.0)
            .bind(n)
            .execute(pool)
            .await
            .map(drop))
        .map_err(|source| self.query_error("count dropped hits", source))?;
        Ok(())
    }

    /// Dropped hits of one breakpoint, or of all, summed over agents.
    pub async fn drops(&self, breakpoint_id: Option<BreakpointId>) -> Result<u64, StoreError> {
        // PostgreSQL's SUM(BIGINT) is NUMERIC: cast it back.
        let sql = "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM drops \
                   WHERE $1 IS NULL OR breakpoint_id = $1";
        let total: i64 = with_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(breakpoint_id.map(|id| id.0))
            .fetch_one(pool)
            .await)
        .map_err(|source| self.query_error("read drop counts", source))?;
        Ok(u64::try_from(total).unwrap_or(0))
    }
}
