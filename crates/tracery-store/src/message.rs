//! Stored message events: the sends and receives of traced requests that agents report,
//! one row each, kept like snapshots (rows are never deleted).

use std::time::SystemTime;

use sqlx::Row;

use crate::time::{from_nanos, to_nanos};
use crate::{with_pool, Store, StoreError};

/// A message event as an agent reports it.
#[derive(Clone, Copy, Debug)]
pub struct NewMessage<'a> {
    pub agent_id: &'a str,
    /// The agent's node.
    pub node: &'a str,
    /// 32 lowercase hex digits.
    pub trace_id: &'a str,
    /// `send` or `recv`.
    pub kind: &'a str,
    /// `IP:PORT` of this process's end and of the other end.
    pub local_addr: &'a str,
    pub remote_addr: &'a str,
    /// TCP sequence number of the first byte; `None` when unknown.
    pub seq: Option<u32>,
    pub bytes: u32,
    pub pid: u32,
    pub tid: u32,
    /// Goroutine or tokio task, 0 for a thread (stored as the same 64 bits, signed).
    pub task: u64,
    pub process_name: &'a str,
    pub time: SystemTime,
    pub held: bool,
}

/// A stored message event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: i64,
    pub agent_id: String,
    pub node: String,
    pub trace_id: String,
    pub kind: String,
    pub local_addr: String,
    pub remote_addr: String,
    pub seq: Option<u32>,
    pub bytes: u32,
    pub pid: u32,
    pub tid: u32,
    pub task: u64,
    pub process_name: String,
    pub time: SystemTime,
    pub held: bool,
}

/// An event whose Lamport timestamp the controller computed: `Snapshot(id)` or
/// `Message(id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventRef {
    Snapshot(i64),
    Message(i64),
}

impl Store {
    /// Stores a batch of message events in one transaction; returns how many.
    pub async fn insert_messages(&self, batch: &[NewMessage<'_>]) -> Result<u64, StoreError> {
        let sql = "INSERT INTO messages (agent_id, node, trace_id, kind, local_addr, \
                   remote_addr, seq, bytes, pid, tid, task, process_name, time, held) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
        let mut rows = Vec::with_capacity(batch.len());
        for m in batch {
            rows.push((m, to_nanos(m.time, "time")?));
        }
        with_pool!(self, pool => {
            let mut tx = pool
                .begin()
                .await
                .map_err(|source| self.query_error("store message events", source))?;
            for (m, time) in &rows {
                sqlx::query(sql)
                    .bind(m.agent_id)
                    .bind(m.node)
                    .bind(m.trace_id)
                    .bind(m.kind)
                    .bind(m.local_addr)
                    .bind(m.remote_addr)
                    .bind(m.seq.map(i64::from))
                    .bind(i64::from(m.bytes))
                    .bind(i64::from(m.pid))
                    .bind(i64::from(m.tid))
                    .bind(m.task as i64)
                    .bind(m.process_name)
                    .bind(*time)
                    .bind(i64::from(m.held))
                    .execute(&mut *tx)
                    .await
                    .map_err(|source| self.query_error("store message events", source))?;
            }
            tx.commit()
                .await
                .map_err(|source| self.query_error("store message events", source))?;
        });
        Ok(rows.len() as u64)
    }

    /// Up to `limit` message events of one trace, in id order.
    pub async fn list_trace_messages(
        &self,
        trace_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let sql = "SELECT id, agent_id, node, trace_id, kind, local_addr, remote_addr, seq, \
                   bytes, pid, tid, task, process_name, time, held \
                   FROM messages WHERE trace_id = $1 ORDER BY id LIMIT $2";
        with_pool!(self, pool => {
            let rows = sqlx::query(sql)
                .bind(trace_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(|source| self.query_error("list the messages of a trace", source))?;
            rows.iter()
                .map(|row| {
                    let int = |c: &str| row.try_get::<i64, _>(c);
                    let small = |c: &str| -> Result<u32, sqlx::Error> {
                        u32::try_from(int(c)?).map_err(|e| sqlx::Error::ColumnDecode {
                            index: c.to_owned(),
                            source: Box::new(e),
                        })
                    };
                    Ok(MessageRecord {
                        id: int("id")?,
                        agent_id: row.try_get("agent_id")?,
                        node: row.try_get("node")?,
                        trace_id: row.try_get("trace_id")?,
                        kind: row.try_get("kind")?,
                        local_addr: row.try_get("local_addr")?,
                        remote_addr: row.try_get("remote_addr")?,
                        seq: row
                            .try_get::<Option<i64>, _>("seq")?
                            .and_then(|s| u32::try_from(s).ok()),
                        bytes: small("bytes")?,
                        pid: small("pid")?,
                        tid: small("tid")?,
                        task: int("task")? as u64,
                        process_name: row.try_get("process_name")?,
                        time: from_nanos(int("time")?),
                        held: int("held")? != 0,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(|source| self.query_error("read the messages of a trace", source))
        })
    }

    /// Traces with an event not yet causally ordered (a NULL `lamport`), at most `limit`.
    pub async fn traces_to_order(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT trace_id FROM messages WHERE lamport IS NULL \
                   UNION SELECT trace_id FROM snapshots \
                   WHERE lamport IS NULL AND trace_id IS NOT NULL \
                   ORDER BY 1 LIMIT $1";
        with_pool!(self, pool => {
            sqlx::query_scalar::<_, String>(sql)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(|source| self.query_error("find traces to order", source))
        })
    }

    /// Writes the Lamport timestamps of a trace's events, in one transaction.
    pub async fn set_lamports(&self, order: &[(EventRef, u64)]) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool
                .begin()
                .await
                .map_err(|source| self.query_error("store causal order", source))?;
            for (event, lamport) in order {
                let (sql, id) = match event {
                    EventRef::Snapshot(id) => ("UPDATE snapshots SET lamport = $1 WHERE id = $2", id),
                    EventRef::Message(id) => ("UPDATE messages SET lamport = $1 WHERE id = $2", id),
                };
                sqlx::query(sql)
                    .bind(i64::try_from(*lamport).unwrap_or(i64::MAX))
                    .bind(*id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|source| self.query_error("store causal order", source))?;
            }
            tx.commit()
                .await
                .map_err(|source| self.query_error("store causal order", source))
        })
    }
}
