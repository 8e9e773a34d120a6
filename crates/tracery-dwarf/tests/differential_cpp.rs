//! Differential test: C++ standard-library values as Tracery captures and renders them,
//! against gdb's libstdc++ pretty printers (tests/programs/containers.cpp), -O0 and -O2.
//!
//! gdb (Debian's /usr/bin/gdb, `cargo xtask setup`) stops the program at the `@here` line
//! and prints each member of `v` with `print v.NAME`; Tracery stops its own run of the same
//! binary there (the capture emulator running the real fetch plan) and renders the same
//! members as C++. Normalization, the only liberties taken:
//!
//! - a smart pointer's `get() = 0x...` is compared as "null" or "an address": the two runs
//!   differ in address-space layout (gdb turns ASLR off). Tracery also shows the pointee
//!   (`0x... -> {x = 3, y = 4}`); that is compared with gdb's `print *v.NAME` on its own;
//! - Tracery writes a null pointer `NULL`, gdb `0x0`;
//! - `std::unordered_*` entries are compared as sets (gdb and Tracery both walk the node
//!   list, but the standard leaves the order unspecified);
//! - a container cut by a capture cap (`... (16 of 1000 shown)`) must show exactly its
//!   first entries as gdb prints them, and the same header (the full count);
//! - under a tight budget (`tight`), an entry reading `capture budget exhausted` stands for
//!   a gdb entry holding a string too long for the in-place buffer (short ones are read
//!   from the node's own bytes), and nothing else may differ.
//!
//! When gdb's libstdc++ printers are not auto-loaded (no `libstdc++.so.6.*-gdb.py` under
//! /usr/share/gdb/auto-load), the test loads them from /usr/share/gcc/python itself.

#[path = "common/programs.rs"]
mod programs;
#[path = "common/snapshot.rs"]
mod snapshot;

use std::{collections::BTreeSet, path::Path, process::Command};

use snapshot::emulator::{capture_with, Program, Run};
use tracery_dwarf::{
    compile_plan, decode, functions, resolve, Binary, CaptureLimits, SourceLanguage, Symbolizer,
    Value, Variable,
};

/// Registers the printers by hand when gdb did not auto-load them.
const LOAD_PRINTERS: &str = "python import sys; sys.path.insert(0, '/usr/share/gcc/python'); \
from libstdcxx.v6.printers import register_libstdcxx_printers; register_libstdcxx_printers(None)";

/// 80-byte strings and 4 entries per container: every value of the fixture but the
/// 1000-entry map then fits the 8 KiB data budget whole (each walk reserves its cap in
/// nodes, each string its cap in bytes, whatever the hit turns out to hold).
fn roomy() -> CaptureLimits {
    CaptureLimits {
        max_string: 80,
        max_elements: 4,
        ..CaptureLimits::default()
    }
}

/// `v`'s members as Tracery captured them at the `@here` line.
fn tracery(path: &Path, line: u32, limits: &CaptureLimits) -> Vec<(String, Value)> {
    let binary = Binary::open(path).unwrap();
    let site = resolve(&binary, &format!("containers.cpp:{line}"))
        .unwrap()
        .remove(0);
    let plan = compile_plan(&binary, site.address, limits).unwrap();
    assert_eq!(plan.language(), SourceLanguage::Cpp);
    let run = Run {
        program: Program::Path(path),
        args: &[],
        start_line: true,
    };
    let hit = capture_with(&run, &binary, plan.address(), |bias| plan.relocate(bias));
    let vars: Vec<Variable> = decode(&binary, &plan, &hit.header, &hit.data);
    let v = vars.iter().find(|v| v.name == "v").expect("v in scope");
    match &v.value {
        Value::Pointer {
            target: Some(t), ..
        } => match &**t {
            Value::Struct { fields, .. } => fields.clone(),
            other => panic!("v is not a struct: {other:?}"),
        },
        other => panic!("v (a reference) was not followed: {other:?}"),
    }
}

/// gdb's `print EXPR` output for each of `exprs`, in order.
fn gdb(path: &Path, line: u32, exprs: &[String], load: bool) -> Vec<String> {
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
fn split_top(s: &str) -> Vec<String> {
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
fn parts(s: &str) -> (String, Option<Vec<String>>) {
    match s.split_once(" = {") {
        Some((head, rest)) if head.starts_with("std::") && rest.ends_with('}') => {
            (head.to_string(), Some(split_top(&rest[..rest.len() - 1])))
        }
        _ => (s.to_string(), None),
    }
}

/// Pointer addresses as null / non-null (see the module docs).
fn addresses(s: &str) -> String {
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
fn without_pointee(v: &Value) -> (Value, Option<Value>) {
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

/// 16 entries per container: the nodes' copies then take most of the data area, and the
/// long strings inside nodes find no room. Those may read `capture budget exhausted`;
/// everything else, short strings in nodes included (read from the node's own bytes),
/// must still match gdb.
fn tight() -> CaptureLimits {
    CaptureLimits {
        max_elements: 16,
        ..roomy()
    }
}

/// Placeholder of a value the budget left out.
const BUDGET: &str = "<unavailable: capture budget exhausted>";

fn check(variant: &str, limits: &CaptureLimits) {
    let path = programs::build(variant);
    let line = programs::here("containers.cpp");
    let members = tracery(&path, line, limits);
    let cpp = SourceLanguage::Cpp.language();
    let (mut exprs, mut ours) = (Vec::new(), Vec::new());
    for (name, value) in &members {
        let (value, pointee) = without_pointee(value);
        exprs.push(format!("v.{name}"));
        ours.push((name.clone(), addresses(&cpp.render(&value).flat())));
        // A weak_ptr has no operator*; its pointee is the shared_ptr's.
        if let Some(p) = pointee.filter(|_| name != "weak") {
            exprs.push(format!("*v.{name}"));
            ours.push((format!("*{name}"), cpp.render(&p).flat()));
        }
    }
    let mut theirs = gdb(&path, line, &exprs, false);
    if !theirs[0].starts_with('"') {
        // No printers: a raw basic_string. Load them (see the module docs).
        theirs = gdb(&path, line, &exprs, true);
    }
    assert!(
        theirs
            .iter()
            .any(|t| t.starts_with("std::vector of length")),
        "gdb's libstdc++ printers are not active: {theirs:#?}"
    );
    let mut bad = Vec::new();
    for ((name, mine), theirs) in ours.iter().zip(&theirs) {
        let theirs = addresses(theirs);
        if !same(mine, &theirs) {
            bad.push(format!("{name}:\n  tracery: {mine}\n  gdb:     {theirs}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{variant}: {} of {} values differ:\n{}",
        bad.len(),
        ours.len(),
        bad.join("\n")
    );
}

/// Equal after the normalization of the module docs; an entry of ours that says the
/// budget was exhausted stands for any entry of gdb's holding a string too long to be
/// read from the node itself.
fn same(mine: &str, theirs: &str) -> bool {
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

#[test]
fn std_values_match_gdb_printers_at_o0() {
    check("containers-O0", &roomy());
}

#[test]
fn std_values_match_gdb_printers_at_o2() {
    check("containers-O2", &roomy());
}

#[test]
fn a_tight_budget_leaves_out_only_long_strings_in_nodes() {
    check("containers-O0", &tight());
    check("containers-O2", &tight());
}

/// C++ names read demangled: the listing (`symbols`), and frames, which addr2line names by
/// their linkage names (`_Z7inspectR6Values`).
#[test]
fn cpp_names_are_demangled() {
    let path = programs::build("containers-O0");
    let binary = Binary::open(&path).unwrap();
    let listed: Vec<String> = functions(&binary, None)
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(listed.iter().any(|n| n == "inspect"), "{listed:?}");
    let mangled: Vec<&String> = listed.iter().filter(|n| n.starts_with("_Z")).collect();
    assert!(mangled.is_empty(), "mangled names listed: {mangled:?}");
    let line = programs::here("containers.cpp");
    let site = resolve(&binary, &format!("containers.cpp:{line}"))
        .unwrap()
        .remove(0);
    let frames = Symbolizer::new(&binary)
        .unwrap()
        .frames(site.address, false);
    let names: Vec<&str> = frames.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(names, ["inspect(Values&)"], "{frames:?}");
}
