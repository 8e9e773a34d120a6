//! Writing one slot's held bytes back through the sender's socket, and recycling the slot.
//!
//! The bytes stay queued in the sink until the hold is over: the keeper peeks at them and
//! journals how many it has written, so a keeper killed at any point leaves them for the
//! next one, which goes on from the first unwritten byte.

use std::{
    os::fd::{AsRawFd, RawFd},
    time::{Duration, Instant},
};

use tracery_common::hold::{HeldSock, SockKey};

use super::{
    journal::{SlotRecord, SlotState},
    Keeper,
};
use crate::sys;

/// Most time one socket's release may take (a peer that stops reading).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Every byte the sink showed went out, yet the kernel still counts the hold: after this
/// long with nothing new in the sink, the count is stale and the hold ends. The kernel
/// redirects into the sink synchronously, so held bytes never take this long to show.
const RELEASE_QUIET: Duration = Duration::from_millis(500);
/// First size of a peek at a sink; doubled while the sink holds more.
const PEEK_MIN: usize = 64 << 10;
/// Most bytes of a sink looked at at once. Past it, written bytes are taken off the queue.
const PEEK_MAX: usize = 64 << 20;
/// Most bytes handed to one send.
const SEND_MAX: usize = 256 << 10;
/// Most reads that drain a sink (each takes up to `PEEK_MIN` bytes).
const DRAIN_READS: usize = 1 << 16;

/// The bytes queued in `sink` (at most `PEEK_MAX`), left in place; `None` on an error
/// other than an empty queue.
fn peek(sink: RawFd, have: usize) -> Option<Vec<u8>> {
    let mut len = (have.saturating_mul(2)).clamp(PEEK_MIN, PEEK_MAX);
    // Doubling from PEEK_MIN reaches PEEK_MAX in 10 steps.
    for _ in 0..16 {
        let mut buf = vec![0u8; len];
        match sys::peek_nowait(sink, &mut buf) {
            Ok(n) if n < len || len == PEEK_MAX => {
                buf.truncate(n);
                return Some(buf);
            }
            Ok(_) => len = (len * 2).min(PEEK_MAX),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(Vec::new()),
            Err(_) => return None,
        }
    }
    None
}

impl Keeper {
    fn journal(&self, slot: u32, r: &SlotRecord) {
        if let Err(e) = self.journal.write(slot, r) {
            eprintln!("tracery-hold-keeper: journaling slot {slot}: {e}");
        }
    }

    /// Writes a socket's held bytes back through a duplicate of the sender's descriptor,
    /// until the kernel ends the hold, then recycles the slot. Goes on from where a killed
    /// keeper stopped. Returns (bytes of the hold written, bytes dropped).
    pub(super) fn release_socket(&mut self, conn: SockKey, h: &HeldSock) -> (u64, u64) {
        let slot = h.slot;
        let Some(sink) = self.sinks.get(slot as usize).map(|s| s.as_raw_fd()) else {
            return (0, 0);
        };
        let prev = self.journal.read(slot);
        let mut rec = if prev.state == SlotState::Releasing
            && sys::same_conn(&prev.conn, &conn)
            && prev.trace == h.trace_id
        {
            // Begun by a keeper that died: a send in flight is resolved by the kernel.
            SlotRecord {
                written: prev.resolved_written(self.maps.pushed()),
                sending: 0,
                ..prev
            }
        } else {
            SlotRecord {
                state: SlotState::Releasing,
                conn,
                trace: h.trace_id,
                pid_tgid: h.pid_tgid,
                fd: h.fd,
                ..SlotRecord::default()
            }
        };
        if h.pid_tgid != 0 {
            (rec.pid_tgid, rec.fd) = (h.pid_tgid, h.fd);
        }
        self.journal(slot, &rec);
        let _ = self.maps.releasing.insert(conn, 1, 0);
        let target =
            crate::freeze::connections::sender_socket((rec.pid_tgid >> 32) as u32, rec.fd, &conn);
        let started = Instant::now();
        let mut progress = started;
        let mut dropped = 0u64;
        // The stream's bytes [rec.consumed, rec.consumed + window.len()), as peeked.
        let mut window: Vec<u8> = Vec::new();
        let mut peeked_once = false;
        loop {
            let held = self.maps.held.get(&conn, 0).ok().filter(|x| x.slot == slot);
            let end = rec.consumed + window.len() as u64;
            // Peek again only when the kernel counted bytes not seen yet.
            let more = held.is_none_or(|x| x.held_bytes > end);
            if rec.written >= end && (more || !peeked_once) {
                if window.len() >= PEEK_MAX {
                    self.consume_written(sink, slot, &mut rec);
                    window.clear();
                }
                if let Some(w) = peek(sink, window.len()) {
                    if w.len() > window.len() {
                        progress = Instant::now();
                    }
                    window = w;
                }
                peeked_once = true;
            }
            let end = rec.consumed + window.len() as u64;
            if rec.written >= end {
                if held.is_none() {
                    break;
                }
                if progress.elapsed() > RELEASE_QUIET {
                    // Seen when the agent dies mid-freeze: the kernel's count of held bytes
                    // runs ahead of what reached the sink. Nothing is left to send.
                    let _ = self.maps.held.remove(&conn);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let Some(fd) = &target else {
                // Nobody can send on the socket any more; end the hold here.
                dropped += end - rec.written;
                let _ = self.maps.held.remove(&conn);
                break;
            };
            if started.elapsed() > RELEASE_TIMEOUT {
                // The peer stopped reading, or the socket went away under us: what is left
                // is reported as dropped, never silently lost.
                dropped += end - rec.written;
                let _ = self.maps.held.remove(&conn);
                break;
            }
            let from = (rec.written - rec.consumed) as usize;
            let chunk = &window[from..(from + SEND_MAX).min(window.len())];
            rec.sending = chunk.len() as u64;
            rec.pushed_before = self.maps.pushed();
            self.journal(slot, &rec);
            let sent = sys::send_nowait(fd.as_raw_fd(), chunk);
            rec.sending = 0;
            match sent {
                Ok(n) => {
                    rec.written += n as u64;
                    progress = Instant::now();
                    self.journal(slot, &rec);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.journal(slot, &rec);
                    let _ = sys::wait_writable(fd.as_raw_fd(), Duration::from_millis(50));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => self.journal(slot, &rec),
                Err(_) => {
                    // The connection is broken (reset, closed): its bytes cannot go out.
                    self.journal(slot, &rec);
                    dropped += end - rec.written;
                    let _ = self.maps.held.remove(&conn);
                    break;
                }
            }
        }
        let _ = self.maps.releasing.remove(&conn);
        self.recycle(slot);
        (rec.written, dropped)
    }

    /// Takes the written prefix of a hold larger than `PEEK_MAX` off the sink's queue.
    /// A keeper killed between a read and its journal entry leaves that one read's count
    /// unknown: the only window in which a kill can cost bytes, for holds this large.
    fn consume_written(&mut self, sink: RawFd, slot: u32, rec: &mut SlotRecord) {
        let mut scratch = vec![0u8; PEEK_MIN];
        for _ in 0..DRAIN_READS {
            let left = rec.written - rec.consumed;
            if left == 0 {
                return;
            }
            let n = (left as usize).min(scratch.len());
            match sys::recv_nowait(sink, &mut scratch[..n]) {
                Ok(0) | Err(_) => return,
                Ok(got) => {
                    rec.consumed += got as u64;
                    self.journal(slot, rec);
                }
            }
        }
    }

    /// Empties slot `slot`'s sink (its hold is over, every byte written or dropped) and
    /// gives the slot back to the kernel. Journaled step by step: a keeper killed while
    /// draining drains again; one killed around the push leaves the slot out of use.
    pub(super) fn recycle(&mut self, slot: u32) {
        let Some(sink) = self.sinks.get(slot as usize).map(|s| s.as_raw_fd()) else {
            return;
        };
        let mut rec = self.journal.read(slot);
        rec.state = SlotState::Draining;
        self.journal(slot, &rec);
        let mut scratch = vec![0u8; PEEK_MIN];
        for _ in 0..DRAIN_READS {
            match sys::recv_nowait(sink, &mut scratch) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        rec.state = SlotState::Pushing;
        self.journal(slot, &rec);
        let _ = self.maps.free.push(slot, 0);
        self.journal(slot, &SlotRecord::default());
    }
}
