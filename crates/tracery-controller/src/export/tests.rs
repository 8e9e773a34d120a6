//! The export queue against a collector that accepts connections and never answers: a
//! real socket and the real tonic exporter. What it cannot take is counted by reason, as
//! `status` shows it.

use std::time::Instant;

use super::*;

/// A listening socket that never answers: the TCP handshake completes (the kernel's
/// backlog), the gRPC one never does. Kept open while the returned listener lives.
fn hung_collector() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    (listener, endpoint)
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = Store::open(&url).await.unwrap();
    (dir, store)
}

/// A traced snapshot: one span.
fn item(id: u64) -> Item {
    Item::Snapshot(Box::new(SnapshotItem {
        snapshot: v1::Snapshot {
            id,
            breakpoint_id: 1,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            ..Default::default()
        },
        host: "test-host".into(),
        exe: None,
        local: false,
    }))
}

fn dropped(status: &v1::ExportStatus, reason: DropReason) -> u64 {
    status
        .dropped
        .iter()
        .find(|d| d.reason == reason.as_str())
        .map_or(0, |d| d.count)
}

/// On the current-thread runtime the export task cannot run until the test awaits, so
/// exactly `EXPORT_QUEUE` items fit and every one past them is dropped as "queue full";
/// then the first batch waits on the collector for `EXPORT_TIMEOUT` and is dropped as
/// "export timed out", not "export failed".
#[tokio::test(flavor = "current_thread")]
async fn a_hung_collector_fills_the_queue_and_its_batches_time_out() {
    let (_collector, endpoint) = hung_collector();
    let (_dir, store) = store().await;
    let exporter = Exporter::start(&endpoint, store).unwrap();
    let extra = 100;
    let total = EXPORT_QUEUE + EXPORT_BATCH + extra;
    let started = Instant::now();
    for id in 0..total {
        exporter.send(item(id as u64));
    }
    // `send` never waits on the collector.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let status = exporter.status().unwrap();
    assert_eq!(
        dropped(&status, DropReason::QueueFull),
        (EXPORT_BATCH + extra) as u64,
        "{status:?}"
    );
    assert_eq!(dropped(&status, DropReason::Timeout), 0, "{status:?}");

    let waiting = Instant::now();
    let status = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = exporter.status().unwrap();
        if dropped(&status, DropReason::Timeout) > 0 {
            break status;
        }
        assert!(
            waiting.elapsed() < EXPORT_TIMEOUT + Duration::from_secs(5),
            "no timeout counted: {status:?}"
        );
    };
    // Not before EXPORT_TIMEOUT: the exporter's own (later) deadline did not win the race.
    assert!(waiting.elapsed() >= EXPORT_TIMEOUT - Duration::from_millis(200));
    assert_eq!(
        dropped(&status, DropReason::Timeout),
        EXPORT_BATCH as u64,
        "one batch of one span per snapshot: {status:?}"
    );
    assert_eq!(dropped(&status, DropReason::ExportFailed), 0, "{status:?}");
    assert_eq!(status.exported_spans, 0);
    let error = status.last_error.unwrap_or_default();
    assert!(error.contains("no answer within 3s"), "{error}");
    assert!(status.last_error_at.is_some());
}
