//! Functions of a program: concrete subprograms and inlined calls from DWARF, with
//! demangled names, plus ELF symbols for code without DWARF.
//!
//! [`functions`] lists them for `tracery-ctl symbols --functions PATTERN`.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
};

use gimli::DebugInfoOffset;
use serde::Serialize;

use crate::{
    address::ObjAddr,
    binary::Binary,
    index::{DebugIndex, FileId},
};

/// Naming attributes of one subprogram DIE, before origins are followed.
#[derive(Clone, Debug, Default)]
pub(crate) struct NameInfo {
    pub name: Option<String>,
    pub linkage: Option<String>,
    /// Enclosing namespaces and types, `::`-joined (empty for C and Go).
    pub namespace: String,
    pub decl_file: Option<FileId>,
    pub decl_line: Option<u32>,
    /// `DW_AT_specification` or `DW_AT_abstract_origin`.
    pub origin: Option<DebugInfoOffset>,
}

/// A concrete function or one inlined call of a function, with code ranges.
#[derive(Clone, Debug)]
pub(crate) struct FnEntry {
    /// The DIE that names it: its own for a subprogram, the abstract origin when inlined.
    pub die: Option<DebugInfoOffset>,
    /// Sorted `[low, high)` ranges.
    pub ranges: Box<[(u64, u64)]>,
    /// The first instruction executed: `DW_AT_entry_pc`, else the lowest address.
    pub entry_pc: u64,
    pub inlined: bool,
    /// The enclosing entry (for an inlined call, the function it was inlined into).
    pub parent: Option<usize>,
    pub call_file: Option<FileId>,
    pub call_line: Option<u32>,
    /// Demangled, qualified, without hash: `orders::process_order`, `main.processOrder`.
    /// Names are shared between the entries (inlined copies) that have them.
    pub name: Arc<str>,
    /// `DW_AT_name` as written: `process_order`.
    pub short: Arc<str>,
    /// The mangled linkage name, when DWARF has one.
    pub linkage: Option<Arc<str>>,
    pub decl_file: Option<FileId>,
    pub decl_line: Option<u32>,
}

impl FnEntry {
    pub fn contains(&self, addr: u64) -> bool {
        self.ranges.iter().any(|&(lo, hi)| addr >= lo && addr < hi)
    }

    /// The end of the range that holds `addr`.
    pub fn range_end(&self, addr: u64) -> u64 {
        self.ranges
            .iter()
            .find(|&&(lo, hi)| addr >= lo && addr < hi)
            .map_or(addr, |r| r.1)
    }
}

/// All function entries, with lookups by address and name.
#[derive(Debug)]
pub(crate) struct FunctionTable {
    pub entries: Vec<FnEntry>,
    /// Inlined calls directly inside each entry: `children[child_start[i]..child_start[i
    /// + 1]]` for entry `i`. Flat, as most entries have none and a table has hundreds of
    /// thousands of entries (a `Vec` each cost 24 bytes and an allocation).
    child_start: Vec<u32>,
    children: Vec<u32>,
    /// `(low, high, entry)` of concrete (not inlined) functions, sorted by `low`.
    concrete: Vec<(u64, u64, usize)>,
}

impl FunctionTable {
    pub fn new(mut entries: Vec<FnEntry>, names: &HashMap<DebugInfoOffset, NameInfo>) -> Self {
        let mut naming = Naming::default();
        for e in &mut entries {
            naming.name_entry(e, names);
        }
        let mut concrete = Vec::new();
        let mut counts = vec![0u32; entries.len() + 1];
        for (i, e) in entries.iter().enumerate() {
            match e.parent {
                Some(p) if e.inlined => counts[p + 1] += 1,
                _ => concrete.extend(e.ranges.iter().map(|&(lo, hi)| (lo, hi, i))),
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let child_start = counts;
        let mut fill = child_start.clone();
        let mut children = vec![0u32; *child_start.last().unwrap_or(&0) as usize];
        for (i, e) in entries.iter().enumerate() {
            if let (Some(p), true) = (e.parent, e.inlined) {
                children[fill[p] as usize] = i as u32;
                fill[p] += 1;
            }
        }
        concrete.sort_unstable();
        concrete.shrink_to_fit();
        Self {
            entries,
            child_start,
            children,
            concrete,
        }
    }

    /// The concrete function whose code holds `addr`.
    pub fn concrete_at(&self, addr: u64) -> Option<usize> {
        let end = self.concrete.partition_point(|c| c.0 <= addr);
        // Ranges rarely overlap (nested C functions, duplicated DIEs); look back a little.
        self.concrete[..end]
            .iter()
            .rev()
            .take(8)
            .find(|c| addr < c.1)
            .map(|c| c.2)
    }

    /// The inlined calls directly inside entry `i`.
    fn children_of(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let (lo, hi) = (
            self.child_start[i] as usize,
            self.child_start[i + 1] as usize,
        );
        self.children[lo..hi].iter().map(|&c| c as usize)
    }

    /// The chain of entries at `addr`, innermost (deepest inlined call) first.
    pub fn chain_at(&self, addr: u64) -> Vec<usize> {
        let Some(mut cur) = self.concrete_at(addr) else {
            return Vec::new();
        };
        let mut chain = vec![cur];
        while let Some(next) = self
            .children_of(cur)
            .find(|&c| self.entries[c].contains(addr))
        {
            chain.push(next);
            cur = next;
        }
        chain.reverse();
        chain
    }

    /// The function that owns source line `file:line` at `addr`: the innermost entry, unless
    /// the row is the call site of an inlined function that starts there, in which case the
    /// line belongs to the caller.
    pub fn owner(&self, addr: u64, file: FileId, line: u32) -> Option<usize> {
        let chain = self.chain_at(addr);
        let mut i = 0;
        while i + 1 < chain.len() {
            let e = &self.entries[chain[i]];
            if e.call_file == Some(file) && e.call_line == Some(line) {
                i += 1;
            } else {
                break;
            }
        }
        chain.get(i).copied()
    }
}

/// What an entry's DIE says about its name, once per DIE.
#[derive(Clone)]
struct Names {
    /// `None` when nothing names the entry (it is then named by its address).
    name: Option<Arc<str>>,
    short: Arc<str>,
    linkage: Option<Arc<str>>,
    decl_file: Option<FileId>,
    decl_line: Option<u32>,
}

/// Names entries, each DIE once, and each distinct string once: a Rust program inlines the
/// same functions thousands of times, and each unit repeats their abstract DIEs.
#[derive(Default)]
struct Naming {
    by_die: HashMap<DebugInfoOffset, Names>,
    strings: HashSet<Arc<str>>,
}

impl Naming {
    fn name_entry(&mut self, e: &mut FnEntry, names: &HashMap<DebugInfoOffset, NameInfo>) {
        let n = match e.die {
            Some(die) => match self.by_die.get(&die) {
                Some(n) => n.clone(),
                None => {
                    let n = self.names_of(Some(die), names);
                    self.by_die.insert(die, n.clone());
                    n
                }
            },
            None => self.names_of(None, names),
        };
        e.name = n
            .name
            .unwrap_or_else(|| Arc::from(format!("{:#x}", e.entry_pc)));
        e.short = n.short;
        e.linkage = n.linkage;
        e.decl_file = n.decl_file;
        e.decl_line = n.decl_line;
    }

    /// Follows origins and specifications to a name, linkage name and declaration.
    fn names_of(
        &mut self,
        die: Option<DebugInfoOffset>,
        names: &HashMap<DebugInfoOffset, NameInfo>,
    ) -> Names {
        let mut name = None;
        let mut namespace = None;
        let mut linkage: Option<&str> = None;
        let (mut decl_file, mut decl_line) = (None, None);
        let mut cur = die;
        // Chains are short (definition → declaration, concrete → abstract); cap against
        // cycles.
        for _ in 0..8 {
            let Some(info) = cur.and_then(|o| names.get(&o)) else {
                break;
            };
            if name.is_none() && info.name.is_some() {
                name = info.name.as_deref();
                namespace = Some(info.namespace.as_str());
            }
            linkage = linkage.or(info.linkage.as_deref());
            decl_file = decl_file.or(info.decl_file);
            decl_line = decl_line.or(info.decl_line);
            cur = info.origin;
        }
        let full = match (linkage.and_then(demangle_rust), name) {
            (Some(d), _) => Some(d),
            (None, Some(n)) => Some(match namespace {
                Some(ns) if !ns.is_empty() => format!("{ns}::{n}"),
                _ => n.to_string(),
            }),
            (None, None) => linkage.map(str::to_string),
        };
        Names {
            name: full.map(|f| self.intern(&f)),
            short: self.intern(name.unwrap_or_default()),
            linkage: linkage.map(|l| self.intern(l)),
            decl_file,
            decl_line,
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }
}

/// A Rust (legacy or v0) symbol demangled without its hash suffix; `None` for others.
pub(crate) fn demangle_rust(name: &str) -> Option<String> {
    rustc_demangle::try_demangle(name)
        .ok()
        .map(|d| format!("{d:#}"))
}

/// A symbol name for people: Rust demangled without hash, C++ demangled, anything else as
/// it is.
pub(crate) fn demangle(name: &str) -> String {
    demangle_rust(name)
        .or_else(|| demangle_cpp(name))
        .unwrap_or_else(|| name.to_string())
}

/// An Itanium C++ ABI symbol (`_ZN3foo3barEi`) demangled (`foo::bar(int)`); `None` for others.
pub(crate) fn demangle_cpp(name: &str) -> Option<String> {
    if !name.starts_with("_Z") {
        return None;
    }
    cpp_demangle::Symbol::new(name).ok()?.demangle().ok()
}

/// One probeable function, for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionInfo {
    /// Demangled and qualified: `orders::process_order`, `main.processOrder`.
    pub name: String,
    /// Entry address (before the prologue).
    pub address: ObjAddr,
    /// Declaring source file; `None` for code known only from ELF symbols.
    pub file: Option<PathBuf>,
    /// Declaring line (for Go, the line of the entry).
    pub line: Option<u32>,
}

/// Lists functions with code, sorted by name. `pattern` keeps names that contain it, or,
/// when it has `*` or `?`, names that match it as a glob.
pub fn functions(binary: &Binary, pattern: Option<&str>) -> Vec<FunctionInfo> {
    DebugIndex::new(binary).functions(binary, pattern)
}

impl DebugIndex {
    /// Like [`functions`], with this cached index.
    pub fn functions(&self, binary: &Binary, pattern: Option<&str>) -> Vec<FunctionInfo> {
        let keep = |name: &str| pattern.is_none_or(|p| name_matches(p, name));
        let mut out: Vec<FunctionInfo> = self
            .functions
            .entries
            .iter()
            .filter(|e| !e.inlined && keep(&e.name))
            .map(|e| {
                // Go (before 1.20) declares no line: the entry's line-table row stands in.
                let (file, line) = match (e.decl_file, e.decl_line) {
                    (Some(f), Some(l)) => (Some(f), Some(l)),
                    _ => self
                        .lines
                        .row_at(e.entry_pc)
                        .map_or((e.decl_file, None), |r| (Some(r.file), Some(r.line()))),
                };
                FunctionInfo {
                    name: e.name.to_string(),
                    address: ObjAddr(e.entry_pc),
                    file: file.map(|f| self.file(f).to_path_buf()),
                    line,
                }
            })
            .collect();
        // Code with no DWARF (startup files, assembly) is still probeable by symbol.
        for s in binary.symbols() {
            if self.functions.concrete_at(s.address.0).is_some() {
                continue;
            }
            let name = demangle(&s.name);
            if keep(&name) {
                out.push(FunctionInfo {
                    name,
                    address: s.address,
                    file: None,
                    line: None,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.address.cmp(&b.address)));
        out.dedup_by(|a, b| a.name == b.name && a.address == b.address);
        out
    }
}

/// Substring match, or a glob match when the pattern has `*` or `?`.
pub(crate) fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern.contains(['*', '?']) {
        glob(pattern.as_bytes(), name.as_bytes())
    } else {
        name.contains(pattern)
    }
}

/// `*` matches any run of characters, `?` any one byte; linear with one backtrack point.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"orders::*", b"orders::process_order"));
        assert!(glob(b"*process*", b"orders::process_order"));
        assert!(glob(b"main.?rocessOrder", b"main.processOrder"));
        assert!(!glob(b"orders::*x", b"orders::process_order"));
        assert!(glob(b"*", b""));
        assert!(!glob(b"a", b""));
        assert!(name_matches("process", "orders::process_order"));
        assert!(!name_matches("Process", "orders::process_order"));
    }

    #[test]
    fn demangles_rust_without_hash() {
        assert_eq!(
            demangle("_ZN6orders13process_order17h0123456789abcdefE"),
            "orders::process_order"
        );
        assert_eq!(demangle("process_order"), "process_order");
        assert_eq!(
            demangle("_ZNSt8ios_base4InitC1Ev"),
            "std::ios_base::Init::Init()"
        );
        assert_eq!(demangle("_Z7inspectR6Values"), "inspect(Values&)");
        assert_eq!(demangle("main.processOrder"), "main.processOrder");
    }
}
