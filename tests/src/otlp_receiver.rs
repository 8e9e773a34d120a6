//! A real OTLP gRPC receiver for export tests: the generated `TraceService` and
//! `LogsService` servers of `opentelemetry-proto` on a real socket, keeping what they
//! receive. No Jaeger or OpenTelemetry Collector is packaged for the test machines; this is
//! the same protocol they speak.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{
            logs_service_server::{LogsService, LogsServiceServer},
            ExportLogsServiceRequest, ExportLogsServiceResponse,
        },
        trace::v1::{
            trace_service_server::{TraceService, TraceServiceServer},
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        },
    },
    common::v1::{any_value::Value, AnyValue, KeyValue},
};
use tonic::{Request, Response, Status};

/// A received attribute value, simplified for assertions.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, maps and bytes: their debug text.
    Other(String),
}

impl Attr {
    /// The text of a string attribute.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Attr::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Attributes by key.
pub type Attrs = BTreeMap<String, Attr>;

/// One span as received, with its resource's attributes.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Attrs,
    /// (name, attributes) of each event, in order.
    pub events: Vec<(String, Attrs)>,
    /// The status code (0 unset, 1 ok, 2 error) and message.
    pub status: (i32, String),
    pub resource: Attrs,
    /// The span's flags field (bit 8: the flags say whether the parent is remote; bit 9:
    /// it is).
    pub flags: u32,
}

/// One log record as received, with its resource's attributes.
#[derive(Clone, Debug)]
pub struct ReceivedLog {
    pub body: String,
    pub event_name: String,
    pub time_unix_nano: u64,
    /// Empty when the record carries no trace.
    pub trace_id: String,
    pub attributes: Attrs,
    pub resource: Attrs,
}

/// The gRPC metadata (request headers) of one export call: ASCII entries by name.
pub type Metadata = BTreeMap<String, String>;

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    logs: Vec<ReceivedLog>,
    calls: usize,
    metadata: Vec<Metadata>,
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Received>>);

impl Sink {
    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut got = self.lock();
        got.calls += 1;
        got.metadata.push(metadata(&request));
        for rs in request.into_inner().resource_spans {
            let resource = attrs(&rs.resource.map(|r| r.attributes).unwrap_or_default());
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let status = s.status.unwrap_or_default();
                    got.spans.push(ReceivedSpan {
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        name: s.name,
                        start_unix_nano: s.start_time_unix_nano,
                        end_unix_nano: s.end_time_unix_nano,
                        attributes: attrs(&s.attributes),
                        events: s
                            .events
                            .iter()
                            .map(|e| (e.name.clone(), attrs(&e.attributes)))
                            .collect(),
                        status: (status.code, status.message),
                        resource: resource.clone(),
                        flags: s.flags,
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let mut got = self.lock();
        got.calls += 1;
        got.metadata.push(metadata(&request));
        for rl in request.into_inner().resource_logs {
            let resource = attrs(&rl.resource.map(|r| r.attributes).unwrap_or_default());
            for sl in rl.scope_logs {
                for l in sl.log_records {
                    got.logs.push(ReceivedLog {
                        body: l.body.as_ref().map(text).unwrap_or_default(),
                        event_name: l.event_name,
                        time_unix_nano: l.time_unix_nano,
                        trace_id: hex(&l.trace_id),
                        attributes: attrs(&l.attributes),
                        resource: resource.clone(),
                    });
                }
            }
        }
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

fn metadata<T>(request: &Request<T>) -> Metadata {
    request
        .metadata()
        .iter()
        .filter_map(|kv| match kv {
            tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))
            }
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(v: &AnyValue) -> Attr {
    match &v.value {
        Some(Value::StringValue(s)) => Attr::Str(s.clone()),
        Some(Value::IntValue(i)) => Attr::Int(*i),
        Some(Value::DoubleValue(d)) => Attr::Double(*d),
        Some(Value::BoolValue(b)) => Attr::Bool(*b),
        other => Attr::Other(format!("{other:?}")),
    }
}

fn text(v: &AnyValue) -> String {
    match attr(v) {
        Attr::Str(s) => s,
        other => format!("{other:?}"),
    }
}

fn attrs(kvs: &[KeyValue]) -> Attrs {
    kvs.iter()
        .map(|kv| {
            let v = kv
                .value
                .as_ref()
                .map(attr)
                .unwrap_or(Attr::Other("unset".into()));
            (kv.key.clone(), v)
        })
        .collect()
}

/// The receiver, serving on 127.0.0.1 until [`OtlpReceiver::stop`] or drop.
pub struct OtlpReceiver {
    addr: SocketAddr,
    sink: Sink,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Starts serving on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("receiver address");
        let sink = Sink::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = sink.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("receiver runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                let result = tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(served.clone()))
                    .add_service(LogsServiceServer::new(served))
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await;
                if let Err(e) = result {
                    eprintln!("OTLP receiver failed: {e}");
                }
            });
        });
        Self {
            addr,
            sink,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, as `--otlp-endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.sink.lock().spans.clone()
    }

    /// Every log record received so far.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.sink.lock().logs.clone()
    }

    /// Export calls received (trace and logs).
    pub fn calls(&self) -> usize {
        self.sink.lock().calls
    }

    /// The metadata of every export call received so far, in order.
    pub fn metadata(&self) -> Vec<Metadata> {
        self.sink.lock().metadata.clone()
    }

    /// Waits up to `within` for a span that `pred` accepts; panics with what arrived.
    pub fn wait_span(
        &self,
        within: Duration,
        pred: impl Fn(&ReceivedSpan) -> bool,
    ) -> ReceivedSpan {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| pred(s)) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no matching span within {within:?}; received: {:#?}",
                self.spans()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `within` for a log record that `pred` accepts; panics with what arrived.
    pub fn wait_log(&self, within: Duration, pred: impl Fn(&ReceivedLog) -> bool) -> ReceivedLog {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.logs().into_iter().find(|l| pred(l)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no matching log record within {within:?}; received: {:#?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops serving and closes the port: later exports to it are refused.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `http://127.0.0.1:PORT` of a port nothing listens on (bound, then closed): a collector
/// that is down.
pub fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    format!("http://{addr}")
}
