//! Source locations to probe sites: `FILE:LINE` and `FUNCTION` to instruction addresses and
//! the file offsets uprobes attach at.
//!
//! - `FILE:LINE` matches the file by path suffix on component boundaries. Each run of rows
//!   of that line (inlined copies, loop headers) gives a site at its first `is_stmt` row.
//! - `FUNCTION` matches demangled qualified names (`orders::process_order`), C and Go names
//!   (`process_order`, `main.processOrder`), a `::`/`.` suffix of them, or an ELF symbol.
//!   The site is after the prologue; each inlined call of the function is a site too.
//! - A breakpoint on a function's first instruction moves past its prologue, like gdb:
//!   to `DW_LNS_set_prologue_end` when the compiler marks it (LLVM, Go), else, when the
//!   function sets up a frame pointer (GCC), to the first line boundary after that.
//! - An instruction uprobes refuse (see `insn.rs`) moves to the next instruction of the
//!   same line (of the same function, for a function), and the site's `note` says so.

use std::path::PathBuf;

use serde::Serialize;

use crate::{
    address::{FileOffset, ObjAddr},
    binary::Binary,
    index::{DebugIndex, FileId},
    insn,
    symbols::demangle,
};

/// One address to attach a uprobe at, and what it means in the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeSite {
    /// The instruction to probe, as the ELF file states addresses.
    pub address: ObjAddr,
    /// Where in the file the uprobe attaches (`address` through the PT_LOAD headers).
    pub file_offset: FileOffset,
    /// The innermost function at the site, demangled (an inlined function's own name).
    pub function: String,
    /// The source file, full path as the DWARF states it.
    pub file: PathBuf,
    /// The source line of `address` (after any move past a prologue).
    pub line: u32,
    /// True when the site is inside an inlined copy of `function`.
    pub inlined: bool,
    /// Why the site is not exactly where asked (prologue, unprobeable instruction).
    pub note: Option<String>,
}

/// A location could not be resolved. Each message says what to try next.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "malformed location {location:?}: {reason}; write FILE:LINE (orders.c:42) or a function \
         name (process_order, orders::process_order, main.processOrder)"
    )]
    Malformed {
        location: String,
        reason: &'static str,
    },
    #[error("no source file {file:?} in the DWARF of {}{}", .binary.display(), did_you_mean(.similar))]
    NoSuchFile {
        file: String,
        binary: PathBuf,
        similar: Vec<PathBuf>,
    },
    #[error("{file:?} matches several source files ({}); give more of its path", join(.candidates))]
    AmbiguousFile {
        file: String,
        candidates: Vec<PathBuf>,
    },
    #[error("no code at {file}:{line}; {}", nearest_lines(.nearest))]
    NoCode {
        file: String,
        path: PathBuf,
        line: u32,
        /// The nearest lines before and after that have code.
        nearest: Vec<u32>,
    },
    #[error("no function {name:?} in {}{}", .binary.display(), did_you_mean(.similar))]
    NoSuchFunction {
        name: String,
        binary: PathBuf,
        similar: Vec<String>,
    },
    #[error(
        "cannot probe {location}: the instructions at {address} are {reason} and uprobes refuse \
         them; pick a neighbouring line"
    )]
    Unprobeable {
        location: String,
        address: ObjAddr,
        reason: &'static str,
    },
    #[error("{location} is at {address}, which no PT_LOAD segment of {} maps", .binary.display())]
    NotMapped {
        location: String,
        address: ObjAddr,
        binary: PathBuf,
    },
}

fn did_you_mean<T: std::fmt::Debug>(similar: &[T]) -> String {
    if similar.is_empty() {
        "; list what exists with `tracery-ctl symbols`".to_string()
    } else {
        format!("; did you mean {}?", join(similar))
    }
}

fn join<T: std::fmt::Debug>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn nearest_lines(nearest: &[u32]) -> String {
    if nearest.is_empty() {
        return "no line of this file has code in this binary (compiled out?)".to_string();
    }
    let list: Vec<String> = nearest.iter().map(u32::to_string).collect();
    format!("nearest lines with code: {}", list.join(", "))
}

/// Resolves `FILE:LINE` or `FUNCTION` in `binary` to probe sites, sorted by address.
pub fn resolve(binary: &Binary, location: &str) -> Result<Vec<ProbeSite>, ResolveError> {
    DebugIndex::new(binary).resolve(binary, location)
}

enum Location<'a> {
    Line { file: &'a str, line: u32 },
    Function(&'a str),
}

fn parse(location: &str) -> Result<Location<'_>, ResolveError> {
    let bad = |reason| ResolveError::Malformed {
        location: location.to_string(),
        reason,
    };
    let loc = location.trim();
    if loc.is_empty() {
        return Err(bad("it is empty"));
    }
    if loc.contains(char::is_whitespace) {
        return Err(bad("it contains spaces"));
    }
    // A single ':' separates FILE and LINE; '::' belongs to Rust and C++ paths.
    let b = loc.as_bytes();
    let single = (0..b.len())
        .rev()
        .find(|&i| b[i] == b':' && (i == 0 || b[i - 1] != b':') && b.get(i + 1) != Some(&b':'));
    let Some(colon) = single else {
        return Ok(Location::Function(loc));
    };
    let (file, line) = (&loc[..colon], &loc[colon + 1..]);
    if file.is_empty() {
        return Err(bad("there is no file before ':'"));
    }
    match line.parse::<u32>() {
        Ok(0) => Err(bad("lines are numbered from 1")),
        Ok(line) => Ok(Location::Line { file, line }),
        Err(_) => Err(bad("what follows ':' is not a line number")),
    }
}

/// A site before the instruction check.
struct Candidate {
    addr: u64,
    /// Where the source line of `addr` stops: the instruction search ends there.
    end: u64,
    file: Option<FileId>,
    line: u32,
    /// The function entry (concrete or inlined copy) the site belongs to.
    owner: Option<usize>,
    note: Option<String>,
}

impl DebugIndex {
    /// Like [`resolve`], with this cached index.
    pub fn resolve(&self, binary: &Binary, location: &str) -> Result<Vec<ProbeSite>, ResolveError> {
        match parse(location)? {
            Location::Line { file, line } => self.resolve_line(binary, location, file, line),
            Location::Function(name) => self.resolve_function(binary, location, name),
        }
    }

    fn resolve_line(
        &self,
        binary: &Binary,
        location: &str,
        file_q: &str,
        line: u32,
    ) -> Result<Vec<ProbeSite>, ResolveError> {
        let file = self.select_file(binary, file_q)?;
        let lines = self.line_addresses(file);
        let Some(addrs) = lines.get(&line) else {
            let before = lines.range(..line).next_back().map(|(&l, _)| l);
            let after = lines.range(line..).next().map(|(&l, _)| l);
            return Err(ResolveError::NoCode {
                file: file_q.to_string(),
                path: self.file(file).to_path_buf(),
                line,
                nearest: before.into_iter().chain(after).collect(),
            });
        };
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut continued: Vec<Vec<u64>> = Vec::new();
        for a in addrs {
            let entry = self
                .functions
                .concrete_at(a.addr)
                .filter(|&i| self.functions.entries[i].entry_pc == a.addr);
            let c = match entry {
                Some(i) => {
                    let mut c = self.after_prologue(binary, i);
                    if c.addr == a.addr {
                        // No prologue to skip: still a breakpoint on this very line.
                        c.end = a.end;
                        c.file = Some(file);
                        c.line = line;
                    }
                    c
                }
                None => Candidate {
                    addr: a.addr,
                    end: a.end,
                    file: Some(file),
                    line,
                    owner: a
                        .caller
                        .or_else(|| self.functions.owner(a.addr, file, line)),
                    note: None,
                },
            };
            // One site per function instance, at its lowest address, as gdb and lldb do. A
            // later run of the line in the same instance continues it (after a call, an
            // overflow check, a loop back-edge): probing it too would report one execution
            // of the line several times. Each inlined copy is an instance of its own.
            match candidates
                .iter()
                .position(|k| k.owner.is_some() && k.owner == c.owner)
            {
                Some(k) if candidates[k].addr <= c.addr => continued[k].push(c.addr),
                Some(k) => {
                    let old = std::mem::replace(&mut candidates[k], c);
                    continued[k].push(old.addr);
                }
                None => {
                    candidates.push(c);
                    continued.push(Vec::new());
                }
            }
        }
        for (c, more) in candidates.iter_mut().zip(continued) {
            if !more.is_empty() {
                let list: Vec<String> = more.iter().map(|a| format!("{a:#x}")).collect();
                let text = format!(
                    "the line continues at {} in the same function (not probed: one hit per execution)",
                    list.join(", ")
                );
                c.note = join_notes(c.note.take(), Some(text));
            }
        }
        self.finish(binary, location, candidates)
    }

    fn resolve_function(
        &self,
        binary: &Binary,
        location: &str,
        q: &str,
    ) -> Result<Vec<ProbeSite>, ResolveError> {
        let entries = &self.functions.entries;
        let mut matched: Vec<usize> = (0..entries.len())
            .filter(|&i| &*entries[i].name == q || entries[i].linkage.as_deref() == Some(q))
            .collect();
        if matched.is_empty() {
            // `process_order` for `orders::process_order`, `processOrder` for Go's.
            let (colons, dot) = (format!("::{q}"), format!(".{q}"));
            matched = (0..entries.len())
                .filter(|&i| entries[i].name.ends_with(&colons) || entries[i].name.ends_with(&dot))
                .collect();
        }
        let mut elf_only = Vec::new();
        if matched.is_empty() {
            for s in binary.symbols() {
                if s.name != q && demangle(&s.name) != q {
                    continue;
                }
                match self.functions.concrete_at(s.address.0) {
                    Some(i) if entries[i].entry_pc == s.address.0 => matched.push(i),
                    _ => elf_only.push(s),
                }
            }
        }
        if matched.is_empty() && elf_only.is_empty() {
            return Err(ResolveError::NoSuchFunction {
                name: q.to_string(),
                binary: binary.path().to_path_buf(),
                similar: self.similar_functions(q),
            });
        }
        let mut candidates = Vec::new();
        for &i in &matched {
            let e = &entries[i];
            candidates.push(if e.inlined {
                self.candidate_in(i, e.entry_pc, e.range_end(e.entry_pc), None)
            } else {
                self.after_prologue(binary, i)
            });
        }
        for s in elf_only {
            let row = self.lines.row_at(s.address.0);
            candidates.push(Candidate {
                addr: s.address.0,
                end: s.address.0 + s.size.max(1),
                file: row.map(|r| r.file),
                line: row.map_or(0, |r| r.line()),
                owner: None,
                note: Some("no DWARF for this function: probing its ELF symbol".to_string()),
            });
        }
        self.finish(binary, location, candidates)
    }

    /// A candidate at `addr` inside entry `owner`, located in `owner`'s own source: when
    /// inlined code starts at `addr`, that is the line of the call, not the callee's line.
    fn candidate_in(&self, owner: usize, addr: u64, end: u64, note: Option<String>) -> Candidate {
        let chain = self.functions.chain_at(addr);
        let (file, line) = match chain.iter().position(|&c| c == owner) {
            Some(p) if p > 0 => {
                let child = &self.functions.entries[chain[p - 1]];
                (child.call_file, child.call_line.unwrap_or(0))
            }
            _ => {
                let row = self.lines.row_at(addr);
                (row.map(|r| r.file), row.map_or(0, |r| r.line()))
            }
        };
        Candidate {
            addr,
            end,
            file,
            line,
            owner: Some(owner),
            note,
        }
    }

    /// The first address after the prologue of entry `i` (see the module docs).
    fn after_prologue(&self, binary: &Binary, i: usize) -> Candidate {
        let e = &self.functions.entries[i];
        let low = e.entry_pc;
        let high = e.range_end(low);
        let marked = self
            .lines
            .rows_in(low, high)
            .find(|r| r.prologue_end())
            .map(|r| r.address);
        let addr = marked
            .or_else(|| {
                let setup_end = frame_setup_end(binary, low)?;
                self.lines
                    .rows_in(setup_end, high)
                    .find(|r| r.is_stmt() && !r.is_end())
                    .map(|r| r.address)
            })
            .unwrap_or(low);
        let note = (addr != low).then(|| format!("after the prologue of {}", e.name));
        // A function breakpoint may step off a refused instruction onto the next line.
        self.candidate_in(i, addr, high, note)
    }

    /// Checks each candidate's instruction, names it, and builds the sites.
    fn finish(
        &self,
        binary: &Binary,
        location: &str,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<ProbeSite>, ResolveError> {
        let mut sites: Vec<ProbeSite> = Vec::new();
        let mut refused = None;
        for c in candidates {
            let (address, moved) = match probeable(binary, c.addr, c.end) {
                Ok(found) => found,
                Err(reason) => {
                    refused = Some((c.addr, reason));
                    continue;
                }
            };
            let (function, inlined) = c
                .owner
                .map(|i| {
                    let e = &self.functions.entries[i];
                    (e.name.to_string(), e.inlined)
                })
                .or_else(|| symbol_name(binary, address))
                .unwrap_or_else(|| ("??".to_string(), false));
            let file_offset =
                binary
                    .file_offset(ObjAddr(address))
                    .ok_or_else(|| ResolveError::NotMapped {
                        location: location.to_string(),
                        address: ObjAddr(address),
                        binary: binary.path().to_path_buf(),
                    })?;
            let note = join_notes(c.note, moved);
            sites.push(ProbeSite {
                address: ObjAddr(address),
                file_offset,
                function,
                file: c
                    .file
                    .map(|f| self.file(f).to_path_buf())
                    .unwrap_or_default(),
                line: c.line,
                inlined,
                note,
            });
        }
        if sites.is_empty() {
            if let Some((addr, reason)) = refused {
                return Err(ResolveError::Unprobeable {
                    location: location.to_string(),
                    address: ObjAddr(addr),
                    reason,
                });
            }
        }
        sites.sort_by_key(|s| s.address);
        sites.dedup_by_key(|s| s.address);
        Ok(sites)
    }

    /// Up to five function names that look like `q`: containing it first, then by spelling.
    fn similar_functions(&self, q: &str) -> Vec<String> {
        let lower = q.to_lowercase();
        let mut scored: Vec<(f64, &str)> = self
            .functions
            .entries
            .iter()
            .filter(|e| !e.inlined)
            .map(|e| {
                let short = &*e.short;
                let score = if e.name.to_lowercase().contains(&lower) {
                    2.0
                } else {
                    strsim::jaro_winkler(q, &e.name).max(strsim::jaro_winkler(q, short))
                };
                (score, &*e.name)
            })
            .filter(|s| s.0 > 0.8)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let mut out: Vec<String> = Vec::new();
        for (_, n) in scored {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
            if out.len() == 5 {
                break;
            }
        }
        out
    }
}

/// The address after `[endbr64] push %rbp; mov %rsp,%rbp` at `low`, if the function
/// starts with that frame setup.
fn frame_setup_end(binary: &Binary, low: u64) -> Option<u64> {
    let code = binary.bytes_at(ObjAddr(low), 8)?;
    let skip = if code.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
        4
    } else {
        0
    };
    let rest = &code[skip..];
    let is_setup = rest.first() == Some(&0x55)
        && (rest[1..].starts_with(&[0x48, 0x89, 0xe5])
            || rest[1..].starts_with(&[0x48, 0x8b, 0xec]));
    is_setup.then_some(low + skip as u64 + 4)
}

/// The first instruction in `[addr, end)` a uprobe accepts, and a note when it is not
/// `addr`. Fails with the reason the first instruction was refused.
fn probeable(binary: &Binary, addr: u64, end: u64) -> Result<(u64, Option<String>), &'static str> {
    let end = end.max(addr + 1);
    let mut at = addr;
    let mut first_refusal = None;
    while at < end {
        // An instruction is at most 15 bytes; near the end of the file take what is left.
        let bytes = (1..=15)
            .rev()
            .find_map(|n| binary.bytes_at(ObjAddr(at), n))
            .ok_or("outside the file")?;
        let Some(i) = insn::decode(bytes) else {
            return Err(first_refusal.unwrap_or("not valid x86-64 code"));
        };
        match i.refusal {
            None => {
                let note = first_refusal.map(|r| {
                    format!("moved from {addr:#x} ({r}; uprobes cannot probe it) to {at:#x}")
                });
                return Ok((at, note));
            }
            Some(r) => {
                first_refusal.get_or_insert(r);
                at += i.len as u64;
            }
        }
    }
    Err(first_refusal.unwrap_or("not valid x86-64 code"))
}

/// Two reasons a site is not exactly where asked, as one note.
pub(crate) fn join_notes(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

/// The demangled ELF symbol holding `addr`, for code without DWARF.
fn symbol_name(binary: &Binary, addr: u64) -> Option<(String, bool)> {
    let syms = binary.symbols();
    let i = syms
        .partition_point(|s| s.address.0 <= addr)
        .checked_sub(1)?;
    let s = &syms[i];
    (s.size == 0 || addr < s.address.0 + s.size).then(|| (demangle(&s.name), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert!(matches!(
            parse("orders.c:17"),
            Ok(Location::Line {
                file: "orders.c",
                line: 17
            })
        ));
        assert!(matches!(
            parse("src/a/orders.rs:9"),
            Ok(Location::Line {
                file: "src/a/orders.rs",
                line: 9
            })
        ));
        assert!(matches!(
            parse("orders::process_order"),
            Ok(Location::Function("orders::process_order"))
        ));
        assert!(matches!(
            parse("main.processOrder"),
            Ok(Location::Function("main.processOrder"))
        ));
        for bad in ["", "orders.c:", ":17", "orders.c:x", "orders.c:0", "a b"] {
            assert!(
                matches!(parse(bad), Err(ResolveError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn no_code_message_lists_nearest_lines() {
        let e = ResolveError::NoCode {
            file: "orders.c".into(),
            path: "/src/orders.c".into(),
            line: 31,
            nearest: vec![29, 33],
        };
        assert_eq!(
            e.to_string(),
            "no code at orders.c:31; nearest lines with code: 29, 33"
        );
    }
}
