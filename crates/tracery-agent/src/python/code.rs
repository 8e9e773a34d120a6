//! CPython 3.11 code objects: names, local names, and the location table that maps
//! bytecode to lines (`Objects/locations.md` in CPython's source).

use std::io;

use super::{interpreter::V3_11, memory::Mem};

/// What Tracery needs of one code object.
#[derive(Clone, Debug)]
pub struct CodeInfo {
    /// Its address in the process.
    pub addr: u64,
    pub filename: String,
    pub name: String,
    pub qualname: String,
    pub firstlineno: u32,
    /// Number of parameters (positional, keyword-only, `*args`, `**kwargs`), which come
    /// first in `localsplus`.
    pub nargs: usize,
    /// Names of the `localsplus` slots.
    pub local_names: Vec<String>,
    /// Index of the `RESUME` instruction that starts the body.
    pub first_traceable: u32,
    /// `(first code unit, end code unit, line)` per location-table entry.
    pub lines: Vec<(u32, u32, Option<u32>)>,
}

/// `co_flags` bits that add a parameter slot.
const CO_VARARGS: u32 = 0x4;
const CO_VARKEYWORDS: u32 = 0x8;
/// `co_flags` and `co_kwonlyargcount` offsets (3.11).
const CODE_FLAGS: u64 = 48;
const CODE_KWONLY: u64 = 64;

impl CodeInfo {
    /// Reads the code object at `addr`.
    pub fn read(mem: &Mem, addr: u64) -> io::Result<Self> {
        let o = &V3_11;
        let ptr = |off: u64| mem.u64(addr + off);
        let firstlineno = mem.i32(addr + o.code_firstlineno)?.max(0) as u32;
        let linetable = ptr(o.code_linetable)?;
        let table_len = mem.u64(linetable + u64::from(o.kernel.var_size))? as usize;
        let table = mem.bytes(linetable + o.bytes_data, table_len.min(1 << 20))?;
        let names = mem
            .tuple(ptr(o.code_localsplusnames)?)?
            .into_iter()
            .map(|n| mem.str(n).unwrap_or_default())
            .collect();
        let flags = mem.i32(addr + CODE_FLAGS)? as u32;
        let nargs = mem.i32(addr + o.code_argcount)?.max(0) as usize
            + mem.i32(addr + CODE_KWONLY)?.max(0) as usize
            + usize::from(flags & CO_VARARGS != 0)
            + usize::from(flags & CO_VARKEYWORDS != 0);
        let first_traceable = mem.i32(addr + o.code_firsttraceable)?.max(0) as u32;
        Ok(Self {
            addr,
            filename: mem.str(ptr(o.code_filename)?)?,
            name: mem.str(ptr(o.code_name)?)?,
            qualname: mem.str(ptr(o.code_qualname)?)?,
            firstlineno,
            nargs,
            local_names: names,
            first_traceable,
            lines: parse_linetable(&table, firstlineno),
        })
    }

    /// Process address of code unit `index` (its `co_code_adaptive` word).
    pub fn unit_addr(&self, index: u32) -> u64 {
        self.addr + u64::from(V3_11.kernel.code_adaptive) + 2 * u64::from(index)
    }

    /// The code unit at process address `addr`, when it lies in this code object.
    pub fn unit_of(&self, addr: u64) -> Option<u32> {
        let base = self.addr + u64::from(V3_11.kernel.code_adaptive);
        let index = addr.checked_sub(base)? / 2;
        let end = self.lines.last().map_or(0, |l| l.1);
        (index < u64::from(end)).then_some(index as u32)
    }

    /// The line of code unit `index`.
    pub fn line_of(&self, index: u32) -> Option<u32> {
        self.lines
            .iter()
            .find(|(start, end, _)| (*start..*end).contains(&index))
            .and_then(|l| l.2)
    }

    /// Code units where `line` starts: the first unit of each run of entries on that line
    /// (a loop's condition, for example, can appear twice).
    pub fn line_starts(&self, line: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut prev: Option<u32> = None;
        for (start, _, l) in &self.lines {
            // Entries without a line (cleanup code) do not break a run.
            let Some(l) = *l else { continue };
            if l == line && prev != Some(line) && *start >= self.first_traceable {
                out.push(*start);
            }
            prev = Some(l);
        }
        out
    }

    /// Every line with code, sorted.
    pub fn code_lines(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.lines.iter().filter_map(|l| l.2).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Parses a 3.11 location table into `(start, end, line)` ranges of code units.
pub fn parse_linetable(table: &[u8], firstlineno: u32) -> Vec<(u32, u32, Option<u32>)> {
    let mut out = Vec::new();
    let mut line = i64::from(firstlineno);
    let mut unit = 0u32;
    let mut i = 0;
    let varint = |i: &mut usize| -> u64 {
        let mut val = 0u64;
        let mut shift = 0;
        while let Some(b) = table.get(*i) {
            *i += 1;
            val |= u64::from(b & 63) << shift;
            shift += 6;
            if b & 64 == 0 || shift > 60 {
                break;
            }
        }
        val
    };
    let svarint = |i: &mut usize| -> i64 {
        let v = varint(i);
        if v & 1 == 1 {
            -((v >> 1) as i64)
        } else {
            (v >> 1) as i64
        }
    };
    while let Some(&first) = table.get(i) {
        i += 1;
        let code = (first >> 3) & 15;
        let len = u32::from(first & 7) + 1;
        let this = match code {
            15 => None,
            14 => {
                line += svarint(&mut i);
                varint(&mut i); // end line delta
                varint(&mut i); // column + 1
                varint(&mut i); // end column + 1
                Some(line)
            }
            13 => {
                line += svarint(&mut i);
                Some(line)
            }
            10..=12 => {
                line += i64::from(code) - 10;
                i += 2;
                Some(line)
            }
            _ => {
                i += 1;
                Some(line)
            }
        };
        out.push((unit, unit + len, this.and_then(|l| u32::try_from(l).ok())));
        unit += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_table_forms() {
        // RESUME at line 1 (short form 0, 1 unit), then line 2 (one-line form 11, 2 units),
        // then no location (15, 1 unit), then line 5 (no-column form 13, delta +3).
        let table = [
            0x80,
            0x00, // code 0, len 1, column byte
            0x80 | (11 << 3) | 1,
            4,
            9,                // code 11, len 2: line +1
            0x80 | (15 << 3), // code 15, len 1
            0x80 | (13 << 3) | 2,
            6, // code 13, len 3: svarint 6 -> +3
        ];
        assert_eq!(
            parse_linetable(&table, 1),
            vec![
                (0, 1, Some(1)),
                (1, 3, Some(2)),
                (3, 4, None),
                (4, 7, Some(5))
            ]
        );
    }
}
