//! The kernel's streaming trace-header parser (HTTP/1.x, and RESP mode for Redis streams),
//! run on the host the way the receive and hold programs run it, and its user-space twins:
//! the trace-id and `--header` checks.
//!
//! Input: one byte of `--header` filter choice, one byte of split choice, then the
//! stream. Besides "no panic" (arithmetic overflow included: the kernel would wrap
//! silently), the parser must find the same traces however the stream is cut into
//! receives, as long as it never gives up on the stream: that is what lets it find a
//! header split across reads.

use tracery_common::{
    trace::TraceContext,
    trace_header::{
        feed_byte, header_filter_hash, scan_len, start_read, ConnState, Fed, HeaderFilters,
        NoFilters, TRACE_SCAN_MAX, TRACE_WINDOW,
    },
};

/// `--header` filters the receive path checks, as (line hash, bit).
struct Filters(Vec<(u64, u32)>);

impl HeaderFilters for Filters {
    fn bit(&self, line_hash: u64) -> Option<u32> {
        self.0
            .iter()
            .find(|(h, _)| *h == line_hash)
            .map(|(_, b)| *b)
    }
}

/// What one connection published, and whether the parser ever stopped following it.
#[derive(Default)]
struct Outcome {
    published: Vec<TraceContext>,
    stopped: bool,
}

/// Receives `reads` in order on one connection, as the `sys_exit` program does.
fn receive<'a>(reads: impl Iterator<Item = &'a [u8]>, filters: &Filters) -> Outcome {
    let mut st = ConnState::NEW;
    let mut out = Outcome::default();
    for bytes in reads {
        let n = scan_len(bytes.len() as u64);
        assert!(n <= u64::from(TRACE_SCAN_MAX));
        let head = || bytes.get(..4).map(|h| [h[0], h[1], h[2], h[3]]);
        let Some(start) = start_read(&mut st, n, head) else {
            continue;
        };
        assert!(
            start < n,
            "start_read offset {start} not inside the {n} bytes"
        );
        for &c in &bytes[start as usize..n as usize] {
            match feed_byte(&mut st, c, filters) {
                Fed::More => {}
                Fed::Headers | Fed::Context => out.published.push(st.pending),
                Fed::HeadersThenStop => {
                    out.published.push(st.pending);
                    out.stopped = true;
                    break;
                }
                Fed::Stop => {
                    out.stopped = true;
                    break;
                }
            }
        }
    }
    out
}

/// The trace an outbound message carries, as the hold program finds it.
fn outbound(bytes: &[u8]) -> TraceContext {
    let mut st = ConnState::NEW;
    for &c in bytes.iter().take(TRACE_WINDOW) {
        match feed_byte(&mut st, c, &NoFilters) {
            Fed::More => {}
            Fed::Headers | Fed::HeadersThenStop | Fed::Context => return st.pending,
            Fed::Stop => break,
        }
    }
    TraceContext::default()
}

/// One input (see the module docs for its layout).
pub fn run(data: &[u8]) {
    let [filter_pick, split, stream @ ..] = data else {
        return;
    };
    let filters = Filters(
        [("x-tenant", "7"), ("host", "orders"), ("b3", "1")]
            .iter()
            .enumerate()
            .filter(|(i, _)| filter_pick & (1 << i) != 0)
            .map(|(i, (name, value))| (header_filter_hash(name, value), i as u32))
            .collect(),
    );
    let whole = receive(std::iter::once(stream), &filters);
    // Cut the stream every `split + 1` bytes: a header split across receives.
    let step = usize::from(*split) + 1;
    let cut = receive(stream.chunks(step), &filters);
    if !whole.stopped && !cut.stopped {
        assert_eq!(
            whole.published, cut.published,
            "the traces differ when the stream arrives in {step}-byte receives"
        );
    }
    let _ = outbound(stream);

    // The user-space twins: what the CLI accepts as a trace id or a `--header`.
    let text = String::from_utf8_lossy(stream);
    if let Ok(id) = tracery_model::trace::parse_trace_id(&text) {
        let shown = tracery_model::trace::hex(&id);
        assert_eq!(tracery_model::trace::parse_trace_id(&shown).ok(), Some(id));
    }
    let _ = tracery_model::trace::normalize_trace_id(&text);
    if let Ok(m) = tracery_proto::trace::parse_header(&text) {
        assert!(tracery_model::trace::check_header(&m.name, &m.value).is_ok());
    }
}
