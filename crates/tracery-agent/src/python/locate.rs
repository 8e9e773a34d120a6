//! From a location (`file.py:LINE`, `module.function`) to the instructions to watch: the
//! live code objects are found through `sys.modules` (module dicts, class dicts, and the
//! code objects nested in their constants), read from the process's memory.

use std::collections::{BTreeSet, HashSet};

use super::{code::CodeInfo, interpreter::Interpreter, memory::Mem, PythonError};

/// Most code objects visited per search (a large service has tens of thousands).
const MAX_CODES: usize = 200_000;
/// How many lines around a line without code are offered.
const NEAR_LINES: u32 = 8;

/// A Python location, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PyLocation {
    /// `file.py:LINE`; the file is matched as a path suffix of `co_filename`.
    Line { file: String, line: u32 },
    /// `module.qualname` (`orders.handle`, `orders.Handler.do_GET`).
    Function { path: String },
}

/// `file.py:LINE`.
pub fn parse_line_location(location: &str) -> Option<(&str, u32)> {
    let (file, line) = location.rsplit_once(':')?;
    let line: u32 = line.parse().ok()?;
    (line > 0 && file.ends_with(".py")).then_some((file, line))
}

impl PyLocation {
    pub fn parse(location: &str) -> Self {
        match parse_line_location(location) {
            Some((file, line)) => PyLocation::Line {
                file: file.to_owned(),
                line,
            },
            None => PyLocation::Function {
                path: location.to_owned(),
            },
        }
    }
}

/// One instruction to watch.
#[derive(Clone, Debug)]
pub struct PySiteSpec {
    pub code: CodeInfo,
    /// Code unit index in `co_code_adaptive`.
    pub unit: u32,
    /// The line the site stands for.
    pub line: u32,
}

/// True when `filename` names `file`: equal, or ending in `/file`.
fn file_matches(filename: &str, file: &str) -> bool {
    let file = file.trim_start_matches("./");
    filename == file || filename.ends_with(&format!("/{file}"))
}

/// The sites of `location` in the process.
pub fn resolve(
    interp: &Interpreter,
    location: &PyLocation,
) -> Result<Vec<PySiteSpec>, PythonError> {
    let mem = Mem::new(interp.pid);
    let pid = interp.pid;
    let modules = modules(interp, &mem)?;
    match location {
        PyLocation::Line { file, line } => {
            let mut filenames = BTreeSet::new();
            let codes = walk(&mem, modules.iter().map(|m| m.1), |name| {
                let keep = file_matches(name, file);
                if !keep && filenames.len() < 4096 {
                    filenames.insert(name.to_owned());
                }
                keep
            });
            if codes.is_empty() {
                return Err(PythonError::NoFile {
                    pid,
                    file: file.clone(),
                    similar: similar(&filenames, file),
                });
            }
            let mut sites = Vec::new();
            let mut all_lines = BTreeSet::new();
            for code in &codes {
                all_lines.extend(code.code_lines());
                for unit in code.line_starts(*line) {
                    sites.push(PySiteSpec {
                        code: code.clone(),
                        unit,
                        line: *line,
                    });
                }
            }
            if sites.is_empty() {
                let mut nearest: Vec<u32> = all_lines
                    .into_iter()
                    .filter(|l| l.abs_diff(*line) <= NEAR_LINES)
                    .collect();
                nearest.sort_by_key(|l| (l.abs_diff(*line), *l));
                nearest.truncate(4);
                nearest.sort_unstable();
                return Err(PythonError::NoCode {
                    pid,
                    file: file.clone(),
                    line: *line,
                    nearest,
                });
            }
            Ok(sites)
        }
        PyLocation::Function { path } => {
            // The longest module name that prefixes the path; the rest is the qualname.
            let found = modules
                .iter()
                .filter(|(name, _)| {
                    path.len() > name.len() + 1
                        && path.starts_with(name.as_str())
                        && path.as_bytes()[name.len()] == b'.'
                })
                .max_by_key(|(name, _)| name.len());
            let Some((name, module)) = found else {
                return Err(PythonError::NoFunction {
                    pid,
                    function: path.clone(),
                });
            };
            let qualname = &path[name.len() + 1..];
            let codes = walk(&mem, std::iter::once(*module), |_| true);
            let sites: Vec<PySiteSpec> = codes
                .into_iter()
                .filter(|c| c.qualname == qualname)
                .map(|code| PySiteSpec {
                    unit: code.first_traceable,
                    line: code
                        .line_of(code.first_traceable)
                        .unwrap_or(code.firstlineno),
                    code,
                })
                .collect();
            if sites.is_empty() {
                return Err(PythonError::NoFunction {
                    pid,
                    function: path.clone(),
                });
            }
            Ok(sites)
        }
    }
}

/// `sys.modules` as `(name, module)` pairs.
fn modules(interp: &Interpreter, mem: &Mem) -> Result<Vec<(String, u64)>, PythonError> {
    let o = &interp.offsets;
    let read = |action, source| PythonError::Read {
        pid: interp.pid,
        action,
        source,
    };
    let head = mem
        .u64(interp.runtime + o.runtime_interpreters_head)
        .map_err(|e| read("read _PyRuntime", e))?;
    let dict = mem
        .u64(head + o.interp_modules)
        .map_err(|e| read("read sys.modules", e))?;
    let items = mem
        .dict_items(dict)
        .map_err(|e| read("read sys.modules", e))?;
    Ok(items
        .into_iter()
        .filter_map(|(k, v)| Some((mem.str(k).ok()?, v)))
        .collect())
}

/// Every code object reachable from `modules` (their functions, classes' methods, and
/// code nested in those) whose file `keep` accepts.
fn walk(
    mem: &Mem,
    modules: impl Iterator<Item = u64>,
    mut keep: impl FnMut(&str) -> bool,
) -> Vec<CodeInfo> {
    let o = &super::interpreter::V3_11;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut codes = Vec::new();
    let mut types_seen = HashSet::new();
    for module in modules {
        if mem.type_name(module).ok().as_deref() != Some("module") {
            continue;
        }
        let Ok(dict) = mem.u64(module + o.module_dict) else {
            continue;
        };
        let Ok(items) = mem.dict_items(dict) else {
            continue;
        };
        let mut values: Vec<u64> = items.into_iter().map(|(_, v)| v).collect();
        while let Some(v) = values.pop() {
            match mem.type_name(v).ok().as_deref() {
                Some("function") => {
                    if let Ok(code) = mem.u64(v + o.func_code) {
                        codes.push(code);
                    }
                }
                Some("staticmethod" | "classmethod") => {
                    // `sm_callable`/`cm_callable` follows the object header.
                    if let Ok(f) = mem.u64(v + 16) {
                        values.push(f);
                    }
                }
                Some("type" | "ABCMeta") if types_seen.insert(v) => {
                    if let Ok(items) = mem.u64(v + o.type_dict).and_then(|d| mem.dict_items(d)) {
                        values.extend(items.into_iter().map(|(_, v)| v));
                    }
                }
                _ => {}
            }
        }
    }
    while let Some(code) = codes.pop() {
        if seen.len() >= MAX_CODES || !seen.insert(code) {
            continue;
        }
        let Ok(filename) = mem.u64(code + o.code_filename).and_then(|f| mem.str(f)) else {
            continue;
        };
        if !keep(&filename) {
            continue;
        }
        let Ok(info) = CodeInfo::read(mem, code) else {
            continue;
        };
        if let Ok(consts) = mem.u64(code + o.code_consts).and_then(|c| mem.tuple(c)) {
            for c in consts {
                if mem.type_name(c).ok().as_deref() == Some("code") {
                    codes.push(c);
                }
            }
        }
        out.push(info);
    }
    out
}

/// Up to five file names like `file`: the same base name first, then the shortest.
fn similar(filenames: &BTreeSet<String>, file: &str) -> Vec<String> {
    let base = file.rsplit('/').next().unwrap_or(file);
    let mut v: Vec<&String> = filenames
        .iter()
        .filter(|f| !f.starts_with('<') && !f.contains("/lib/python3"))
        .collect();
    v.sort_by_key(|f| (!f.ends_with(base), f.len()));
    v.into_iter().take(5).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            PyLocation::parse("app/server.py:12"),
            PyLocation::Line {
                file: "app/server.py".into(),
                line: 12
            }
        );
        assert_eq!(
            PyLocation::parse("server.Handler.do_GET"),
            PyLocation::Function {
                path: "server.Handler.do_GET".into()
            }
        );
        assert!(file_matches("/srv/app/server.py", "app/server.py"));
        assert!(!file_matches("/srv/app/myserver.py", "server.py"));
    }
}
