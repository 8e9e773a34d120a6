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
    pub fn frames(&self, pc: ObjAddr, is_return_address: bool) -> Vec<Frame> {
        let probe = if is_return_address {
            pc.0.saturating_sub(1)
        } else {
            pc.0
        };
        let mut found: Vec<(Option<String>, Option<String>, Option<u32>)> = Vec::new();
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
                found.push((function, file, line));
            }
        }
        if found.is_empty() {
            found.push((None, None, None));
        }
        let last = found.len() - 1;
        if found[last].0.is_none() {
            found[last].0 = self.symbol_at(probe);
        }
        found
            .into_iter()
            .enumerate()
            .map(|(i, (function, file, line))| Frame {
                function: function.unwrap_or_else(|| "??".to_string()),
                file,
                line,
                address: pc,
                inlined: i < last,
            })
            .collect()
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
        let i = self
            .symbols
            .partition_point(|s| s.address.0 <= addr)
            .checked_sub(1)?;
        let s = &self.symbols[i];
        (s.size == 0 || addr < s.address.0 + s.size).then(|| demangle(&s.name))
    }
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
