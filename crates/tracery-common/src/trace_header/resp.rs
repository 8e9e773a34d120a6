//! RESP mode of the trace-header parser: a Redis stream (replies on the receive path, a
//! command array on the hold path) carries a job's trace context as a key followed by its
//! value, either a JSON key in quotes (`{"uber-trace-id":"4bf9…:00f0…:0:1"}`, also with
//! backslash-escaped quotes) or a bulk string followed by the value as the next bulk string
//! (`HGETALL`, `HSET`, `XADD` fields).
//!
//! The scan is a tokenizer, not a RESP decoder: tokens end at `"`, `\r` and `\n`, and a
//! token whose lower-cased hash is a context name makes the next value token its value.
//! Between the key and its value it skips `:`, quotes, blanks, backslashes, line ends and a
//! `$<len>` line. The value is read with the HTTP path's digit and segment logic and
//! validated the same way. Loop-free per byte; state lives in [`ConnState`], so a context
//! split across reads is found.

use crate::trace::ORIGIN_JOB;

use super::{
    fnv_step, id_byte, lower, names, phase, start_value, store_ids, ConnState, Fed, FNV_OFFSET,
    RESP_SCAN_MAX,
};

/// Position in the RESP stream (kept in `ConnState::line`).
pub mod pos {
    /// In a token that may be a key.
    pub const KEY: u8 = 0;
    /// After a context key, before its value.
    pub const AFTER_KEY: u8 = 1;
    /// In the `$<len>` line between a bulk-string key and its value.
    pub const LEN_LINE: u8 = 2;
    /// In the value of a context key.
    pub const VALUE: u8 = 3;
    /// At the start of a read after a cut one: skipping the partial token.
    pub const SKIP_TOKEN: u8 = 4;
}

/// The B3 multi-key state (kept in `ConnState::resp_b3`): `x-b3-traceid` and
/// `x-b3-spanid` arrive as two keys, in either order.
pub mod b3 {
    /// Nothing pending.
    pub const NONE: u8 = 0;
    /// An `x-b3-spanid` was read; the next `x-b3-traceid` takes it.
    pub const SPAN_SEEN: u8 = 1;
    /// An `x-b3-traceid` was published without a span id; an `x-b3-spanid` completes it.
    pub const AWAIT_SPAN: u8 = 2;
}

/// True for the first byte of a RESP2/RESP3 value. HTTP methods start with letters.
#[inline(always)]
pub fn is_type_byte(c: u8) -> bool {
    matches!(
        c,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b'#'
            | b','
            | b'('
            | b'!'
            | b'='
            | b'%'
            | b'~'
            | b'>'
            | b'|'
    )
}

/// The connection's first byte was a RESP type byte: it is a Redis stream from now on.
#[inline(always)]
pub(super) fn enter(st: &mut ConnState) {
    st.phase = phase::RESP;
    st.line = pos::KEY;
    st.line_hash = FNV_OFFSET;
    st.resp_count = 1;
    st.resp_cut = 0;
    st.resp_b3 = b3::NONE;
    st.pending = ConnState::NEW.pending;
    st.pending.origin = ORIGIN_JOB;
}

/// Bytes of an outbound message that [`is_job_fetch`] looks at.
pub const JOB_FETCH_PEEK: usize = 32;

/// Whether a command array starting with `head` asks Redis for the next job: a blocking
/// pop (`BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`, `BLMPOP`, `BZPOPMIN`, `BZPOPMAX`,
/// `BZMPOP`) or a stream read (`XREAD`, `XREADGROUP`). A worker sending one has finished
/// the job it was serving. Fixed offsets and bounded loops only (it runs in the kernel).
#[inline(always)]
pub fn is_job_fetch(head: &[u8; JOB_FETCH_PEEK]) -> bool {
    // `*<count>\r\n$<len>\r\n<NAME>`: a count of up to 4 digits, a length of up to 2.
    if head[0] != b'*' {
        return false;
    }
    let mut i = 1;
    while i < 5 && head[i].is_ascii_digit() {
        i += 1;
    }
    if i == 1 || head[i] != b'\r' || head[i + 1] != b'\n' || head[i + 2] != b'$' {
        return false;
    }
    let start = i + 3;
    let mut j = start;
    while j < start + 2 && head[j].is_ascii_digit() {
        j += 1;
    }
    if j == start || head[j] != b'\r' || head[j + 1] != b'\n' {
        return false;
    }
    let n = j + 2;
    let up = |k: usize| head[n + k].to_ascii_uppercase();
    (up(0) == b'B' && matches!(up(1), b'L' | b'R' | b'Z'))
        || (up(0) == b'X' && up(1) == b'R' && up(2) == b'E' && up(3) == b'A' && up(4) == b'D')
}

/// A new read on a Redis stream: the scan bound starts over; after a cut read, the bytes
/// that were not scanned break the token, so the first partial one is skipped.
#[inline(always)]
pub(super) fn start_read(st: &mut ConnState) {
    if st.resp_cut != 0 {
        st.line = pos::SKIP_TOKEN;
        st.resp_cut = 0;
    }
    st.resp_count = 0;
}

/// Ends a token, a key, or a value.
#[inline(always)]
fn is_delim(c: u8) -> bool {
    c == b'"' || c == b'\r' || c == b'\n'
}

#[inline(always)]
fn is_context_key(h: u64) -> bool {
    h == names::TRACEPARENT
        || h == names::UBER
        || h == names::B3
        || h == names::B3_TRACE_ID
        || h == names::B3_SPAN_ID
}

/// One byte of a Redis stream.
#[inline(always)]
pub(super) fn byte(st: &mut ConnState, c: u8) -> Fed {
    if st.resp_count >= RESP_SCAN_MAX {
        st.resp_cut = 1;
        return Fed::Stop;
    }
    st.resp_count += 1;
    match st.line {
        pos::KEY => {
            if is_delim(c) {
                let h = st.line_hash;
                st.line_hash = FNV_OFFSET;
                if is_context_key(h) {
                    st.name_hash = h;
                    st.line = pos::AFTER_KEY;
                }
            } else if c != b'\\' {
                st.line_hash = fnv_step(st.line_hash, lower(c));
            }
        }
        pos::AFTER_KEY => match c {
            b'"' | b':' | b' ' | b'\t' | b'\r' | b'\n' | b'\\' => {}
            b'$' => st.line = pos::LEN_LINE,
            _ => {
                start_value(st);
                st.line = pos::VALUE;
                id_byte(st, c);
            }
        },
        pos::LEN_LINE => {
            if c == b'\n' {
                st.line = pos::AFTER_KEY;
            }
        }
        pos::VALUE => {
            if is_delim(c) || c == b'\\' {
                st.line = pos::KEY;
                st.line_hash = FNV_OFFSET;
                return value_end(st);
            }
            id_byte(st, c);
        }
        _ => {
            // SKIP_TOKEN
            if is_delim(c) {
                st.line = pos::KEY;
                st.line_hash = FNV_OFFSET;
            }
        }
    }
    Fed::More
}

/// A context key's value is complete: a valid one is published. Each context replaces the
/// one before (a reply's jobs are separate requests), except that B3's two keys combine.
#[inline(always)]
fn value_end(st: &mut ConnState) -> Fed {
    let h = st.name_hash;
    if h == names::B3_SPAN_ID {
        if st.bad != 0 || st.trace_digits != 16 || st.seg != 0 {
            return Fed::More;
        }
        st.pending.span_id = st.trace_lo.to_be_bytes();
        if st.resp_b3 == b3::AWAIT_SPAN {
            st.resp_b3 = b3::NONE;
            return Fed::Context;
        }
        st.resp_b3 = b3::SPAN_SEEN;
        return Fed::More;
    }
    let span_seen = st.resp_b3 == b3::SPAN_SEEN;
    let kept_span = st.pending.span_id;
    st.pending.span_id = [0; 8];
    if !store_ids(st, false) {
        st.pending.span_id = kept_span;
        return Fed::More;
    }
    st.resp_b3 = b3::NONE;
    if h == names::B3_TRACE_ID {
        if span_seen {
            st.pending.span_id = kept_span;
        } else {
            st.resp_b3 = b3::AWAIT_SPAN;
        }
    }
    st.pending.header_bits = 0;
    Fed::Context
}
