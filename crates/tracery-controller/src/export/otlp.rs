//! Snapshots, database reads and freezes as OTLP spans and log records.
//!
//! Spans are built as `SpanData` and handed to the SDK's exporter directly, not through a
//! tracer: the ids, times and parent must be exactly the hit's, which a tracer would
//! assign itself.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;
use tracery_proto::v1;
use tracery_store::Store;

use super::attributes::{database_attributes, snapshot_attributes};
use super::{FreezeEnd, FreezeStart, Item, SnapshotItem, EXPORT_TIMEOUT};
use crate::spec::{StoredSpec, StoredTarget};

/// Traces whose latest hit span is remembered, so a freeze's span can hang under it.
const RECENT_TRACES: usize = 4096;

/// Where a snapshot's process runs: one OTLP resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ResourceKey {
    service: String,
    pid: u32,
    exe: Option<String>,
    host: String,
    pod: Option<(String, String, String, String)>,
}

impl ResourceKey {
    fn resource(&self) -> Resource {
        let mut attrs = vec![
            KeyValue::new("service.name", self.service.clone()),
            KeyValue::new("process.pid", i64::from(self.pid)),
        ];
        if let Some(exe) = &self.exe {
            attrs.push(KeyValue::new("process.executable.name", base_name(exe)));
            attrs.push(KeyValue::new("process.executable.path", exe.clone()));
        }
        if !self.host.is_empty() {
            attrs.push(KeyValue::new("host.name", self.host.clone()));
        }
        if let Some((namespace, pod, container, node)) = &self.pod {
            attrs.push(KeyValue::new("k8s.namespace.name", namespace.clone()));
            attrs.push(KeyValue::new("k8s.pod.name", pod.clone()));
            attrs.push(KeyValue::new("k8s.container.name", container.clone()));
            attrs.push(KeyValue::new("k8s.node.name", node.clone()));
        }
        Resource::builder_empty().with_attributes(attrs).build()
    }
}

fn base_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned())
}

/// What one export call did with its records.
#[derive(Debug)]
pub enum Outcome {
    Sent {
        spans: u64,
        logs: u64,
    },
    Failed {
        records: u64,
        timed_out: bool,
        error: String,
    },
}

/// The export task's state: the exporters, and what it remembers between batches.
pub struct Task {
    spans: opentelemetry_otlp::SpanExporter,
    logs: opentelemetry_otlp::LogExporter,
    /// Makes log records (their constructor is the SDK's); it has no processor.
    logger: opentelemetry_sdk::logs::SdkLogger,
    scope: InstrumentationScope,
    store: Store,
    /// The service each breakpoint targets, when it names one.
    services: HashMap<u64, Option<String>>,
    /// Latest hit of each trace: its span id and process, oldest first out.
    recent: HashMap<String, (SpanId, ResourceKey)>,
    recent_order: VecDeque<String>,
    /// Frozen traces not yet let go.
    open: HashMap<String, FreezeStart>,
}

impl Task {
    pub fn new(
        spans: opentelemetry_otlp::SpanExporter,
        logs: opentelemetry_otlp::LogExporter,
        store: Store,
    ) -> Self {
        let scope = InstrumentationScope::builder("tracery")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Task {
            spans,
            logs,
            logger: SdkLoggerProvider::builder().build().logger("tracery"),
            scope,
            store,
            services: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            open: HashMap::new(),
        }
    }

    /// Converts `items` and exports them, one call per resource and signal.
    pub async fn export(&mut self, items: Vec<Item>) -> Vec<Outcome> {
        let mut spans: BTreeMap<ResourceKey, Vec<SpanData>> = BTreeMap::new();
        let mut logs: BTreeMap<ResourceKey, Vec<SdkLogRecord>> = BTreeMap::new();
        for item in items {
            match item {
                Item::Snapshot(s) => {
                    let key = self.resource_of(&s).await;
                    match snapshot_spans(&s.snapshot, &self.scope) {
                        Some(built) => {
                            let trace = s.snapshot.trace_id.clone().unwrap_or_default();
                            self.remember(trace, built.hit_span, key.clone());
                            spans.entry(key).or_default().extend(built.spans);
                        }
                        None => {
                            let record = self.log_record(&s.snapshot);
                            logs.entry(key).or_default().push(record);
                        }
                    }
                }
                Item::FreezeStarted(start) => {
                    self.open.entry(start.trace_id.clone()).or_insert(start);
                }
                Item::FreezeEnded(end) => {
                    let Some(start) = self.open.remove(&end.trace_id) else {
                        tracing::debug!(trace = %end.trace_id, "freeze end without its start; not exported");
                        continue;
                    };
                    let (parent, key) = match self.recent.get(&end.trace_id) {
                        Some((span, key)) => (*span, key.clone()),
                        None => (SpanId::INVALID, self.unknown_process(start.pid)),
                    };
                    if let Some(span) = freeze_span(&start, &end, parent, &self.scope) {
                        spans.entry(key).or_default().push(span);
                    }
                }
            }
        }
        let mut outcomes = Vec::new();
        for (key, batch) in spans {
            let n = batch.len() as u64;
            self.spans.set_resource(&key.resource());
            let sent = tokio::time::timeout(EXPORT_TIMEOUT, self.spans.export(batch)).await;
            outcomes.push(outcome(sent, n, 0));
        }
        for (key, records) in logs {
            let n = records.len() as u64;
            self.logs.set_resource(&key.resource());
            let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                records.iter().map(|r| (r, &self.scope)).collect();
            let sent =
                tokio::time::timeout(EXPORT_TIMEOUT, self.logs.export(LogBatch::new(&pairs))).await;
            outcomes.push(outcome(sent, 0, n));
        }
        outcomes
    }

    /// The resource of a snapshot's process; the breakpoint's service is read from the
    /// store once per breakpoint.
    async fn resource_of(&mut self, s: &SnapshotItem) -> ResourceKey {
        let id = s.snapshot.breakpoint_id;
        if !self.services.contains_key(&id) {
            let service = self.service_of(id).await;
            self.services.insert(id, service);
        }
        let service = self.services.get(&id).cloned().flatten();
        // Standalone: the process runs on this host (read now, before it exits).
        let exe = s.exe.clone().or_else(|| {
            let link = s
                .local
                .then(|| std::fs::read_link(format!("/proc/{}/exe", s.snapshot.pid)).ok());
            link.flatten().map(|p| p.to_string_lossy().into_owned())
        });
        let service = service
            .or_else(|| exe.as_deref().map(base_name))
            .unwrap_or_else(|| "unknown_service".to_owned());
        ResourceKey {
            service,
            pid: s.snapshot.pid,
            exe,
            host: s.host.clone(),
            pod: s.snapshot.pod.as_ref().map(|p| {
                (
                    p.namespace.clone(),
                    p.pod.clone(),
                    p.container.clone(),
                    p.node.clone(),
                )
            }),
        }
    }

    async fn service_of(&self, breakpoint_id: u64) -> Option<String> {
        let records = match self.store.list_breakpoints(true).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %crate::registry::error_chain(&e), "cannot read breakpoints for service names");
                return None;
            }
        };
        let record = records
            .iter()
            .find(|r| u64::try_from(r.id.0).ok() == Some(breakpoint_id))?;
        match StoredSpec::from_json(&record.spec).ok()?.target {
            StoredTarget::Service(name) => Some(name),
            StoredTarget::Exe(exe) => Some(base_name(&exe)),
            StoredTarget::Pid(_) | StoredTarget::Selector(_) => None,
        }
    }

    /// A freeze of a trace whose hit this controller has not exported.
    fn unknown_process(&self, pid: u32) -> ResourceKey {
        ResourceKey {
            service: "unknown_service".to_owned(),
            pid,
            exe: None,
            host: String::new(),
            pod: None,
        }
    }

    fn remember(&mut self, trace: String, span: SpanId, key: ResourceKey) {
        if self.recent.insert(trace.clone(), (span, key)).is_none() {
            self.recent_order.push_back(trace);
            while self.recent_order.len() > RECENT_TRACES {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    /// A snapshot without a trace as one log record: a one-line summary and the span's
    /// attributes.
    fn log_record(&self, s: &v1::Snapshot) -> SdkLogRecord {
        let mut record = self.logger.create_log_record();
        let time = hit_time(s);
        record.set_timestamp(time);
        record.set_observed_timestamp(SystemTime::now());
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        record.set_event_name("tracery.snapshot");
        record.set_body(AnyValue::String(summary(s).into()));
        record.add_attributes(
            snapshot_attributes(s)
                .into_iter()
                .map(|kv| (kv.key, any_value(kv.value))),
        );
        record
    }
}

/// A span attribute's value as a log attribute's (the API keeps the two types apart).
fn any_value(value: Value) -> AnyValue {
    match value {
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::I64(i) => AnyValue::Int(i),
        Value::F64(f) => AnyValue::Double(f),
        other => AnyValue::String(other.as_str().into_owned().into()),
    }
}

fn outcome<E: std::fmt::Display>(
    sent: Result<Result<(), E>, tokio::time::error::Elapsed>,
    spans: u64,
    logs: u64,
) -> Outcome {
    match sent {
        Ok(Ok(())) => Outcome::Sent { spans, logs },
        Ok(Err(e)) => Outcome::Failed {
            records: spans + logs,
            timed_out: false,
            error: e.to_string(),
        },
        Err(_) => Outcome::Failed {
            records: spans + logs,
            timed_out: true,
            error: format!("no answer within {EXPORT_TIMEOUT:?}"),
        },
    }
}

/// The spans of one snapshot with a trace.
struct SnapshotSpans {
    hit_span: SpanId,
    spans: Vec<SpanData>,
}

/// `tracery.snapshot`, child of the hit's span, and a child of it per database read;
/// `None` when the snapshot has no (valid) trace id.
fn snapshot_spans(s: &v1::Snapshot, scope: &InstrumentationScope) -> Option<SnapshotSpans> {
    let trace_id = TraceId::from_hex(s.trace_id.as_deref()?).ok()?;
    if trace_id == TraceId::INVALID {
        return None;
    }
    let hit_span = s
        .span_id
        .as_deref()
        .and_then(|h| SpanId::from_hex(h).ok())
        .unwrap_or(SpanId::INVALID);
    let time = hit_time(s);
    let own = derive_span_id(&("snapshot", s.id, s.trace_id.as_deref()));
    let mut spans = vec![span(
        trace_id,
        own,
        (hit_span, true),
        "tracery.snapshot",
        (time, time),
        snapshot_attributes(s),
        Vec::new(),
        Status::Unset,
        scope,
    )];
    for (i, read) in s.databases.iter().enumerate() {
        let at = read
            .read_at
            .and_then(|t| SystemTime::try_from(t).ok())
            .unwrap_or(time);
        let status = match &read.error {
            Some(e) => Status::error(e.clone()),
            None => Status::Unset,
        };
        let verb = read.query.split_whitespace().next().unwrap_or("read");
        spans.push(span(
            trace_id,
            derive_span_id(&("database", s.id, i)),
            (own, false),
            &format!("{verb} {}", read.database),
            (at, at),
            database_attributes(read),
            Vec::new(),
            status,
            scope,
        ));
    }
    Some(SnapshotSpans { hit_span, spans })
}

/// `tracery.freeze`: from the freeze to its release, under the hit's span.
///
/// A span of its own rather than the snapshot's span kept open until the resume: a span
/// is sent once it ends, so the snapshot would appear only after the resume (up to the
/// 10-minute freeze limit later), and not at all if the controller stopped meanwhile.
fn freeze_span(
    start: &FreezeStart,
    end: &FreezeEnd,
    parent: SpanId,
    scope: &InstrumentationScope,
) -> Option<SpanData> {
    let trace_id = TraceId::from_hex(&start.trace_id).ok()?;
    let started = start.at;
    let ended = end.at.max(started);
    let mut frozen = vec![
        KeyValue::new("tracery.held.messages", start.held_messages as i64),
        KeyValue::new("thread.id", i64::from(start.tid)),
    ];
    if let Some(deadline) = start.deadline {
        frozen.push(KeyValue::new(
            "tracery.freeze.deadline",
            humantime::format_rfc3339_millis(deadline).to_string(),
        ));
    }
    let events = vec![
        Event::new("tracery.frozen", started, frozen, 0),
        Event::new(
            "tracery.resumed",
            ended,
            vec![
                KeyValue::new("tracery.held.messages", end.held_messages as i64),
                KeyValue::new("tracery.release.reason", end.reason.clone()),
            ],
            0,
        ),
    ];
    let attributes = vec![
        KeyValue::new("tracery.breakpoint.id", start.breakpoint_id as i64),
        KeyValue::new("tracery.freeze.location", start.location.clone()),
        KeyValue::new("thread.id", i64::from(start.tid)),
        KeyValue::new("tracery.held.messages", end.held_messages as i64),
        KeyValue::new("tracery.release.reason", end.reason.clone()),
    ];
    Some(span(
        trace_id,
        derive_span_id(&("freeze", &start.trace_id, start.tid, started)),
        (parent, true),
        "tracery.freeze",
        (started, ended),
        attributes,
        events,
        Status::Unset,
        scope,
    ))
}

#[expect(clippy::too_many_arguments, reason = "one call per field of SpanData")]
fn span(
    trace_id: TraceId,
    span_id: SpanId,
    (parent, parent_is_remote): (SpanId, bool),
    name: &str,
    (start_time, end_time): (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    status: Status,
    scope: &InstrumentationScope,
) -> SpanData {
    let mut span_events = SpanEvents::default();
    span_events.events = events;
    SpanData {
        span_context: SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: parent,
        // The hit's span lives in the traced service, not here.
        parent_span_is_remote: parent_is_remote,
        span_kind: SpanKind::Internal,
        name: Cow::Owned(name.to_owned()),
        start_time,
        end_time,
        attributes,
        dropped_attributes_count: 0,
        events: span_events,
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

/// A stable, non-zero span id from `seed`: the same snapshot exported twice is the same
/// span.
fn derive_span_id(seed: &impl Hash) -> SpanId {
    let mut h = std::hash::DefaultHasher::new();
    seed.hash(&mut h);
    let id = h.finish().max(1);
    SpanId::from_bytes(id.to_be_bytes())
}

fn hit_time(s: &v1::Snapshot) -> SystemTime {
    s.time
        .and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or_else(SystemTime::now)
}

/// `snapshot 12: breakpoint 3 hit handle_request (httpd.c:41), pid 7, thread 9`.
fn summary(s: &v1::Snapshot) -> String {
    let loc = s.location.clone().unwrap_or_default();
    format!(
        "snapshot {}: breakpoint {} hit {} ({}:{}), pid {}, thread {}",
        s.id,
        s.breakpoint_id,
        loc.function,
        base_name(&loc.file),
        loc.line,
        s.pid,
        s.tid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> v1::Snapshot {
        v1::Snapshot {
            id: 12,
            breakpoint_id: 3,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            ..Default::default()
        }
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    /// A snapshot of a process in a pod: its resource carries the `k8s.*` attributes
    /// beside the process and host ones; outside a cluster, none.
    #[tokio::test]
    async fn a_snapshot_from_a_pod_has_the_kubernetes_resource_attributes() {
        use opentelemetry_otlp::WithExportConfig;
        // Never connected to: building a tonic exporter only prepares a lazy channel.
        let endpoint = "http://127.0.0.1:9";
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .unwrap();
        let logs = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let mut task = Task::new(spans, logs, Store::open(&url).await.unwrap());
        let mut s = snapshot();
        s.pid = 4242;
        s.pod = Some(v1::PodRef {
            namespace: "shop".into(),
            pod: "orders-7d9f8-abcde".into(),
            container: "orders".into(),
            node: "node-a".into(),
        });
        let item = SnapshotItem {
            snapshot: s,
            host: "node-a".into(),
            exe: Some("/app/orders".into()),
            local: false,
        };
        let resource = task.resource_of(&item).await.resource();
        let get = |key: &str| {
            resource
                .get(&opentelemetry::Key::from(key.to_owned()))
                .map(|v| v.to_string())
        };
        assert_eq!(get("k8s.namespace.name").as_deref(), Some("shop"));
        assert_eq!(get("k8s.pod.name").as_deref(), Some("orders-7d9f8-abcde"));
        assert_eq!(get("k8s.container.name").as_deref(), Some("orders"));
        assert_eq!(get("k8s.node.name").as_deref(), Some("node-a"));
        assert_eq!(get("host.name").as_deref(), Some("node-a"));
        assert_eq!(get("process.pid").as_deref(), Some("4242"));
        assert_eq!(get("process.executable.name").as_deref(), Some("orders"));
        // No breakpoint 3 in the store: the executable names the service.
        assert_eq!(get("service.name").as_deref(), Some("orders"));

        let mut outside = item;
        outside.snapshot.pod = None;
        let resource = task.resource_of(&outside).await.resource();
        assert!(
            resource
                .iter()
                .all(|(k, _)| !k.as_str().starts_with("k8s.")),
            "{resource:?}"
        );
    }

    #[test]
    fn a_snapshot_span_is_a_remote_child_of_the_hit_with_its_reads_below_it() {
        let mut s = snapshot();
        s.databases.push(v1::DatabaseRead {
            database: "shop".into(),
            kind: "postgres".into(),
            query: "SELECT * FROM orders WHERE id = {order.id}".into(),
            rows_json: vec!["{}".into()],
            error: Some("timeout".into()),
            ..Default::default()
        });
        let scope = InstrumentationScope::builder("t").build();
        let built = snapshot_spans(&s, &scope).unwrap();
        let [hit, db] = &built.spans[..] else {
            panic!("two spans expected")
        };
        assert_eq!(
            hit.parent_span_id,
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert!(hit.parent_span_is_remote);
        assert_eq!(db.parent_span_id, hit.span_context.span_id());
        assert_eq!(db.name, "SELECT shop");
        assert_eq!(
            attr(&db.attributes, "db.system"),
            Some(&Value::from("postgresql"))
        );
        assert!(matches!(db.status, Status::Error { .. }));
        s.trace_id = None;
        assert!(
            snapshot_spans(&s, &scope).is_none(),
            "no trace: a log record"
        );
    }
}
