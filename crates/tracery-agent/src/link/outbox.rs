//! Hits on their way to the controller: numbered per breakpoint, held while the controller
//! is away, and kept after sending until they are old enough to count as delivered.
//!
//! `AgentLink` has no acknowledgements, so a hit counts as delivered once the stream has
//! stayed up for [`SETTLE`] after it was sent; everything younger is resent after a
//! reconnect, and the controller dedupes by (agent, breakpoint, sequence).
//!
//! The agent id survives restarts, so sequence numbers must too, or a restarted agent's
//! new hits would be taken for duplicates. Numbers are reserved in blocks of
//! [`RESERVE`] in a file under the data directory: one write per block, and after a crash
//! numbering resumes past the last reserved block.

use std::{
    collections::{BTreeMap, VecDeque},
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tracery_proto::v1;

/// Most hits held (unsent, or sent but not settled). Beyond it the oldest go: settled-enough
/// sent ones silently, unsent ones counted as drops.
pub const BUFFER_CAP: usize = 4096;
/// How long a stream must stay up after a hit was sent for the hit to count as delivered.
/// Longer than the keepalive takes to notice a dead connection (see `link.rs`).
pub const SETTLE: Duration = Duration::from_secs(30);
/// Sequence numbers reserved per write of the sequence file.
pub const RESERVE: u64 = 1024;

struct Held {
    hit: v1::Hit,
    sent_at: Option<Instant>,
}

/// The hits not known to be delivered, oldest first, and the per-breakpoint numbering.
#[derive(Default)]
pub struct Outbox {
    held: VecDeque<Held>,
    /// Last sequence number given, per breakpoint; kept across reconnects.
    sequence: BTreeMap<u64, u64>,
    /// Highest number reserved in `file`, per breakpoint.
    reserved: BTreeMap<u64, u64>,
    /// Where reservations are kept across restarts; `None` keeps them in memory only.
    file: Option<PathBuf>,
    /// Per breakpoint: unsent hits evicted because the buffer was full.
    pub dropped: BTreeMap<u64, u64>,
}

impl Outbox {
    /// An outbox whose numbering continues past what `file` reserved (lines of
    /// `BREAKPOINT_ID RESERVED`). A missing file starts every breakpoint at 1.
    pub fn open(file: &Path) -> Self {
        let mut reserved = BTreeMap::new();
        match fs::read_to_string(file) {
            Ok(text) => {
                for line in text.lines() {
                    let mut it = line.split_whitespace().map(str::parse::<u64>);
                    if let (Some(Ok(id)), Some(Ok(n))) = (it.next(), it.next()) {
                        reserved.insert(id, n);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %file.display(),
                error = %e,
                "cannot read hit sequence numbers; hits after this restart may be taken for duplicates"
            ),
        }
        Self {
            sequence: reserved.clone(),
            reserved,
            file: Some(file.to_path_buf()),
            ..Self::default()
        }
    }

    /// Numbers `snapshot` and holds it; returns the hit to send now.
    pub fn push(&mut self, snapshot: v1::Snapshot) -> v1::Hit {
        let id = snapshot.breakpoint_id;
        let seq = self.sequence.entry(id).or_default();
        *seq += 1;
        let seq = *seq;
        if seq > self.reserved.get(&id).copied().unwrap_or(0) {
            self.reserved.insert(id, seq + RESERVE - 1);
            self.save();
        }
        let hit = v1::Hit {
            sequence: seq,
            snapshot: Some(snapshot),
        };
        if self.held.len() >= BUFFER_CAP {
            if let Some(old) = self.held.pop_front() {
                if old.sent_at.is_none() {
                    let id = old.hit.snapshot.as_ref().map_or(0, |s| s.breakpoint_id);
                    *self.dropped.entry(id).or_default() += 1;
                }
            }
        }
        self.held.push_back(Held {
            hit: hit.clone(),
            sent_at: None,
        });
        hit
    }

    fn save(&self) {
        let Some(file) = &self.file else {
            return;
        };
        let text: String = self
            .reserved
            .iter()
            .map(|(id, n)| format!("{id} {n}\n"))
            .collect();
        // Written aside and renamed, so a crash never leaves a torn file.
        let tmp = file.with_extension("tmp");
        let r = file
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| fs::write(&tmp, text))
            .and_then(|()| fs::rename(&tmp, file));
        if let Err(e) = r {
            tracing::warn!(
                path = %file.display(),
                error = %e,
                "cannot store hit sequence numbers; hits after a restart may be taken for duplicates"
            );
        }
    }

    /// Marks the newest hit as sent (it was pushed and sent on a live stream).
    pub fn mark_last_sent(&mut self, now: Instant) {
        if let Some(h) = self.held.back_mut() {
            h.sent_at = Some(now);
        }
    }

    /// Every held hit, for resending on a new stream; all count as sent from `now`.
    pub fn resend(&mut self, now: Instant) -> Vec<v1::Hit> {
        self.held
            .iter_mut()
            .map(|h| {
                h.sent_at = Some(now);
                h.hit.clone()
            })
            .collect()
    }

    /// Forgets hits sent at least [`SETTLE`] ago on a stream that is still up.
    pub fn settle(&mut self, now: Instant) {
        while self
            .held
            .front()
            .and_then(|h| h.sent_at)
            .is_some_and(|t| now.duration_since(t) >= SETTLE)
        {
            self.held.pop_front();
        }
    }

    /// Hits held now.
    pub fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(bp: u64) -> v1::Snapshot {
        v1::Snapshot {
            breakpoint_id: bp,
            ..Default::default()
        }
    }

    #[test]
    fn numbers_per_breakpoint_and_resends_what_has_not_settled() {
        let mut o = Outbox::default();
        let t0 = Instant::now();
        assert_eq!(o.push(snap(1)).sequence, 1);
        o.mark_last_sent(t0);
        assert_eq!(o.push(snap(2)).sequence, 1);
        assert_eq!(o.push(snap(1)).sequence, 2);
        o.settle(t0 + SETTLE - Duration::from_millis(1));
        assert_eq!(o.len(), 3);
        let again: Vec<(u64, u64)> = o
            .resend(t0 + SETTLE)
            .iter()
            .map(|h| (h.snapshot.as_ref().unwrap().breakpoint_id, h.sequence))
            .collect();
        assert_eq!(again, vec![(1, 1), (2, 1), (1, 2)]);
        o.settle(t0 + SETTLE * 2);
        assert_eq!(o.len(), 0);
        assert_eq!(o.push(snap(1)).sequence, 3, "numbering survives resends");
    }

    #[test]
    fn numbering_continues_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sequences");
        let mut o = Outbox::open(&file);
        assert_eq!(o.push(snap(5)).sequence, 1);
        assert_eq!(o.push(snap(5)).sequence, 2);
        drop(o); // a crash: no shutdown write
        let mut o = Outbox::open(&file);
        assert_eq!(o.push(snap(5)).sequence, RESERVE + 1);
        assert_eq!(o.push(snap(6)).sequence, 1);
    }

    #[test]
    fn overflow_counts_only_unsent_hits() {
        let mut o = Outbox::default();
        o.push(snap(1));
        o.mark_last_sent(Instant::now());
        for _ in 1..BUFFER_CAP {
            o.push(snap(2));
        }
        o.push(snap(2)); // evicts the sent one: not a drop
        assert!(o.dropped.is_empty());
        o.push(snap(2)); // evicts an unsent one
        assert_eq!(o.dropped.get(&2), Some(&1));
        assert_eq!(o.len(), BUFFER_CAP);
    }
}
