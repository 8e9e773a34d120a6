//! Addresses to source frames, inlined calls included.

use std::sync::Arc;

use serde::Serialize;

use crate::{
    address::{LoadBias, ObjAddr, ProcAddr},
    binary::{Binary, Reader, Symbol},
    error::BinaryError,
    symbols::demangle,
};

/// One source-level frame. An address inside inlined code gives several, innermost first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// Demangled: `orders::process_order`, `main.processOrder`; `??` when nothing names it.
    pub function: String,
    /// Full path of the source file, when the DWARF has a line for the address.
    pub file: Option<String>,
    /// The source line: for an outer frame of inlined code, the line of the call.
    pub line: Option<u32>,
    /// The pc or return address this frame was found at (not adjusted).
    pub address: ObjAddr,
    /// True for a frame that exists only as an inlined call inside the next one.
    pub inlined: bool,
}

/// Symbolizes addresses of one binary.
///
/// It owns an `addr2line::Context`: creating one parses unit headers only, but each unit's
/// line table and function list is parsed the first time an address in it is looked up
/// and then kept, so memory grows to roughly the size of the DWARF. Build one per binary
/// and keep it for as long as that binary is probed. It is `Send` but not `Sync`
/// (addr2line fills its caches through `OnceCell`): share it behind a `Mutex`.
pub struct Symbolizer {
    /// `None` when the DWARF could not be indexed: ELF symbols alone name the frames.
    context: Option<addr2line::Context<Reader>>,
    /// ELF symbols, by address, for code without DWARF (shared with the [`Binary`]).
    symbols: Arc<[Symbol]>,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("symbols", &self.symbols.len())
            .finish_non_exhaustive()
    }
}

impl Symbolizer {
    /// Builds the symbolizer for `binary` (see the type docs for the cost).
    pub fn new(binary: &Binary) -> Result<Self, BinaryError> {
        let dwarf = share_sections(binary.dwarf());
        let context =
            addr2line::Context::from_dwarf(dwarf).map_err(|source| BinaryError::Dwarf {
                path: binary.debug_path().to_path_buf(),
                source,
            })?;
        Ok(Self {
            context: Some(context),
            symbols: binary.shared_symbols(),
        })
    }

    /// A symbolizer that names frames by ELF symbol only: no file, line or inlined frame.
    pub fn symbols_only(binary: &Binary) -> Self {
        Self {
            context: None,
            symbols: binary.shared_symbols(),
        }
    }

    /// The frames at `pc`, innermost first. A return address is looked up one byte back,
    /// inside the call instruction, so the caller's line is the line of the call.
    ///
    /// Where the DWARF names a file but no line (a line-0 row, or an inlined call whose
    /// `DW_AT_call_line` is 0 because the compiler merged two call sites), the frame gets
    /// the nearest line before it in the same file and function; see [`Self::line_before`].
    pub fn frames(&self, pc: ObjAddr, is_return_address: bool) -> Vec<Frame> {
        let probe = if is_return_address {
            pc.0.saturating_sub(1)
        } else {
            pc.0
        };
        let mut found: Vec<Found> = Vec::new();
        let iter = self
            .context
            .as_ref()
            .and_then(|c| c.find_frames(probe).skip_all_loads().ok());
        if let Some(mut iter) = iter {
            while let Ok(Some(f)) = iter.next() {
                let function = f
                    .function
                    .as_ref()
                    .and_then(|n| n.raw_name().ok())
                    .map(|n| demangle(&n));
                let (file, line) = f
                    .location
                    .map_or((None, None), |l| (l.file.map(str::to_string), l.line));
                found.push(Found {
                    function,
                    file,
                    line,
                    die: f.dw_die_offset,
                });
            }
        }
        self.fill_missing_lines(probe, &mut found);
        if found.is_empty() {
            found.push(Found::default());
        }
        let last = found.len() - 1;
        if found[last].function.is_none() {
            found[last].function = self.symbol_at(probe);
        }
        found
            .into_iter()
            .enumerate()
            .map(|(i, f)| Frame {
                function: f.function.unwrap_or_else(|| "??".to_string()),
                file: f.file,
                line: f.line,
                address: pc,
                inlined: i < last,
            })
            .collect()
    }

    /// Gives a line to each frame that has a file but none.
    ///
    /// The innermost frame's own row says line 0 (code the compiler attributes to no line:
    /// cleanup paths, calls that never return): the search ends at `probe`. An outer
    /// frame's call line is 0: the search ends where the inlined callee's code containing
    /// `probe` begins. Either way the line taken is that of the nearest earlier row whose
    /// innermost frame is this frame's function at this frame's inlining depth: its own
    /// code, never a callee's rows that happen to lie in the same file.
    fn fill_missing_lines(&self, probe: u64, found: &mut [Found]) {
        let Some(ctx) = &self.context else {
            return;
        };
        let outermost = found.len().saturating_sub(1);
        for i in 0..found.len() {
            if found[i].line.is_some() || found[i].file.is_none() {
                continue;
            }
            let end = match i {
                0 => Some(probe.saturating_add(1)),
                _ => found[i - 1]
                    .die
                    .and_then(|die| inline_range_start(ctx, probe, die)),
            };
            let own = Own {
                depth: outermost - i,
                function: found[i].function.as_deref(),
                depth_is_innermost: i == 0,
            };
            let before = end.and_then(|end| self.line_before(ctx, probe, end, &own));
            if let Some((row_file, line)) = before {
                found[i].file = row_file.or(found[i].file.take());
                found[i].line = Some(line);
            }
        }
    }

    /// The file and line of the last row before `end` that has a line and lies in `own`'s
    /// code, searching back no further than the start of the function symbol holding
    /// `probe`, [`MAX_LINE_SEARCH`] bytes, or [`MAX_LINE_ROWS`] rows with a line.
    fn line_before(
        &self,
        ctx: &addr2line::Context<Reader>,
        probe: u64,
        end: u64,
        own: &Own<'_>,
    ) -> Option<(Option<String>, u32)> {
        let floor = end.saturating_sub(MAX_LINE_SEARCH);
        let start = self.symbol_start(probe).map_or(floor, |s| s.max(floor));
        let rows: Vec<_> = ctx
            .find_location_range(start, end)
            .ok()?
            .filter(|(addr, _, l)| *addr < end && l.line.is_some())
            .map(|(addr, _, l)| (addr, l.file, l.line))
            .collect();
        let mine = rows
            .iter()
            .rev()
            .take(MAX_LINE_ROWS)
            .find(|(addr, _, _)| own.holds(ctx, *addr));
        // An inlined function whose callee starts its code has no row of its own before
        // it: its first row after the probe is the nearest of its lines.
        let after = || {
            let sym_end = self
                .symbol_holding(probe)
                .filter(|s| s.size > 0)
                .map_or(probe.saturating_add(MAX_LINE_SEARCH), |s| {
                    s.address.0 + s.size
                });
            ctx.find_location_range(probe, sym_end)
                .ok()?
                .filter(|(addr, _, l)| *addr >= probe && l.line.is_some())
                .take(MAX_LINE_ROWS)
                .find(|(addr, _, _)| own.holds(ctx, *addr))
                .and_then(|(_, _, l)| Some((l.file.map(str::to_string), l.line?)))
        };
        let found = mine
            .and_then(|(_, f, line)| Some(((*f).map(str::to_string), (*line)?)))
            .or_else(after);
        // The innermost frame's code may have no row of its own with a line at all (a
        // landing pad inlined whole): the nearest line before it is still where execution
        // came from. An outer frame without a row of its own gets no line.
        found.or_else(|| {
            let (_, f, line) = rows.last().filter(|_| own.depth_is_innermost)?;
            Some(((*f).map(str::to_string), (*line)?))
        })
    }

    /// The frames of a whole unwound stack (`pcs[0]` the pc, the rest return addresses).
    pub fn stack(&self, bias: LoadBias, pcs: &[ProcAddr]) -> Vec<Frame> {
        pcs.iter()
            .enumerate()
            .flat_map(|(i, &pc)| self.frames(bias.to_obj(pc), i > 0))
            .collect()
    }

    /// The demangled ELF symbol holding `addr`.
    fn symbol_at(&self, addr: u64) -> Option<String> {
        self.symbol_holding(addr).map(|s| demangle(&s.name))
    }

    /// Where the sized ELF symbol holding `addr` starts.
    fn symbol_start(&self, addr: u64) -> Option<u64> {
        self.symbol_holding(addr)
            .filter(|s| s.size > 0)
            .map(|s| s.address.0)
    }

    fn symbol_holding(&self, addr: u64) -> Option<&Symbol> {
        let i = self
            .symbols
            .partition_point(|s| s.address.0 <= addr)
            .checked_sub(1)?;
        let s = &self.symbols[i];
        (s.size == 0 || addr < s.address.0 + s.size).then_some(s)
    }
}

/// How far back [`Symbolizer::line_before`] searches at most: larger than nearly every
/// function, small enough that a symbol-less address never scans a whole binary.
const MAX_LINE_SEARCH: u64 = 64 * 1024;

/// Rows [`Symbolizer::line_before`] examines at most, each costing one frame lookup.
const MAX_LINE_ROWS: usize = 512;

/// A frame's own code: addresses whose innermost frame is `function`, inlined `depth`
/// levels deep in the outermost function.
struct Own<'a> {
    depth: usize,
    function: Option<&'a str>,
    /// The frame is the innermost one at the probed address.
    depth_is_innermost: bool,
}

impl Own<'_> {
    fn holds(&self, ctx: &addr2line::Context<Reader>, addr: u64) -> bool {
        let Ok(mut frames) = ctx.find_frames(addr).skip_all_loads() else {
            return false;
        };
        let mut innermost = None;
        let mut n = 0;
        while let Ok(Some(f)) = frames.next() {
            if n == 0 {
                innermost = f
                    .function
                    .as_ref()
                    .and_then(|n| n.raw_name().ok())
                    .map(|n| demangle(&n));
            }
            n += 1;
        }
        n == self.depth + 1 && innermost.as_deref() == self.function
    }
}

/// One frame as addr2line reports it, before fallbacks.
#[derive(Default)]
struct Found {
    function: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    /// The function's or inlined call's DIE, in the unit holding the address.
    die: Option<gimli::UnitOffset<usize>>,
}

/// Where the range of the inlined call `die` that holds `probe` begins.
fn inline_range_start(
    ctx: &addr2line::Context<Reader>,
    probe: u64,
    die: gimli::UnitOffset<usize>,
) -> Option<u64> {
    let unit = ctx.find_dwarf_and_unit(probe).skip_all_loads()?;
    let entry = unit.entry(die).ok()?;
    let mut ranges = unit.die_ranges(&entry).ok()?;
    while let Ok(Some(r)) = ranges.next() {
        if (r.begin..r.end).contains(&probe) {
            return Some(r.begin);
        }
    }
    None
}

/// A second `Dwarf` over the same section bytes (the reader is a shared range, so
/// nothing is copied): addr2line wants its own, with its own abbreviation cache.
fn share_sections(d: &gimli::Dwarf<Reader>) -> gimli::Dwarf<Reader> {
    gimli::Dwarf {
        debug_abbrev: d.debug_abbrev.clone(),
        debug_addr: d.debug_addr.clone(),
        debug_aranges: d.debug_aranges.clone(),
        debug_info: d.debug_info.clone(),
        debug_line: d.debug_line.clone(),
        debug_line_str: d.debug_line_str.clone(),
        debug_macinfo: d.debug_macinfo.clone(),
        debug_macro: d.debug_macro.clone(),
        debug_names: d.debug_names.clone(),
        debug_str: d.debug_str.clone(),
        debug_str_offsets: d.debug_str_offsets.clone(),
        debug_types: d.debug_types.clone(),
        locations: d.locations.clone(),
        ranges: d.ranges.clone(),
        file_type: d.file_type,
        sup: d.sup.clone(),
        abbreviations_cache: gimli::AbbreviationsCache::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn caches_can_move_between_threads() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<super::Symbolizer>();
        send_sync::<crate::DebugIndex>();
        send_sync::<crate::StackUnwinder>();
    }
}
