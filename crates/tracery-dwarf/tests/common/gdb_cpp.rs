//! gdb's side of the C++ differential tests: what its libstdc++ pretty printers print for
//! `VAR.MEMBER` at a line of tests/programs/containers.cpp, and the normalization that
//! compares Tracery's rendering with it (documented in differential_cpp.rs). Shared by
//! differential_cpp.rs (emulated capture) and tracery-agent's std_values_cpp.rs (the real
//! kernel).
#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::{collections::BTreeSet, path::Path, process::Command};

use tracery_dwarf::{CaptureLimits, SourceLanguage, Value};

/// The members of the struct `var` refers to, from a hit's captured `vars`: what
/// [`compare`] takes. Panics, naming what it found instead, when it is not there.
pub fn struct_members(vars: &[tracery_dwarf::Variable], var: &str) -> Vec<(String, Value)> {
    let v = vars
        .iter()
        .find(|v| v.name == var)
        .unwrap_or_else(|| panic!("{var} not captured: {vars:#?}"));
    match &v.value {
        Value::Pointer {
            target: Some(t), ..
        } => match &**t {
            Value::Struct { fields, .. } => fields.clone(),
            other => panic!("{var} is not a struct: {other:?}"),
        },
        other => panic!("{var} (a reference) was not followed: {other:?}"),
    }
}

/// 80-byte strings and 4 entries per container: every value of the fixture but the
/// 1000-entry map then fits the 8 KiB data budget whole (each walk reserves its cap in
/// nodes, each string its cap in bytes, whatever the hit turns out to hold).
pub fn roomy() -> CaptureLimits {
    CaptureLimits {
        max_string: 80,
        max_elements: 4,
        ..CaptureLimits::default()
    }
}

/// Registers the printers by hand when gdb did not auto-load them.
pub const LOAD_PRINTERS: &str = "python import sys; sys.path.insert(0, '/usr/share/gcc/python'); \
from libstdcxx.v6.printers import register_libstdcxx_printers; register_libstdcxx_printers(None)";

/// gdb's `print EXPR` output for each of `exprs`, in order.
pub fn gdb(path: &Path, line: u32, exprs: &[String], load: bool) -> Vec<String> {
    let mut c = Command::new("gdb");
    c.args(["-batch", "-nx", "-iex", "set debuginfod enabled off"]);
    c.args(["-iex", "set auto-load safe-path /"]);
    if load {
        c.args(["-iex", LOAD_PRINTERS]);
    }
    c.args(["-ex", "set width 0", "-ex", "set pagination off"]);
    c.args([
        "-ex",
        &format!("break containers.cpp:{line}"),
        "-ex",
        "run nowait",
    ]);
    for e in exprs {
        c.args(["-ex", &format!("print {e}")]);
    }
    let out = c.arg(path).output().expect("gdb runs (cargo xtask setup)");
    let text = String::from_utf8_lossy(&out.stdout);
    let printed: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('$'))
        .map(|l| l.split_once(" = ").map_or("", |x| x.1).to_string())
        .collect();
    assert_eq!(
        printed.len(),
        exprs.len(),
        "gdb printed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed
}

/// Splits `a, {b, c}, "d, e"` at its top-level commas (not the one of a vector's
/// `length N, capacity M` header).
pub fn split_top(s: &str) -> Vec<String> {
    let (mut out, mut cur) = (Vec::new(), String::new());
    let (mut depth, mut quoted, mut escaped) = (0i32, false, false);
    for (i, ch) in s.char_indices() {
        if ch == ',' && s[i..].starts_with(", capacity ") {
            cur.push(ch);
            continue;
        }
        match ch {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '{' | '[' | '(' if !quoted => depth += 1,
            '}' | ']' | ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// `header = {entries}` split; plain values have no entries.
pub fn parts(s: &str) -> (String, Option<Vec<String>>) {
    match s.split_once(" = {") {
        Some((head, rest)) if head.starts_with("std::") && rest.ends_with('}') => {
            (head.to_string(), Some(split_top(&rest[..rest.len() - 1])))
        }
        _ => (s.to_string(), None),
    }
}

/// Pointer addresses as null / non-null (see the module docs).
pub fn addresses(s: &str) -> String {
    let s = s.replace("get() = NULL", "get() = 0x0");
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("get() = 0x") {
        out.push_str(&rest[..i + 8]);
        let hex = &rest[i + 8..];
        let end = hex
            .char_indices()
            .skip(2)
            .find(|(_, c)| !c.is_ascii_hexdigit())
            .map_or(hex.len(), |(j, _)| j);
        out.push_str(if &hex[..end] == "0x0" {
            "0x0"
        } else {
            "<addr>"
        });
        rest = &hex[end..];
    }
    out.push_str(rest);
    out
}

/// A smart pointer's `get()` without its pointee (compared on its own).
pub fn without_pointee(v: &Value) -> (Value, Option<Value>) {
    let Value::Struct { name, fields } = v else {
        return (v.clone(), None);
    };
    let mut pointee = None;
    let fields = fields
        .iter()
        .map(|(n, f)| match f {
            Value::Pointer { address, target } if n == "get()" => {
                pointee = target.as_deref().cloned();
                (
                    n.clone(),
                    Value::Pointer {
                        address: *address,
                        target: None,
                    },
                )
            }
            _ => (n.clone(), f.clone()),
        })
        .collect();
    let v = Value::Struct {
        name: name.clone(),
        fields,
    };
    (v, pointee)
}

/// Placeholder of a value the budget left out.
pub const BUDGET: &str = "<unavailable: capture budget exhausted>";

/// The 1-based line of the source `src` holding `marker` (exactly one).
pub fn marker_line(src: &Path, marker: &str) -> u32 {
    let text = std::fs::read_to_string(src).unwrap();
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(found.len(), 1, "{marker} in {}: {found:?}", src.display());
    found[0] as u32
}

/// Compares `var`'s members as Tracery captured them (`members`) with gdb's `print
/// var.NAME` at `line` of the binary `path`; returns the values that differ, described.
/// `printed` is a header gdb's printers write for one of the members: without it the
/// printers are loaded by hand (see [`LOAD_PRINTERS`]), and must then be active.
pub fn compare(
    path: &Path,
    line: u32,
    var: &str,
    members: &[(String, Value)],
    printed: &str,
) -> (usize, Vec<String>) {
    let cpp = SourceLanguage::Cpp.language();
    let (mut exprs, mut ours) = (Vec::new(), Vec::new());
    for (name, value) in members {
        let (value, pointee) = without_pointee(value);
        exprs.push(format!("{var}.{name}"));
        ours.push((name.clone(), addresses(&cpp.render(&value).flat())));
        // A weak_ptr has no operator*; its pointee is the shared_ptr's.
        if let Some(p) = pointee.filter(|_| name != "weak") {
            exprs.push(format!("*{var}.{name}"));
            ours.push((format!("*{name}"), cpp.render(&p).flat()));
        }
    }
    let active = |t: &[String]| t.iter().any(|t| t.starts_with(printed));
    let mut theirs = gdb(path, line, &exprs, false);
    if !active(&theirs) {
        // No printers auto-loaded: load them (see the module docs of differential_cpp).
        theirs = gdb(path, line, &exprs, true);
    }
    assert!(
        active(&theirs),
        "gdb's libstdc++ printers are not active: {theirs:#?}"
    );
    let mut bad = Vec::new();
    for ((name, mine), theirs) in ours.iter().zip(&theirs) {
        let theirs = addresses(theirs);
        if !same(mine, &theirs) {
            bad.push(format!("{name}:\n  tracery: {mine}\n  gdb:     {theirs}"));
        }
    }
    (ours.len(), bad)
}

/// Equal after the normalization of the module docs; an entry of ours that says the
/// budget was exhausted stands for any entry of gdb's holding a string too long to be
/// read from the node itself.
pub fn same(mine: &str, theirs: &str) -> bool {
    let (mh, me) = parts(mine);
    let (th, te) = parts(theirs);
    let (Some(mut me), Some(mut te)) = (me, te) else {
        return mine == theirs;
    };
    let short = |e: &String| !e.contains(BUDGET);
    if me.iter().any(|e| !short(e)) {
        let long = |e: &String| e.split('"').skip(1).step_by(2).any(|text| text.len() > 15);
        let (cut, kept): (Vec<String>, Vec<String>) = me.into_iter().partition(|e| !short(e));
        let unmatched: Vec<&String> = te.iter().filter(|e| !kept.contains(e)).collect();
        return mh == th
            && unmatched.len() == cut.len()
            && unmatched.iter().all(|e| long(e))
            && kept.iter().all(|e| te.contains(e));
    }
    if mh != th {
        return false;
    }
    // gdb's own `print elements` limit ends its list with `...`.
    if let Some(last) = te.last_mut() {
        if let Some(cut) = last.strip_suffix("...") {
            *last = cut.to_string();
        }
    }
    if me.last().is_some_and(|l| l.starts_with("... (")) {
        me.pop();
        return !me.is_empty() && te.len() >= me.len() && te[..me.len()] == me[..];
    }
    if mh.starts_with("std::unordered_") {
        // Sets of entries; a set's `[i] = ` labels follow the walk order, so drop them.
        let norm = |xs: &[String]| -> BTreeSet<String> {
            xs.iter()
                .map(|x| match x.split_once("] = ") {
                    Some((k, v)) if mh.contains("_set") && k.starts_with('[') => v.to_string(),
                    _ => x.clone(),
                })
                .collect()
        };
        return norm(&me) == norm(&te);
    }
    me == te
}
