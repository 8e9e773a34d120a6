//! Draining the ring buffer of hit records.

use std::{
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use tracery_common::{HitHeader, READER_POLL_MS};

use crate::{error::AgentError, sys};

/// One hit as the kernel wrote it: header, plan data and the stack copy.
#[derive(Clone, Debug)]
pub struct RawHit {
    pub header: HitHeader,
    /// Captured variable data; offsets as in the plan.
    pub data: Vec<u8>,
    /// User stack from `rsp` upwards.
    pub stack: Vec<u8>,
}

impl RawHit {
    /// Splits a record into its parts; `None` for a record too short to be one of ours.
    pub fn parse(record: &[u8]) -> Option<Self> {
        let header: HitHeader = sys::read_record(record)?;
        let body = &record[HitHeader::SIZE..];
        let data_len = header.data_len as usize;
        let stack_off = header.stack_offset as usize;
        let stack_len = header.stack_len as usize;
        let data = body.get(..data_len)?.to_vec();
        let stack = body
            .get(stack_off..stack_off.checked_add(stack_len)?)?
            .to_vec();
        Some(Self {
            header,
            data,
            stack,
        })
    }
}

/// Reads hits from the kernel ring buffer.
pub struct HitReader {
    ring: RingBuf<MapData>,
    /// Records that could not be parsed (a version mismatch; counted, never silent).
    pub malformed: u64,
}

impl HitReader {
    /// Wraps the ring buffer taken from [`crate::ProbeTable::take_ring`].
    pub fn new(ring: RingBuf<MapData>) -> Self {
        Self { ring, malformed: 0 }
    }

    /// Waits up to `timeout` for records, then returns every record available.
    ///
    /// The kernel wakes the reader only once a backlog builds (see
    /// `tracery_common::RING_WAKE_BYTES`), so this also looks every
    /// `READER_POLL_MS` milliseconds.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<RawHit>, AgentError> {
        let deadline = Instant::now() + timeout;
        let interval = Duration::from_millis(READER_POLL_MS);
        loop {
            let hits = self.drain();
            let now = Instant::now();
            if !hits.is_empty() || now >= deadline {
                return Ok(hits);
            }
            sys::wait_readable(self.ring.as_raw_fd(), (deadline - now).min(interval)).map_err(
                |source| AgentError::Io {
                    action: "waiting for the hit ring buffer",
                    source,
                },
            )?;
        }
    }

    fn drain(&mut self) -> Vec<RawHit> {
        let mut hits = Vec::new();
        while let Some(item) = self.ring.next() {
            match RawHit::parse(&item) {
                Some(h) => hits.push(h),
                None => self.malformed += 1,
            }
        }
        hits
    }
}
