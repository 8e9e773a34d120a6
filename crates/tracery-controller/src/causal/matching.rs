//! Which receive got which send's bytes: by connection and byte range, never by clock.
//!
//! A send on `A->B` and a receive on the same connection seen from `B` (its local and
//! remote swapped) carried the same bytes when their byte ranges overlap. Both ends count
//! bytes in the sender's TCP sequence space, so the ranges compare directly; a send whose
//! sequence number is unknown (held by a freeze: its bytes left later, through the hold
//! keeper) is matched by its place among the connection's other such bytes, each side in
//! its own order.

use std::collections::BTreeMap;

use super::Message;

/// One message's bytes on a connection: its id and `[start, end)`.
#[derive(Clone, Copy, Debug)]
struct Span {
    id: i64,
    start: i64,
    end: i64,
}

/// A connection's sends and receives.
type Sides<'a> = (Vec<&'a Message>, Vec<&'a Message>);

/// `(send id, receive id)` of every send and receive that carried the same bytes.
pub(super) fn pairs(messages: &[Message]) -> Vec<(i64, i64)> {
    // Connection as the bytes went: (sender's end, receiver's end).
    let mut conns: BTreeMap<(&str, &str), Sides<'_>> = BTreeMap::new();
    for m in messages {
        if m.kind == "send" {
            conns
                .entry((&m.local_addr, &m.remote_addr))
                .or_default()
                .0
                .push(m);
        } else {
            conns
                .entry((&m.remote_addr, &m.local_addr))
                .or_default()
                .1
                .push(m);
        }
    }
    let mut out = Vec::new();
    for (sends, recvs) in conns.values() {
        if sends.is_empty() || recvs.is_empty() {
            continue;
        }
        let base = sends.iter().chain(recvs).find_map(|m| m.seq).unwrap_or(0);
        let by_seq = |list: &[&Message]| -> Vec<Span> {
            let mut v: Vec<Span> = list
                .iter()
                .filter_map(|m| {
                    // Relative to one of the connection's own numbers: wraps at 2^32.
                    let start = i64::from(m.seq?.wrapping_sub(base) as i32);
                    Some(Span {
                        id: m.id,
                        start,
                        end: start + i64::from(m.bytes),
                    })
                })
                .collect();
            v.sort_by_key(|s| (s.start, s.id));
            v
        };
        let matched = overlaps(&by_seq(sends), &by_seq(recvs));
        // Held sends: matched against the receives no numbered send explains, in order.
        let unnumbered: Vec<&Message> = sends.iter().copied().filter(|m| m.seq.is_none()).collect();
        if !unnumbered.is_empty() {
            let explained: std::collections::HashSet<i64> = matched.iter().map(|p| p.1).collect();
            let rest: Vec<&Message> = recvs
                .iter()
                .copied()
                .filter(|m| !explained.contains(&m.id))
                .collect();
            out.extend(overlaps(&cumulative(&unnumbered), &cumulative(&rest)));
        }
        out.extend(matched);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Byte spans laid end to end in each side's own order (its clock, then store order).
fn cumulative(list: &[&Message]) -> Vec<Span> {
    let mut sorted = list.to_vec();
    sorted.sort_by_key(|m| (m.time, m.id));
    let mut at = 0i64;
    sorted
        .into_iter()
        .map(|m| {
            let s = Span {
                id: m.id,
                start: at,
                end: at + i64::from(m.bytes),
            };
            at = s.end;
            s
        })
        .collect()
}

/// Every overlapping (send, receive) pair of two lists of spans sorted by start.
fn overlaps(sends: &[Span], recvs: &[Span]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < sends.len() && j < recvs.len() {
        let (s, r) = (sends[i], recvs[j]);
        if s.start < r.end && r.start < s.end {
            out.push((s.id, r.id));
        }
        // The span that ends first has no more overlaps ahead.
        if s.end <= r.end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}
