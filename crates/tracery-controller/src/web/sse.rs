//! `GET /api/v1/events`: server-sent events for open pages, so new hits, freezes, holds
//! and releases show without a reload.
//!
//! Snapshots come from the registry's broadcast (as `snapshot watch` gets them). Frozen
//! traces have no broadcast: they are compared twice a second with what this stream last
//! sent, which costs one short lock per open page and needs no change to the agent link.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Extension;
use futures::Stream;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tracery_proto::v1;

use super::api::ApiError;
use super::auth::Presented;
use super::{json as j, Web};
use crate::auth::Verb;

/// How often frozen traces are compared with the last state sent.
const TRACE_POLL: Duration = Duration::from_millis(500);
/// Events buffered per open page.
const BUFFER: usize = 64;

/// Per frozen trace: held threads and held messages, as last sent.
type Seen = BTreeMap<String, (usize, usize)>;

pub(super) async fn events(
    State(web): State<Arc<Web>>,
    Extension(who): Extension<Presented>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // The stream shows every namespace's hits: a cluster-wide `list`, as `snapshot watch`.
    let access = &web.registry.opts.access;
    let caller = access.authenticate(&who.request(())).await?;
    access.authorize(&caller, Verb::List, "").await?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(feed(web.clone(), tx));
    let stream = futures::StreamExt::map(ReceiverStream::new(rx), Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Sends events to one page until it goes away or the controller stops.
async fn feed(web: Arc<Web>, tx: mpsc::Sender<Event>) {
    let registry = &web.registry;
    let mut snapshots = registry.watch_snapshots();
    let mut stop = registry.stop.clone();
    let mut poll = tokio::time::interval(TRACE_POLL);
    let mut seen = frozen_now(&web);
    let _ = tx.send(Event::default().event("hello").data("{}")).await;
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = tx.closed() => return,
            next = snapshots.recv() => match next {
                Ok(s) => vec![snapshot_event(&s)],
                Err(broadcast::error::RecvError::Lagged(missed)) => vec![Event::default()
                    .event("lagged")
                    .data(json!({"missed": missed}).to_string())],
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = poll.tick() => {
                let now = frozen_now(&web);
                let changes = trace_changes(&seen, &now);
                seen = now;
                changes
            }
        };
        for e in event {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    }
}

fn snapshot_event(s: &v1::Snapshot) -> Event {
    let loc = s.location.clone().unwrap_or_default();
    let data = json!({
        "id": s.id, "breakpoint_id": s.breakpoint_id, "pid": s.pid, "tid": s.tid,
        "trace_id": s.trace_id, "time": j::rfc3339(s.time),
        "function": loc.function, "file": loc.file, "line": loc.line,
    });
    Event::default().event("snapshot").data(data.to_string())
}

fn frozen_now(web: &Web) -> Seen {
    web.registry
        .traces()
        .all()
        .into_iter()
        .map(|f| (f.trace_id, (f.threads.len(), f.messages.len())))
        .collect()
}

/// `freeze` for a trace newly frozen, `hold` when it holds more messages, `release` when
/// it is no longer frozen.
fn trace_changes(before: &Seen, now: &Seen) -> Vec<Event> {
    let mut events = Vec::new();
    let event = |kind: &str, trace: &str, (threads, messages): (usize, usize)| {
        Event::default()
            .event(kind)
            .data(json!({"trace_id": trace, "threads": threads, "messages": messages}).to_string())
    };
    for (trace, &counts) in now {
        match before.get(trace) {
            None => events.push(event("freeze", trace, counts)),
            Some(&(t, m)) if counts.1 > m || counts.0 > t => {
                events.push(event("hold", trace, counts));
            }
            Some(_) => {}
        }
    }
    for trace in before.keys().filter(|t| !now.contains_key(*t)) {
        events.push(event("release", trace, (0, 0)));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freezes_holds_and_releases_are_told_once() {
        let before: Seen = [("a".into(), (1, 0)), ("b".into(), (0, 1))].into();
        let now: Seen = [("a".into(), (1, 2)), ("c".into(), (1, 0))].into();
        assert_eq!(trace_changes(&before, &now).len(), 3);
        assert!(trace_changes(&now, &now).is_empty());
    }
}
