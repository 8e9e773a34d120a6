//! One pass over a binary's DWARF that indexes what location resolution and listing need:
//! the source files, every line-table row, and every function and inlined-call range.
//!
//! Building a [`DebugIndex`] walks all compilation units (for a Go or Rust binary that is
//! mostly the runtime and standard library): it takes tens of milliseconds and a few MiB
//! per MiB of `.debug_line` + `.debug_info`. A caller that resolves many locations in one
//! binary builds it once and keeps it beside the [`Binary`]. A unit whose DWARF cannot be
//! parsed is skipped, so one bad unit never hides the rest of the program.

use std::{
    collections::HashMap,
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use gimli::{AttributeValue, DebugInfoOffset, Reader as _};

use crate::{
    binary::{Binary, Reader},
    lines::{LineTable, Row},
    symbols::{FnEntry, FunctionTable, NameInfo},
};

/// Index of a source file in [`DebugIndex::files`].
pub type FileId = u32;

/// Files, line rows and functions of one binary, for resolution and listing.
#[derive(Debug)]
pub struct DebugIndex {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) lines: LineTable,
    pub(crate) functions: FunctionTable,
}

impl DebugIndex {
    /// Indexes `binary`'s DWARF (see the module docs for the cost).
    pub fn new(binary: &Binary) -> Self {
        let mut b = Builder {
            binary,
            files: Vec::new(),
            file_ids: HashMap::new(),
            rows: Vec::new(),
            entries: Vec::new(),
            names: HashMap::new(),
        };
        let dwarf = binary.dwarf();
        let mut headers = dwarf.units();
        while let Ok(Some(header)) = headers.next() {
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            // Errors inside a unit keep what was read before them.
            let file_map = b.add_line_program(&unit).unwrap_or_default();
            let _ = b.add_functions(&unit, &file_map);
        }
        let Builder {
            mut files,
            mut rows,
            mut entries,
            names,
            ..
        } = b;
        // The vectors grew by doubling; the index lives as long as its binary.
        files.shrink_to_fit();
        rows.shrink_to_fit();
        entries.shrink_to_fit();
        Self {
            files,
            lines: LineTable::new(rows),
            functions: FunctionTable::new(entries, &names),
        }
    }

    /// The `.debug_info` offset of the concrete function whose code holds `addr`: where a
    /// plan for `addr` finds its unit without parsing the others.
    pub(crate) fn function_die(&self, addr: u64) -> Option<u64> {
        let i = self.functions.concrete_at(addr)?;
        let die = self.functions.entries.get(i)?.die?;
        Some(die.0 as u64)
    }

    /// The path of a file id; empty for a row whose file entry was unreadable.
    pub(crate) fn file(&self, id: FileId) -> &Path {
        self.files
            .get(id as usize)
            .map_or(Path::new(""), PathBuf::as_path)
    }
}

struct Builder<'a> {
    binary: &'a Binary,
    files: Vec<PathBuf>,
    file_ids: HashMap<PathBuf, FileId>,
    rows: Vec<Row>,
    entries: Vec<FnEntry>,
    names: HashMap<DebugInfoOffset, NameInfo>,
}

/// A unit's line-program file indices mapped to global file ids.
type FileMap = Vec<Option<FileId>>;

impl Builder<'_> {
    fn intern(&mut self, path: PathBuf) -> FileId {
        if let Some(&id) = self.file_ids.get(&path) {
            return id;
        }
        let id = self.files.len() as FileId;
        self.files.push(path.clone());
        self.file_ids.insert(path, id);
        id
    }

    /// True when `addr` lies in an executable PT_LOAD segment. Rows and ranges of code
    /// the linker discarded keep tombstone addresses (0 or -1) that fail this.
    fn is_code(&self, addr: u64) -> bool {
        self.binary
            .segments()
            .iter()
            .any(|s| s.executable && addr >= s.vaddr && addr < s.vaddr + s.memsz)
    }

    fn add_line_program(&mut self, unit: &gimli::Unit<Reader>) -> gimli::Result<FileMap> {
        let dwarf = self.binary.dwarf();
        let Some(program) = unit.line_program.clone() else {
            return Ok(Vec::new());
        };
        let header = program.header();
        // File index 0 is valid from DWARF 5 on; `header.file` handles both numberings.
        let count = header.file_names().len() as u64 + 1;
        let mut file_map = Vec::with_capacity(count as usize);
        for index in 0..count {
            let path = header
                .file(index)
                .and_then(|f| file_path(dwarf, unit, header, f).ok());
            file_map.push(path.map(|p| self.intern(p)));
        }
        let mut rows = program.rows();
        // Whether the current sequence lies in live code; decided by its first row.
        let mut live: Option<bool> = None;
        while let Some((_, row)) = rows.next_row()? {
            let address = row.address();
            let live_now = *live.get_or_insert_with(|| self.is_code(address));
            if row.end_sequence() {
                if live_now {
                    self.rows.push(Row::end(address));
                }
                live = None;
                continue;
            }
            if !live_now {
                continue;
            }
            let file = file_map
                .get(row.file_index() as usize)
                .copied()
                .flatten()
                .unwrap_or(FileId::MAX);
            let line = row.line().map_or(0, |l| l.get() as u32);
            self.rows.push(Row::new(
                address,
                file,
                line,
                row.is_stmt(),
                row.prologue_end(),
            ));
        }
        Ok(file_map)
    }

    fn add_functions(&mut self, unit: &gimli::Unit<Reader>, files: &FileMap) -> gimli::Result<()> {
        let dwarf = self.binary.dwarf();
        // Open scopes: (depth, namespace name or None, index of the enclosing function entry).
        let mut scopes: Vec<(isize, Option<String>, Option<usize>)> = Vec::new();
        let mut cursor = unit.entries();
        while let Some(entry) = cursor.next_dfs()? {
            let depth = entry.depth();
            while scopes.last().is_some_and(|s| s.0 >= depth) {
                scopes.pop();
            }
            let parent = scopes.iter().rev().find_map(|s| s.2);
            let tag = entry.tag();
            let offset = entry.offset().to_debug_info_offset(&unit.header);
            let mut pushed_fn = None;
            match tag {
                gimli::DW_TAG_namespace
                | gimli::DW_TAG_structure_type
                | gimli::DW_TAG_class_type
                | gimli::DW_TAG_union_type
                | gimli::DW_TAG_enumeration_type => {
                    let name = attr_str(dwarf, unit, entry, gimli::DW_AT_name)
                        .unwrap_or_else(|| "{anonymous}".to_string());
                    if entry.has_children() {
                        scopes.push((depth, Some(name), None));
                    }
                    continue;
                }
                gimli::DW_TAG_subprogram => {
                    let info = NameInfo {
                        name: attr_str(dwarf, unit, entry, gimli::DW_AT_name),
                        linkage: attr_str(dwarf, unit, entry, gimli::DW_AT_linkage_name).or_else(
                            || attr_str(dwarf, unit, entry, gimli::DW_AT_MIPS_linkage_name),
                        ),
                        namespace: scopes
                            .iter()
                            .filter_map(|s| s.1.as_deref())
                            .collect::<Vec<_>>()
                            .join("::"),
                        decl_file: file_attr(entry, gimli::DW_AT_decl_file, files),
                        decl_line: udata_attr(entry, gimli::DW_AT_decl_line),
                        origin: reference(unit, entry, gimli::DW_AT_specification)
                            .or_else(|| reference(unit, entry, gimli::DW_AT_abstract_origin)),
                    };
                    if let Some(o) = offset {
                        self.names.insert(o, info);
                    }
                    let ranges = self.ranges(unit, entry)?;
                    if !ranges.is_empty() {
                        let entry_pc = ranges.iter().map(|r| r.0).min().unwrap_or(0);
                        pushed_fn = Some(self.entries.len());
                        self.entries.push(FnEntry {
                            die: offset,
                            ranges: ranges.into_boxed_slice(),
                            entry_pc,
                            inlined: false,
                            parent,
                            call_file: None,
                            call_line: None,
                            name: Arc::from(""),
                            short: Arc::from(""),
                            linkage: None,
                            decl_file: None,
                            decl_line: None,
                        });
                    }
                }
                gimli::DW_TAG_inlined_subroutine => {
                    let ranges = self.ranges(unit, entry)?;
                    if !ranges.is_empty() {
                        let entry_pc = match entry.attr_value(gimli::DW_AT_entry_pc) {
                            Some(v) => dwarf.attr_address(unit, v).ok().flatten(),
                            None => None,
                        }
                        .unwrap_or_else(|| ranges.iter().map(|r| r.0).min().unwrap_or(0));
                        pushed_fn = Some(self.entries.len());
                        self.entries.push(FnEntry {
                            die: reference(unit, entry, gimli::DW_AT_abstract_origin),
                            ranges: ranges.into_boxed_slice(),
                            entry_pc,
                            inlined: true,
                            parent,
                            call_file: file_attr(entry, gimli::DW_AT_call_file, files),
                            call_line: udata_attr(entry, gimli::DW_AT_call_line),
                            name: Arc::from(""),
                            short: Arc::from(""),
                            linkage: None,
                            decl_file: None,
                            decl_line: None,
                        });
                    }
                }
                _ => {}
            }
            if entry.has_children() {
                scopes.push((depth, None, pushed_fn.or(parent)));
            }
        }
        Ok(())
    }

    /// The address ranges of a DIE that lie in live code, sorted.
    fn ranges(
        &self,
        unit: &gimli::Unit<Reader>,
        entry: &gimli::DebuggingInformationEntry<Reader>,
    ) -> gimli::Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        if high_pc_wraps(self.binary.dwarf(), unit, entry) {
            return Ok(out);
        }
        let mut iter = self.binary.dwarf().die_ranges(unit, entry)?;
        while let Some(r) = iter.next()? {
            if r.end > r.begin && self.is_code(r.begin) {
                out.push((r.begin, r.end));
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

/// Whether `entry`'s `DW_AT_high_pc`, given as a size, runs past 2^64 from its
/// `DW_AT_low_pc`. gimli's `die_ranges` adds the two unchecked (a panic in debug builds,
/// found by the fuzzer), so callers ask first and take such a DIE to cover no code. Reads
/// the attributes as `die_ranges` does: the last of each wins.
pub(crate) fn high_pc_wraps(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    entry: &gimli::DebuggingInformationEntry<Reader>,
) -> bool {
    let (mut low, mut size) = (None, None);
    for attr in entry.attrs() {
        match attr.name() {
            gimli::DW_AT_low_pc => low = dwarf.attr_address(unit, attr.value()).ok().flatten(),
            gimli::DW_AT_high_pc => {
                if let AttributeValue::Udata(v) = attr.value() {
                    size = Some(v);
                }
            }
            _ => {}
        }
    }
    matches!((low, size), (Some(l), Some(s)) if l.checked_add(s).is_none())
}

/// A string attribute of `entry` (a name, a linkage name), if readable.
pub(crate) fn attr_str(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    entry: &gimli::DebuggingInformationEntry<Reader>,
    name: gimli::DwAt,
) -> Option<String> {
    let value = entry.attr_value(name)?;
    let s = dwarf.attr_string(unit, value).ok()?;
    Some(s.to_string_lossy().ok()?.into_owned())
}

fn udata_attr(entry: &gimli::DebuggingInformationEntry<Reader>, name: gimli::DwAt) -> Option<u32> {
    entry
        .attr_value(name)?
        .udata_value()
        .and_then(|v| u32::try_from(v).ok())
}

fn file_attr(
    entry: &gimli::DebuggingInformationEntry<Reader>,
    name: gimli::DwAt,
    files: &FileMap,
) -> Option<FileId> {
    // gimli hands `DW_AT_decl_file` / `DW_AT_call_file` over as `FileIndex`.
    let index = match entry.attr_value(name)? {
        AttributeValue::FileIndex(i) => i,
        other => other.udata_value()?,
    };
    files.get(usize::try_from(index).ok()?).copied().flatten()
}

/// A reference attribute as a section offset, whether it is unit-relative or not.
fn reference(
    unit: &gimli::Unit<Reader>,
    entry: &gimli::DebuggingInformationEntry<Reader>,
    name: gimli::DwAt,
) -> Option<DebugInfoOffset> {
    match entry.attr_value(name)? {
        AttributeValue::UnitRef(o) => o.to_debug_info_offset(&unit.header),
        AttributeValue::DebugInfoRef(o) => Some(o),
        _ => None,
    }
}

/// The full path of a line-program file entry: compilation directory, include directory,
/// file name, with `.` and `..` folded lexically.
fn file_path(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    header: &gimli::LineProgramHeader<Reader>,
    file: &gimli::FileEntry<Reader>,
) -> gimli::Result<PathBuf> {
    let mut path = PathBuf::new();
    if let Some(dir) = &unit.comp_dir {
        path.push(dir.to_string_lossy()?.as_ref());
    }
    if let Some(dir) = file.directory(header) {
        // `push` of an absolute directory replaces what came before, as it should.
        path.push(dwarf.attr_string(unit, dir)?.to_string_lossy()?.as_ref());
    }
    path.push(
        dwarf
            .attr_string(unit, file.path_name())?
            .to_string_lossy()?
            .as_ref(),
    );
    Ok(normalize(&path))
}

/// Folds `.` and `..` components without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    out
}
