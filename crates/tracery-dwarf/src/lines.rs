//! The line table of a whole program: which source lines have code, and where.
//!
//! Rows keep their table order (a "run" is a stretch of consecutive rows of one line inside
//! one sequence) and are also sorted by address for lookups. [`lines`] lists, for one source
//! file, every line that has code, for `tracery-ctl symbols --lines FILE`.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    address::ObjAddr,
    binary::Binary,
    index::{normalize, DebugIndex, FileId},
    resolve::ResolveError,
};

// Row flags, in the top bits of `Row::line_flags`.
const STMT: u32 = 1 << 31;
const PROLOGUE_END: u32 = 1 << 30;
const END_SEQUENCE: u32 = 1 << 29;
/// Lines past this (half a billion) are stored as it.
const MAX_LINE: u32 = END_SEQUENCE - 1;

/// One line-table row: 16 bytes, as a program has hundreds of thousands of them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Row {
    pub address: u64,
    pub file: FileId,
    /// The line in the low bits, the flags above [`MAX_LINE`].
    line_flags: u32,
}

impl Row {
    pub fn new(address: u64, file: FileId, line: u32, stmt: bool, prologue_end: bool) -> Self {
        let mut line_flags = line.min(MAX_LINE);
        if stmt {
            line_flags |= STMT;
        }
        if prologue_end {
            line_flags |= PROLOGUE_END;
        }
        Self {
            address,
            file,
            line_flags,
        }
    }

    /// The row that closes a sequence: no instruction lives at its address.
    pub fn end(address: u64) -> Self {
        Self {
            address,
            file: FileId::MAX,
            line_flags: END_SEQUENCE,
        }
    }

    /// The 1-based source line; 0 when the row has none.
    pub fn line(&self) -> u32 {
        self.line_flags & MAX_LINE
    }

    pub fn is_stmt(&self) -> bool {
        self.line_flags & STMT != 0
    }

    pub fn prologue_end(&self) -> bool {
        self.line_flags & PROLOGUE_END != 0
    }

    pub fn is_end(&self) -> bool {
        self.line_flags & END_SEQUENCE != 0
    }

    fn same_line(&self, other: &Row) -> bool {
        !self.is_end() && !other.is_end() && self.file == other.file && self.line() == other.line()
    }
}

/// A stretch of consecutive rows of one source line inside one sequence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub line: u32,
    /// Address of the run's first row.
    pub start: u64,
    /// Address of its first `is_stmt` row, if any: the compiler's recommended breakpoint.
    pub stmt: Option<u64>,
    /// Address of the row that ends the run (another line or the end of the sequence).
    pub end: u64,
}

/// All rows of a program.
#[derive(Debug)]
pub(crate) struct LineTable {
    rows: Vec<Row>,
    /// Indices into `rows`, by address; at equal addresses sequence ends come first, then
    /// rows in table order.
    by_addr: Vec<u32>,
}

impl LineTable {
    pub fn new(rows: Vec<Row>) -> Self {
        let mut by_addr: Vec<u32> = (0..rows.len() as u32).collect();
        by_addr.sort_by_key(|&i| {
            let r = &rows[i as usize];
            (r.address, !r.is_end())
        });
        Self { rows, by_addr }
    }

    /// Every run of every line of `file`, keyed by line.
    pub fn runs(&self, file: FileId) -> BTreeMap<u32, Vec<Run>> {
        let mut out: BTreeMap<u32, Vec<Run>> = BTreeMap::new();
        let mut open: Option<(Row, Run)> = None;
        for row in &self.rows {
            if let Some((first, run)) = &mut open {
                if row.same_line(first) {
                    if run.stmt.is_none() && row.is_stmt() {
                        run.stmt = Some(row.address);
                    }
                    continue;
                }
                let mut run = *run;
                run.end = row.address;
                out.entry(run.line).or_default().push(run);
                open = None;
            }
            if !row.is_end() && row.file == file {
                let run = Run {
                    line: row.line(),
                    start: row.address,
                    stmt: row.is_stmt().then_some(row.address),
                    end: row.address,
                };
                open = Some((*row, run));
            }
        }
        if let Some((_, run)) = open {
            out.entry(run.line).or_default().push(run);
        }
        out
    }

    /// Rows with `low <= address < high`, by address.
    pub fn rows_in(&self, low: u64, high: u64) -> impl Iterator<Item = &Row> + '_ {
        let start = self
            .by_addr
            .partition_point(|&i| self.rows[i as usize].address < low);
        self.by_addr[start..]
            .iter()
            .map(|&i| &self.rows[i as usize])
            .take_while(move |r| r.address < high)
    }

    /// The row that describes the instruction at `addr`: among rows at exactly `addr` the
    /// last `is_stmt` one (the innermost line at that point), else the row covering it.
    pub fn row_at(&self, addr: u64) -> Option<&Row> {
        let end = self
            .by_addr
            .partition_point(|&i| self.rows[i as usize].address <= addr);
        let at: Vec<&Row> = self.by_addr[..end]
            .iter()
            .rev()
            .map(|&i| &self.rows[i as usize])
            .take_while(|r| r.address == addr && !r.is_end())
            .collect();
        if let Some(r) = at.iter().find(|r| r.is_stmt()).or(at.first()) {
            return Some(r);
        }
        let r = &self.rows[*self.by_addr[..end].last()? as usize];
        (!r.is_end()).then_some(r)
    }
}

/// One source line that has code, for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineInfo {
    /// The 1-based source line.
    pub line: u32,
    /// Where a breakpoint on this line would go (before prologue and prefix adjustments).
    pub addresses: Vec<ObjAddr>,
    /// The innermost function of the first address, demangled.
    pub function: String,
}

/// Lists the lines of `file` (matched by path suffix) that have code, in line order.
pub fn lines(binary: &Binary, file: &str) -> Result<Vec<LineInfo>, ResolveError> {
    DebugIndex::new(binary).lines(binary, file)
}

impl DebugIndex {
    /// Like [`lines`], with this cached index.
    pub fn lines(&self, binary: &Binary, file: &str) -> Result<Vec<LineInfo>, ResolveError> {
        let id = self.select_file(binary, file)?;
        Ok(self
            .line_addresses(id)
            .into_iter()
            .map(|(line, addrs)| LineInfo {
                line,
                addresses: addrs.iter().map(|a| ObjAddr(a.addr)).collect(),
                function: addrs
                    .first()
                    .and_then(|a| a.caller.or_else(|| self.functions.owner(a.addr, id, line)))
                    .map(|f| self.functions.entries[f].name.to_string())
                    .unwrap_or_else(|| "??".to_string()),
            })
            .collect())
    }

    /// The breakpoint addresses of every line of `file` that has code, by line. A line
    /// whose code all belongs to inlined callees (Rust's `SINK.fetch_add(..)` at -O2) has
    /// no rows of its own; the starts of those inlined calls stand in for it.
    pub(crate) fn line_addresses(&self, file: FileId) -> BTreeMap<u32, Vec<LineAddr>> {
        let mut out: BTreeMap<u32, Vec<LineAddr>> = self
            .lines
            .runs(file)
            .into_iter()
            .map(|(line, runs)| (line, breakpoint_addresses(&runs)))
            .collect();
        let mut calls: BTreeMap<u32, Vec<LineAddr>> = BTreeMap::new();
        for e in &self.functions.entries {
            if let (true, Some(f), Some(line)) = (e.inlined, e.call_file, e.call_line) {
                if f == file && !out.contains_key(&line) {
                    calls.entry(line).or_default().push(LineAddr {
                        addr: e.entry_pc,
                        end: e.range_end(e.entry_pc),
                        caller: e.parent,
                    });
                }
            }
        }
        for (line, mut addrs) in calls {
            addrs.sort_by_key(|a| a.addr);
            addrs.dedup_by_key(|a| a.addr);
            out.insert(line, addrs);
        }
        out
    }

    /// The one indexed file that `query` names (exact path, or path suffix on component
    /// boundaries). Several spellings of one path were folded when indexing.
    pub(crate) fn select_file(&self, binary: &Binary, query: &str) -> Result<FileId, ResolveError> {
        let q = normalize(Path::new(query));
        let matches: Vec<FileId> = (0..self.files.len() as FileId)
            .filter(|&id| {
                let f = self.file(id);
                if q.is_absolute() {
                    f == q
                } else {
                    f.ends_with(&q)
                }
            })
            .collect();
        if matches.is_empty() {
            return Err(ResolveError::NoSuchFile {
                file: query.to_string(),
                binary: binary.path().to_path_buf(),
                similar: self.similar_files(&q),
            });
        }
        if matches.len() == 1 {
            return Ok(matches[0]);
        }
        // A header named in many units is one file; prefer the spellings that have code.
        let with_code: HashSet<FileId> = self.lines.rows.iter().map(|r| r.file).collect();
        let coded: Vec<FileId> = matches
            .iter()
            .copied()
            .filter(|id| with_code.contains(id))
            .collect();
        match coded.as_slice() {
            [one] => Ok(*one),
            _ => Err(ResolveError::AmbiguousFile {
                file: query.to_string(),
                candidates: (if coded.is_empty() { &matches } else { &coded })
                    .iter()
                    .map(|&id| self.file(id).to_path_buf())
                    .collect(),
            }),
        }
    }

    /// Up to five indexed files whose names look like `q`'s.
    fn similar_files(&self, q: &Path) -> Vec<PathBuf> {
        let want = q
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut scored: Vec<(f64, &PathBuf)> = self
            .files
            .iter()
            .filter_map(|f| {
                let name = f.file_name()?.to_string_lossy();
                let score = strsim::jaro_winkler(&want, &name);
                (score > 0.7).then_some((score, f))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.dedup_by(|a, b| a.1 == b.1);
        scored.into_iter().take(5).map(|(_, f)| f.clone()).collect()
    }
}

/// Where a breakpoint on a line goes, before prologue and instruction adjustments.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LineAddr {
    pub addr: u64,
    /// Where the line's code at `addr` stops: the instruction search ends there.
    pub end: u64,
    /// For the start of an inlined call, the entry of the function that makes the call.
    pub caller: Option<usize>,
}

/// The breakpoint address of each run of one line: the first `is_stmt` row of each run, or,
/// when no run of the line has one (optimized Go does this), the start of each run.
fn breakpoint_addresses(runs: &[Run]) -> Vec<LineAddr> {
    let any_stmt = runs.iter().any(|r| r.stmt.is_some());
    let mut out: Vec<LineAddr> = runs
        .iter()
        .filter_map(|r| {
            let addr = if any_stmt { r.stmt? } else { r.start };
            Some(LineAddr {
                addr,
                end: r.end,
                caller: None,
            })
        })
        .collect();
    out.sort_by_key(|a| a.addr);
    out.dedup_by_key(|a| a.addr);
    out
}
