//! Database captures: a breakpoint's `--capture` queries, checked when it is set and read
//! at each of its hits, before the hit is stored.
//!
//! A hit's queries run on the agent's stream, before the next message of that agent is
//! handled: the agent's freeze reports queue behind them, so a frozen trace cannot be
//! resumed before its rows are read. The statement timeout bounds that wait, and
//! [`Captures::settled`] lets a resume wait for reads still running.
//!
//! Rows are redacted here, before they are stored (`tracery_model::redact`), and a
//! placeholder naming a value the agent redacted is refused, never bound.

mod resolve;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use tokio::sync::Notify;
use tonic::Status;
use tracery_databases::{CaptureLimits, CaptureSpec, DatabaseConfig, Databases, QueryResult};
use tracery_proto::v1;

use resolve::resolve;

/// The databases a controller may read, and the capture queries of live breakpoints.
pub struct Captures {
    databases: Databases,
    /// Parsed once per breakpoint: hits come often, the queries never change.
    by_breakpoint: Mutex<HashMap<u64, Parsed>>,
    /// Reads running per trace id, for [`Captures::settled`].
    in_flight: Mutex<HashMap<String, usize>>,
    done: Notify,
}

/// A breakpoint's capture queries as parsed against this controller's databases. A
/// stored breakpoint whose queries no longer parse (the configuration of a restarted
/// controller changed) keeps the reason, and each hit reports it on every query.
#[derive(Clone)]
enum Parsed {
    Ready(Arc<[CaptureSpec]>),
    Broken {
        captures: Arc<[String]>,
        why: String,
    },
}

impl Captures {
    /// A registry of `databases` (connections open on first use) read under `limits`.
    pub fn new(databases: Vec<DatabaseConfig>, limits: CaptureLimits) -> Self {
        Self {
            databases: Databases::new(databases, limits),
            by_breakpoint: Mutex::default(),
            in_flight: Mutex::default(),
            done: Notify::new(),
        }
    }

    /// The configured databases, for `status` and errors (passwords redacted).
    pub fn configs(&self) -> &[DatabaseConfig] {
        self.databases.configs()
    }

    /// Checks a breakpoint's capture queries when it is set: a known database, a read-only
    /// statement with valid syntax, well-formed placeholders. Returns every placeholder
    /// path, for the agents' scope check.
    pub fn check(&self, captures: &[String]) -> Result<Vec<String>, Status> {
        let mut paths: Vec<String> = Vec::new();
        for text in captures {
            let spec = CaptureSpec::parse(text, self.databases.configs())
                .map_err(|e| Status::invalid_argument(format!("--capture {text:?}: {e}")))?;
            for p in spec.placeholders() {
                if !paths.contains(p) {
                    paths.push(p.clone());
                }
            }
        }
        Ok(paths)
    }

    /// True once breakpoint `id`'s queries are known (set here, or loaded from the store).
    pub fn knows(&self, id: u64) -> bool {
        lock(&self.by_breakpoint).contains_key(&id)
    }

    /// Keeps breakpoint `id`'s capture queries, parsed, for its hits.
    pub fn register(&self, id: u64, captures: &[String]) {
        let parsed = captures
            .iter()
            .map(|text| CaptureSpec::parse(text, self.databases.configs()))
            .collect::<Result<Vec<_>, _>>();
        let parsed = match parsed {
            Ok(specs) => Parsed::Ready(specs.into()),
            Err(e) => Parsed::Broken {
                captures: captures.into(),
                why: format!(
                    "the capture no longer parses against this controller's databases ({e}); \
                     set the breakpoint again"
                ),
            },
        };
        lock(&self.by_breakpoint).insert(id, parsed);
    }

    /// Forgets a deleted or expired breakpoint's parsed queries.
    pub fn forget(&self, id: u64) {
        lock(&self.by_breakpoint).remove(&id);
    }

    /// Reads breakpoint `id`'s capture queries for `snapshot`, each bound to the values it
    /// captured, one consistent read per database. Never fails: a query that cannot run
    /// carries its error. Empty when the breakpoint has no queries (or is unknown).
    pub async fn read(&self, id: u64, snapshot: &v1::Snapshot) -> Vec<v1::DatabaseRead> {
        let parsed = lock(&self.by_breakpoint).get(&id).cloned();
        let specs = match parsed {
            None => return Vec::new(),
            Some(Parsed::Ready(specs)) if specs.is_empty() => return Vec::new(),
            Some(Parsed::Ready(specs)) => specs,
            Some(Parsed::Broken { captures, why }) => {
                return captures
                    .iter()
                    .map(|text| failed_read(text, &why))
                    .collect()
            }
        };
        let _reading = snapshot.trace_id.as_deref().map(|t| self.reading(t));
        let mut reasons: Vec<Vec<String>> = Vec::with_capacity(specs.len());
        let bound: Vec<_> = specs
            .iter()
            .map(|spec| {
                let why = std::cell::RefCell::new(Vec::new());
                let query = spec.bind(|path| match resolve(&snapshot.variables, path) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        why.borrow_mut().push(e.to_string());
                        None
                    }
                });
                reasons.push(why.into_inner());
                query
            })
            .collect();
        let results = self.databases.capture(&bound).await;
        results
            .into_iter()
            .zip(reasons)
            .map(|(result, why)| to_proto(result, &why))
            .collect()
    }

    /// Marks a read of `trace` as running until the guard drops.
    fn reading(&self, trace: &str) -> Reading<'_> {
        *lock(&self.in_flight).entry(trace.to_owned()).or_default() += 1;
        Reading {
            captures: self,
            trace: trace.to_owned(),
        }
    }

    /// Waits until no capture read of `trace` runs, for at most `within`.
    pub async fn settled(&self, trace: &str, within: Duration) {
        let wait = async {
            loop {
                let notified = self.done.notified();
                if !lock(&self.in_flight).contains_key(trace) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(within, wait).await;
    }

    /// How long a resume waits for reads: a read ends within its statement timeout.
    pub fn settle_time(&self) -> Duration {
        self.databases.limits().statement_timeout() + Duration::from_secs(1)
    }
}

/// A capture read in progress for one trace.
struct Reading<'a> {
    captures: &'a Captures,
    trace: String,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.captures.in_flight);
        if let Some(n) = in_flight.get_mut(&self.trace) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.trace);
            }
        }
        drop(in_flight);
        self.captures.done.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these maps leaves them consistent (single inserts/removes).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn to_proto(r: QueryResult, unresolved: &[String]) -> v1::DatabaseRead {
    // Columns, keys and hash fields named like secrets never reach the store.
    let redaction = tracery_model::redact::active();
    let json = |v: &serde_json::Value| {
        let mut v = v.clone();
        redaction.json(&mut v);
        v.to_string()
    };
    // An unresolved placeholder's own reason says more than "did not resolve".
    let error = match (r.error, unresolved.is_empty()) {
        (Some(_), false) => Some(unresolved.join("; ")),
        (error, _) => error,
    };
    v1::DatabaseRead {
        database: r.database,
        kind: r.kind.as_str().to_owned(),
        query: r.query,
        params: r
            .params
            .iter()
            .map(|p| v1::DatabaseParam {
                path: p.path.clone(),
                value_json: serde_json::to_string(&p.value).unwrap_or_else(|_| "null".into()),
            })
            .collect(),
        rows_json: r.rows.iter().map(json).collect(),
        truncated: r.truncated,
        read_at: Some(prost_types::Timestamp::from(
            humantime::parse_rfc3339(&r.read_at).unwrap_or_else(|_| SystemTime::now()),
        )),
        consistency_json: serde_json::to_string(&r.consistency).unwrap_or_default(),
        error,
    }
}

fn failed_read(text: &str, why: &str) -> v1::DatabaseRead {
    let (database, query) = text.split_once(':').unwrap_or(("", text));
    v1::DatabaseRead {
        database: database.trim().to_owned(),
        query: query.trim().to_owned(),
        read_at: Some(SystemTime::now().into()),
        consistency_json: r#"{"method":"not_read"}"#.into(),
        error: Some(why.to_owned()),
        ..Default::default()
    }
}
