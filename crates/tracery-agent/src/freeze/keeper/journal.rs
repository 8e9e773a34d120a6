//! The keeper's journal: per hold slot, how far its release got. It lives in a memfd the
//! agent also holds, so a keeper started after one was killed resumes each release at the
//! first byte not yet written, and finishes a slot left half-recycled.
//!
//! The held bytes themselves never leave the sink socket's queue before they are written
//! (the keeper only peeks at them), and the agent holds the sinks too: the journal only
//! has to say where the written prefix ends.

use std::{fs::File, os::unix::fs::FileExt};

use tracery_common::hold::SockKey;

/// Bytes of one slot's record. One `pwrite` of a record never crosses a page, so a
/// killed keeper leaves each record either old or new, never torn.
const RECORD: usize = 128;
const _: () = assert!(RECORD >= 4 + 48 + 16 + 8 + 4 + 4 * 8 && 4096 % RECORD == 0);

/// Where a slot is in its life: free -> (held by the kernel) -> releasing -> draining ->
/// pushing -> free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SlotState {
    /// In `FREE_SLOTS`, or taken by a hold the keeper has not begun to release.
    #[default]
    Free,
    /// Its bytes are being written back through the sender's socket.
    Releasing,
    /// Every byte went out (or was dropped); the sink's copy is being discarded.
    Draining,
    /// Drained; the slot is being pushed back to `FREE_SLOTS`. A keeper killed here
    /// cannot tell whether the push happened, so the slot is left out (never pushed twice).
    Pushing,
}

impl SlotState {
    fn word(self) -> u32 {
        match self {
            Self::Free => 0,
            Self::Releasing => 1,
            Self::Draining => 2,
            Self::Pushing => 3,
        }
    }

    fn from_word(w: u32) -> Self {
        match w {
            1 => Self::Releasing,
            2 => Self::Draining,
            3 => Self::Pushing,
            _ => Self::Free,
        }
    }
}

/// One slot's record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotRecord {
    pub state: SlotState,
    /// The held connection, its trace, and its sender (to find the socket again).
    pub conn: SockKey,
    pub trace: [u8; 16],
    pub pid_tgid: u64,
    pub fd: i32,
    /// Bytes of the slot's stream written back so far (the stream starts at the hold).
    pub written: u64,
    /// Bytes of the stream already taken off the sink's queue (all written before).
    pub consumed: u64,
    /// Length of a send in flight; 0 when none.
    pub sending: u64,
    /// The kernel's count of bytes the keeper pushed (`stat::PUSHED`) before that send:
    /// after a kill mid-send, the count now says how much of it went out.
    pub pushed_before: u64,
}

impl SlotRecord {
    /// Bytes written, the send in flight resolved by the kernel's count `pushed_now`.
    pub fn resolved_written(&self, pushed_now: u64) -> u64 {
        let in_flight = pushed_now
            .saturating_sub(self.pushed_before)
            .min(self.sending);
        self.written + in_flight
    }

    fn encode(&self) -> [u8; RECORD] {
        let mut b = [0u8; RECORD];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&self.state.word().to_le_bytes());
        let c = &self.conn;
        for w in [c.family, c.local_port, c.remote_port, c._pad]
            .iter()
            .chain(&c.local_ip)
            .chain(&c.remote_ip)
        {
            put(&w.to_le_bytes());
        }
        put(&self.trace);
        put(&self.pid_tgid.to_le_bytes());
        put(&self.fd.to_le_bytes());
        for v in [
            self.written,
            self.consumed,
            self.sending,
            self.pushed_before,
        ] {
            put(&v.to_le_bytes());
        }
        b
    }

    fn decode(b: &[u8; RECORD]) -> Self {
        let mut at = 0;
        let mut take = |n: usize| {
            let s = &b[at..at + n];
            at += n;
            s
        };
        let mut u32_ = || u32::from_le_bytes(take(4).try_into().expect("4 bytes"));
        let state = SlotState::from_word(u32_());
        let mut w = [0u32; 12];
        for x in &mut w {
            *x = u32_();
        }
        let conn = SockKey {
            family: w[0],
            local_port: w[1],
            remote_port: w[2],
            _pad: w[3],
            local_ip: [w[4], w[5], w[6], w[7]],
            remote_ip: [w[8], w[9], w[10], w[11]],
        };
        let mut take = |n: usize| {
            let s = &b[at..at + n];
            at += n;
            s
        };
        let trace: [u8; 16] = take(16).try_into().expect("16 bytes");
        let pid_tgid = u64::from_le_bytes(take(8).try_into().expect("8 bytes"));
        let fd = i32::from_le_bytes(take(4).try_into().expect("4 bytes"));
        let mut u64_ = || u64::from_le_bytes(take(8).try_into().expect("8 bytes"));
        Self {
            state,
            conn,
            trace,
            pid_tgid,
            fd,
            written: u64_(),
            consumed: u64_(),
            sending: u64_(),
            pushed_before: u64_(),
        }
    }
}

/// The journal file: `slots` records, all `Free` when the agent creates it.
pub struct Journal {
    file: File,
    slots: u32,
}

impl Journal {
    /// Bytes the agent must size the memfd to for `slots` slots.
    pub fn size(slots: u32) -> u64 {
        u64::from(slots) * RECORD as u64
    }

    /// The journal in `file`, sized by the agent.
    pub fn new(file: File, slots: u32) -> Self {
        Self { file, slots }
    }

    /// Slot `slot`'s record; `Free` when it cannot be read.
    pub fn read(&self, slot: u32) -> SlotRecord {
        let mut b = [0u8; RECORD];
        if slot >= self.slots || self.file.read_exact_at(&mut b, offset(slot)).is_err() {
            return SlotRecord::default();
        }
        SlotRecord::decode(&b)
    }

    /// Replaces slot `slot`'s record.
    pub fn write(&self, slot: u32, r: &SlotRecord) -> std::io::Result<()> {
        if slot >= self.slots {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        self.file.write_all_at(&r.encode(), offset(slot))
    }
}

fn offset(slot: u32) -> u64 {
    u64::from(slot) * RECORD as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = SlotRecord {
            state: SlotState::Releasing,
            conn: SockKey {
                family: 2,
                local_port: 40000,
                remote_port: 5432 << 16,
                _pad: 0,
                local_ip: [1, 2, 3, 4],
                remote_ip: [5, 6, 7, 8],
            },
            trace: [7; 16],
            pid_tgid: 42 << 32 | 43,
            fd: -1,
            written: 10,
            consumed: 3,
            sending: 5,
            pushed_before: 100,
        };
        assert_eq!(SlotRecord::decode(&r.encode()), r);
    }

    #[test]
    fn a_send_in_flight_counts_what_the_kernel_saw() {
        let r = SlotRecord {
            written: 10,
            sending: 5,
            pushed_before: 100,
            ..SlotRecord::default()
        };
        assert_eq!(r.resolved_written(100), 10, "killed before the send");
        assert_eq!(r.resolved_written(103), 13, "killed after a partial send");
        assert_eq!(r.resolved_written(105), 15, "killed after the send");
        assert_eq!(r.resolved_written(900), 15, "other counts never add more");
    }

    #[test]
    fn the_journal_keeps_records_in_a_memfd() {
        let fd = crate::sys::memfd(c"test-journal").unwrap();
        let file = File::from(fd);
        file.set_len(Journal::size(4)).unwrap();
        let j = Journal::new(file, 4);
        assert_eq!(j.read(3), SlotRecord::default());
        let r = SlotRecord {
            state: SlotState::Draining,
            written: 9,
            ..SlotRecord::default()
        };
        j.write(3, &r).unwrap();
        assert_eq!(j.read(3), r);
        assert!(j.write(4, &r).is_err());
    }
}
