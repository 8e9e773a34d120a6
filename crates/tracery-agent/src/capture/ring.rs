//! Draining the ring buffer of hit records.

use std::{
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use aya::maps::{Array, MapData, RingBuf};
use tracery_common::{HitHeader, READER_BATCH_MS};

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

/// A batch this large means the reader is behind: drain again at once.
const FULL_BATCH: usize = 256;

/// Reads hits from the kernel ring buffer.
pub struct HitReader {
    ring: RingBuf<MapData>,
    /// One `u64`: raised while this reader blocks, so the kernel wakes it for a record.
    idle: Array<MapData, u64>,
    /// Records that could not be parsed (a version mismatch; counted, never silent).
    pub malformed: u64,
    /// Records the last poll returned: some, and the next one batches instead of blocking.
    last_batch: usize,
}

impl HitReader {
    /// Wraps the ring buffer and idle flag taken by [`crate::ProbeTable::take_reader`].
    pub(crate) fn new(ring: RingBuf<MapData>, idle: Array<MapData, u64>) -> Self {
        Self {
            ring,
            idle,
            malformed: 0,
            last_batch: 0,
        }
    }

    /// Waits up to `timeout` for records, then returns every record available.
    ///
    /// Idle, it blocks on the ring with its idle flag raised, so the kernel wakes it for
    /// the next record. After a small batch it first lets records accumulate for
    /// `READER_BATCH_MS` with the flag down, so a stream of hits costs no wake-up per
    /// record; after a full batch it drains again at once.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<RawHit>, AgentError> {
        let deadline = Instant::now() + timeout;
        // After a small batch, let records accumulate; after a large one the reader is
        // behind, and sleeping would only let the ring fill.
        if self.last_batch > 0 && self.last_batch < FULL_BATCH {
            std::thread::sleep(timeout.min(Duration::from_millis(READER_BATCH_MS)));
        }
        loop {
            let hits = self.drain();
            self.last_batch = hits.len();
            let now = Instant::now();
            if !hits.is_empty() || now >= deadline {
                return Ok(hits);
            }
            // Raised before blocking: a record written after the drain above finds it up
            // and wakes us; one written before makes the ring readable at once.
            self.set_idle(true)?;
            let waited = sys::wait_readable(self.ring.as_raw_fd(), deadline - now);
            self.set_idle(false)?;
            waited.map_err(|source| AgentError::Io {
                action: "waiting for the hit ring buffer",
                source,
            })?;
        }
    }

    fn set_idle(&mut self, idle: bool) -> Result<(), AgentError> {
        self.idle
            .set(0, u64::from(idle), 0)
            .map_err(|e| AgentError::Map {
                map: tracery_common::names::READER_IDLE,
                source: Some(Box::new(e)),
            })
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
