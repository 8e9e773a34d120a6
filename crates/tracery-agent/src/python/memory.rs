//! Reading CPython objects from another process's memory (read only), for finding code
//! objects at attach time. Values at a hit are read by the kernel instead (see `decode`).

use std::io;

use tracery_common::python::type_flags;

use super::interpreter::V3_11;

/// Longest string read from the interpreter (file names, qualified names).
const MAX_STR: usize = 4096;
/// Most items read from one tuple or dict while walking modules.
const MAX_ITEMS: u64 = 1 << 16;

/// Another process's memory, through `process_vm_readv`.
#[derive(Clone, Copy, Debug)]
pub struct Mem {
    pid: u32,
}

impl Mem {
    pub fn new(pid: u32) -> Self {
        Self { pid }
    }

    /// `len` bytes at `addr`; an error unless all of them could be read.
    pub fn bytes(&self, addr: u64, len: usize) -> io::Result<Vec<u8>> {
        if addr == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "null pointer"));
        }
        let mut buf = vec![0; len];
        let n = crate::sys::process_vm_read(self.pid, addr, &mut buf)?;
        if n < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("only {n} of {len} bytes at {addr:#x}"),
            ));
        }
        Ok(buf)
    }

    pub fn u64(&self, addr: u64) -> io::Result<u64> {
        let b = self.bytes(addr, 8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn i32(&self, addr: u64) -> io::Result<i32> {
        let b = self.bytes(addr, 4)?;
        Ok(i32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    /// `tp_flags` of an object's type.
    pub fn type_flags(&self, obj: u64) -> io::Result<u64> {
        let ty = self.u64(obj + u64::from(V3_11.kernel.object_type))?;
        self.u64(ty + u64::from(V3_11.kernel.type_flags))
    }

    /// The name of an object's type (`tp_name`).
    pub fn type_name(&self, obj: u64) -> io::Result<String> {
        let ty = self.u64(obj + u64::from(V3_11.kernel.object_type))?;
        let name = self.u64(ty + u64::from(V3_11.kernel.type_name))?;
        self.c_str(name, 128)
    }

    fn c_str(&self, addr: u64, max: usize) -> io::Result<String> {
        let mut buf = vec![0; max];
        let n = crate::sys::process_vm_read(self.pid, addr, &mut buf)?;
        buf.truncate(n);
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    }

    /// A `str` object's text.
    pub fn str(&self, obj: u64) -> io::Result<String> {
        if self.type_flags(obj)? & type_flags::UNICODE == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a str"));
        }
        let head = self.bytes(obj, V3_11.compact_data as usize)?;
        let (text, _) = decode_str(&head, |addr, len| self.bytes(addr, len).ok(), obj, MAX_STR);
        text.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a compact str"))
    }

    /// A tuple's items.
    pub fn tuple(&self, obj: u64) -> io::Result<Vec<u64>> {
        let n = self
            .u64(obj + u64::from(V3_11.kernel.var_size))?
            .min(MAX_ITEMS);
        let b = self.bytes(obj + u64::from(V3_11.kernel.tuple_items), 8 * n as usize)?;
        Ok(words(&b))
    }

    /// A dict's `(key, value)` pairs (combined or split), in entry order.
    pub fn dict_items(&self, dict: u64) -> io::Result<Vec<(u64, u64)>> {
        let k = &V3_11.kernel;
        let keys = self.u64(dict + u64::from(k.dict_keys))?;
        let values = self.u64(dict + u64::from(k.dict_values))?;
        self.keys_items(keys, values)
    }

    fn keys_items(&self, keys: u64, values: u64) -> io::Result<Vec<(u64, u64)>> {
        let k = &V3_11.kernel;
        let head = self.bytes(keys, k.keys_indices as usize)?;
        let log2_index = head[k.keys_log2_index_bytes as usize];
        let kind = head[k.keys_kind as usize];
        let n = word_at(&head, k.keys_nentries as usize).min(MAX_ITEMS);
        let entries = keys + u64::from(k.keys_indices) + (1u64 << (log2_index & 31));
        let esize = if kind == 0 { 3 } else { 2 };
        let b = words(&self.bytes(entries, 8 * esize * n as usize)?);
        let vals = if values != 0 {
            words(&self.bytes(values, 8 * n as usize)?)
        } else {
            Vec::new()
        };
        let koff = if kind == 0 { 1 } else { 0 };
        Ok((0..n as usize)
            .filter_map(|i| {
                let key = b[i * esize + koff];
                let value = if values != 0 {
                    vals[i]
                } else {
                    b[i * esize + koff + 1]
                };
                (key != 0 && value != 0).then_some((key, value))
            })
            .collect())
    }
}

fn words(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// The little-endian word at `off` of `b` (0 past its end).
pub fn word_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map_or(0, |c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
}

/// Decodes a `str` from its first bytes (`head`, at least the compact header), reading
/// the rest with `more(addr, len)` when given. Returns the text (up to `max` characters)
/// and whether it was cut. `None` for a non-compact (legacy) string.
pub fn decode_str(
    head: &[u8],
    more: impl Fn(u64, usize) -> Option<Vec<u8>>,
    obj: u64,
    max: usize,
) -> (Option<String>, bool) {
    let length = word_at(head, 16) as usize;
    let state = head.get(V3_11.unicode_state as usize).copied().unwrap_or(0) as u32;
    // state: interned:2, kind:3, compact:1, ascii:1 (Include/cpython/unicodeobject.h).
    let kind = (state >> 2) & 7;
    let compact = state >> 5 & 1 == 1;
    let ascii = state >> 6 & 1 == 1;
    if !compact || kind == 0 {
        return (None, false);
    }
    let data_at = if ascii {
        V3_11.ascii_data
    } else {
        V3_11.compact_data
    } as usize;
    let chars = length.min(max);
    let unit = kind as usize;
    let want = chars * unit;
    let data: Vec<u8> = if head.len() >= data_at + want {
        head[data_at..data_at + want].to_vec()
    } else if let Some(b) = more(obj + data_at as u64, want) {
        b
    } else {
        let have = head.len().saturating_sub(data_at) / unit * unit;
        head[data_at.min(head.len())..data_at.min(head.len()) + have].to_vec()
    };
    let text: String = match unit {
        1 => data.iter().map(|b| char::from(*b)).collect(),
        2 => data
            .chunks_exact(2)
            .map(|c| {
                char::from_u32(u32::from(u16::from_le_bytes([c[0], c[1]]))).unwrap_or('\u{fffd}')
            })
            .collect(),
        _ => data
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')
            })
            .collect(),
    };
    let cut = text.chars().count() < length;
    (Some(text), cut)
}
