//! Differential test: C++ standard-library values as Tracery captures and renders them,
//! against gdb's libstdc++ pretty printers (tests/programs/containers.cpp), -O0 and -O2.
//! Two stops: `@here` (`v`'s members) and `@queues` (`q`'s deques, a plan of their own).
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
//!   first entries as gdb prints them, and the same header (the full count); gdb's own
//!   `print elements` limit (`...` after 200) is taken off its list;
//! - under a tight budget (`tight`), an entry reading `capture budget exhausted` stands for
//!   a gdb entry holding a string too long for the in-place buffer (short ones are read
//!   from the node's own bytes), and nothing else may differ.
//!
//! When gdb's libstdc++ printers are not auto-loaded (no `libstdc++.so.6.*-gdb.py` under
//! /usr/share/gdb/auto-load), the test loads them from /usr/share/gcc/python itself.

#[path = "common/gdb_cpp.rs"]
mod gdb_cpp;
#[path = "common/programs.rs"]
mod programs;
#[path = "common/snapshot.rs"]
mod snapshot;

use std::path::Path;

use snapshot::emulator::{capture_with, Program, Run};
use tracery_dwarf::{
    compile_plan, decode, functions, resolve, Binary, CaptureLimits, SourceLanguage, Symbolizer,
    Value, Variable,
};

/// `var`'s members as Tracery captured them at `line`.
fn tracery(path: &Path, line: u32, var: &str, limits: &CaptureLimits) -> Vec<(String, Value)> {
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
    gdb_cpp::struct_members(&vars, var)
}

/// The line of containers.cpp holding `marker`.
fn marker_line(marker: &str) -> u32 {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/containers.cpp");
    gdb_cpp::marker_line(&src, marker)
}

/// 16 entries per container: the nodes' copies then take most of the data area, and the
/// long strings inside nodes find no room. Those may read `capture budget exhausted`;
/// everything else, short strings in nodes included (read from the node's own bytes),
/// must still match gdb.
fn tight() -> CaptureLimits {
    CaptureLimits {
        max_elements: 16,
        ..gdb_cpp::roomy()
    }
}

fn check(variant: &str, limits: &CaptureLimits) {
    let path = programs::build(variant);
    let line = programs::here("containers.cpp");
    let members = tracery(&path, line, "v", limits);
    let (n, bad) = gdb_cpp::compare(&path, line, "v", &members, "std::vector of length");
    assert!(
        bad.is_empty(),
        "{variant}: {} of {n} values differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// `q`'s deques against gdb; returns them as captured.
fn check_queues(variant: &str, limits: &CaptureLimits) -> Vec<(String, Value)> {
    let path = programs::build(variant);
    let line = marker_line("@queues");
    let members = tracery(&path, line, "q", limits);
    let (n, bad) = gdb_cpp::compare(&path, line, "q", &members, "std::deque with");
    assert!(
        bad.is_empty(),
        "{variant}: {} of {n} deques differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
    members
}

#[test]
fn std_values_match_gdb_printers_at_o0() {
    check("containers-O0", &gdb_cpp::roomy());
}

#[test]
fn std_values_match_gdb_printers_at_o2() {
    check("containers-O2", &gdb_cpp::roomy());
}

#[test]
fn a_tight_budget_leaves_out_only_long_strings_in_nodes() {
    check("containers-O0", &tight());
    check("containers-O2", &tight());
}

/// Deques (elements spanning nodes, a first node of one element, strings, empty, and 300
/// elements over five nodes) at both optimization levels and both budgets. The 300-element
/// deque says how many it holds and how many are shown.
#[test]
fn deques_match_gdb_printers() {
    for variant in ["containers-O0", "containers-O2"] {
        for (limits, shown) in [(gdb_cpp::roomy(), 4), (tight(), 16)] {
            let members = check_queues(variant, &limits);
            let (_, long) = members.iter().find(|(n, _)| n == "long_queue").unwrap();
            let text = SourceLanguage::Cpp.language().render(long).flat();
            assert!(
                text.starts_with("std::deque with 300 elements = {-10, -9, "),
                "{text}"
            );
            assert!(
                text.ends_with(&format!(", ... ({shown} of 300 shown)}}")),
                "{text}"
            );
        }
    }
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
