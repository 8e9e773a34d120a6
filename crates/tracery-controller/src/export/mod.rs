//! OTLP export of snapshots: each stored snapshot becomes a span on its request's trace (or
//! a log record when it has no trace), each freeze a span with `tracery.frozen` and
//! `tracery.resumed` events, sent over gRPC to the collector of `--otlp-endpoint`.
//!
//! Capture and storing never wait on the collector: items go through a bounded queue with
//! `try_send`, and one task converts and exports them. What cannot be exported (queue full,
//! collector unreachable or slow) is counted by reason and shown in `tracery-ctl status`.

mod attributes;
mod otlp;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithTonicConfig};
use tokio::sync::mpsc;
use tracery_proto::v1;
use tracery_store::Store;

use crate::ControllerError;

/// Items waiting for the export task. A burst of hits beyond this while the collector is
/// slow is dropped (and counted) rather than kept in memory without bound.
pub const EXPORT_QUEUE: usize = 4096;
/// Items sent in one export call at most.
const EXPORT_BATCH: usize = 512;
/// How long one export call may take before its items count as dropped: short, so a
/// collector that hangs does not let the queue fill behind it.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// The exporter's own deadline, a backstop past [`EXPORT_TIMEOUT`]: with the same value,
/// its error ("export failed") and our timeout race, and a hung collector's drops would
/// be counted under either reason by chance.
const EXPORTER_TIMEOUT: Duration = Duration::from_secs(4);
/// How long the task gathers items after the first of a burst before exporting them: a
/// call per hit made even a closed-port exporter cost the capture path CPU on every hit.
const EXPORT_LINGER: Duration = Duration::from_millis(200);

/// Why exported data was lost, as `status` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DropReason {
    /// The queue was full: the collector is slower than the hits.
    QueueFull,
    /// The collector refused the export or could not be reached.
    ExportFailed,
    /// The export took longer than [`EXPORT_TIMEOUT`].
    Timeout,
}

impl DropReason {
    fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue full",
            DropReason::ExportFailed => "export failed",
            DropReason::Timeout => "export timed out",
        }
    }
}

/// One thing to export, as the controller saw it.
#[derive(Debug)]
pub(crate) enum Item {
    /// A stored snapshot (its `id` set), with where it ran.
    Snapshot(Box<SnapshotItem>),
    /// The first frozen thread of a trace.
    FreezeStarted(FreezeStart),
    /// The trace's last frozen thread was released.
    FreezeEnded(FreezeEnd),
}

/// A stored snapshot and what the controller knows about its process.
#[derive(Debug)]
pub(crate) struct SnapshotItem {
    pub snapshot: v1::Snapshot,
    /// The agent's host name (`host.name`).
    pub host: String,
    /// The process's executable path, from the agent's health report.
    pub exe: Option<String>,
    /// The agent runs in this process (standalone): its pids are this host's, so the
    /// executable can be read from /proc when no health report named it yet.
    pub local: bool,
}

/// A trace frozen at a breakpoint.
#[derive(Clone, Debug)]
pub(crate) struct FreezeStart {
    pub trace_id: String,
    pub at: SystemTime,
    pub breakpoint_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub location: String,
    pub deadline: Option<SystemTime>,
    /// Messages of the trace already held when it froze.
    pub held_messages: usize,
}

/// A frozen trace let go.
#[derive(Clone, Debug)]
pub(crate) struct FreezeEnd {
    pub trace_id: String,
    pub at: SystemTime,
    /// Why: resumed, deadline passed, the process exited, ...
    pub reason: String,
    /// Messages held for the trace when it was let go.
    pub held_messages: usize,
}

impl Item {
    /// Spans and log records this item becomes, for counting drops.
    fn records(&self) -> u64 {
        match self {
            Item::Snapshot(s) if s.snapshot.trace_id.is_some() => {
                1 + s.snapshot.databases.len() as u64
            }
            Item::Snapshot(_) | Item::FreezeEnded(_) => 1,
            Item::FreezeStarted(_) => 0,
        }
    }
}

/// What has been exported and lost so far.
#[derive(Debug, Default)]
struct Counters {
    spans: AtomicU64,
    logs: AtomicU64,
    dropped: Mutex<BTreeMap<DropReason, u64>>,
    last_error: Mutex<Option<(SystemTime, String)>>,
    last_success: Mutex<Option<SystemTime>>,
}

impl Counters {
    fn drop_records(&self, reason: DropReason, n: u64) {
        if n > 0 {
            *lock(&self.dropped).entry(reason).or_default() += n;
        }
    }

    fn failed(&self, reason: DropReason, n: u64, error: String) {
        self.drop_records(reason, n);
        *lock(&self.last_error) = Some((SystemTime::now(), error));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters stay valid whatever a panicking holder did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The controller's handle on the export task; cheap to clone. Disabled (every call a
/// no-op) when no endpoint is configured.
#[derive(Clone, Debug, Default)]
pub(crate) struct Exporter {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    endpoint: String,
    tx: mpsc::Sender<Item>,
    counters: Counters,
}

impl Exporter {
    /// Starts exporting to the OTLP gRPC collector at `endpoint` (`http://HOST:4317`);
    /// `OTEL_EXPORTER_OTLP_HEADERS` adds metadata to every call. Must run inside the
    /// tokio runtime: the export task is spawned on it. `store` names breakpoints'
    /// services.
    pub fn start(endpoint: &str, store: Store) -> Result<Exporter, ControllerError> {
        let build_error =
            |source: opentelemetry_otlp::ExporterBuildError| ControllerError::OtlpExporter {
                endpoint: endpoint.to_owned(),
                source,
            };
        // No retries: a collector that is down costs one refused connection per batch,
        // and what it misses is counted at once instead of piling up behind backoffs.
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORTER_TIMEOUT)
            .with_retry_policy(RetryPolicy::disabled())
            .build()
            .map_err(build_error)?;
        let logs = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORTER_TIMEOUT)
            .with_retry_policy(RetryPolicy::disabled())
            .build()
            .map_err(build_error)?;
        let (tx, rx) = mpsc::channel(EXPORT_QUEUE);
        let inner = Arc::new(Inner {
            endpoint: endpoint.to_owned(),
            tx,
            counters: Counters::default(),
        });
        let task = otlp::Task::new(spans, logs, store);
        tokio::spawn(run(task, rx, Arc::downgrade(&inner)));
        tracing::info!(%endpoint, "exporting snapshots over OTLP");
        Ok(Exporter { inner: Some(inner) })
    }

    /// True when an endpoint is configured.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues `item` without waiting; a full queue drops it and counts the drop.
    pub fn send(&self, item: Item) {
        let Some(inner) = &self.inner else { return };
        if let Err(mpsc::error::TrySendError::Full(item)) = inner.tx.try_send(item) {
            inner
                .counters
                .drop_records(DropReason::QueueFull, item.records());
        }
    }

    /// The counters as `Status` shows them; `None` when export is off.
    pub fn status(&self) -> Option<v1::ExportStatus> {
        let inner = self.inner.as_ref()?;
        let c = &inner.counters;
        let dropped = lock(&c.dropped)
            .iter()
            .map(|(reason, count)| v1::ExportDrop {
                reason: reason.as_str().to_owned(),
                count: *count,
            })
            .collect();
        let last_error = lock(&c.last_error).clone();
        Some(v1::ExportStatus {
            endpoint: inner.endpoint.clone(),
            exported_spans: c.spans.load(Ordering::Relaxed),
            exported_logs: c.logs.load(Ordering::Relaxed),
            dropped,
            last_error_at: last_error.as_ref().map(|(at, _)| (*at).into()),
            last_error: last_error.map(|(_, e)| e),
            last_success_at: lock(&c.last_success).map(Into::into),
        })
    }
}

/// Exports queued items in batches until every [`Exporter`] handle is gone.
async fn run(mut task: otlp::Task, mut rx: mpsc::Receiver<Item>, inner: std::sync::Weak<Inner>) {
    let mut batch = Vec::with_capacity(EXPORT_BATCH);
    while rx.recv_many(&mut batch, EXPORT_BATCH).await > 0 {
        let linger_end = tokio::time::Instant::now() + EXPORT_LINGER;
        while batch.len() < EXPORT_BATCH {
            let room = EXPORT_BATCH - batch.len();
            match tokio::time::timeout_at(linger_end, rx.recv_many(&mut batch, room)).await {
                // Closed: export what is here; the outer receive then ends the task.
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let items = std::mem::take(&mut batch);
        let outcomes = task.export(items).await;
        let Some(inner) = inner.upgrade() else { return };
        let c = &inner.counters;
        for outcome in outcomes {
            match outcome {
                otlp::Outcome::Sent { spans, logs } => {
                    c.spans.fetch_add(spans, Ordering::Relaxed);
                    c.logs.fetch_add(logs, Ordering::Relaxed);
                    *lock(&c.last_success) = Some(SystemTime::now());
                }
                otlp::Outcome::Failed {
                    records,
                    timed_out,
                    error,
                } => {
                    let reason = if timed_out {
                        DropReason::Timeout
                    } else {
                        DropReason::ExportFailed
                    };
                    tracing::debug!(endpoint = %inner.endpoint, %error, records, "OTLP export failed");
                    c.failed(reason, records, error);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
