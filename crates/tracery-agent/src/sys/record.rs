//! Plain records read out of ring-buffer bytes.

/// Reads a plain record type from the start of a ring-buffer record.
pub fn read_record<T: aya::Pod>(record: &[u8]) -> Option<T> {
    if record.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: the slice holds at least size_of::<T>() bytes; `Pod` types are repr(C) with
    // only integer fields, so every bit pattern is valid; the read is unaligned-safe.
    Some(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<T>()) })
}
