//! C++ standard-library values through the real kernel capture (the uprobe, its fetch plan
//! and the kernel's tree and chain walks), compared with gdb's libstdc++ pretty printers as
//! tracery-dwarf's differential_cpp.rs compares its emulated capture, with the same
//! normalization (tracery-dwarf/tests/common/gdb_cpp.rs). The fixture is
//! crates/tracery-dwarf/tests/programs/containers.cpp at -O0 and -O2: it prints `ready` and
//! waits for a line on stdin, so the breakpoint is armed before it builds its values. Two
//! stops, one run each: `@here` (`v`: strings, vectors, maps, hash tables, smart pointers,
//! optionals, variants) and `@queues` (`q`: deques).

#[path = "../../tracery-dwarf/tests/common/gdb_cpp.rs"]
mod gdb_cpp;
#[path = "common/one_hit.rs"]
mod one_hit;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use one_hit::one_hit;
use tracery_dwarf::{CaptureLimits, SourceLanguage, Value};

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tracery-dwarf/tests/programs/containers.cpp")
}

/// The fixture built with `g++ -g -{opt}` (`O0`, `O2`), once per test process and level.
/// Built under a temporary name and renamed, so a concurrent test never runs half a file.
fn program(opt: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(o, _)| o == opt) {
        return p.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = dir.join(format!("std-values-containers-{opt}"));
    let tmp = dir.join(format!(
        "std-values-containers-{opt}.tmp{}",
        std::process::id()
    ));
    let status = Command::new("g++")
        .args(["-std=c++17", "-g", &format!("-{opt}"), "-o"])
        .arg(&tmp)
        .arg(source())
        .status()
        .expect("g++");
    assert!(status.success(), "building containers.cpp -{opt}");
    std::fs::rename(&tmp, &out).unwrap();
    built.push((opt.to_string(), out.clone()));
    out
}

/// Runs `exe`, stops it at `line` through the real uprobe and fetch plan, and returns the
/// members of `var` (a reference to a struct) as the kernel captured them.
fn capture(exe: &Path, line: u32, var: &str, limits: &CaptureLimits) -> Vec<(String, Value)> {
    let location = format!("containers.cpp:{line}");
    let (snap, mut child) = one_hit(Command::new(exe), &location, limits);
    let _ = child.wait();
    gdb_cpp::struct_members(&snap.variables, var)
}

/// Captures `var` at `marker` in the fixture built at `opt` and compares it with gdb.
fn check(opt: &str, marker: &str, var: &str, printed: &str) -> Vec<(String, Value)> {
    let exe = program(opt);
    let line = gdb_cpp::marker_line(&source(), marker);
    let members = capture(&exe, line, var, &gdb_cpp::roomy());
    let (n, bad) = gdb_cpp::compare(&exe, line, var, &members, printed);
    assert!(
        bad.is_empty(),
        "-{opt} {marker}: {} of {n} values differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
    members
}

/// The rendering of member `name`.
fn rendered(members: &[(String, Value)], name: &str) -> String {
    let (_, v) = members
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no member {name}"));
    SourceLanguage::Cpp.language().render(v).flat()
}

fn values_match(opt: &str) {
    let members = check(opt, "@here", "v", "std::vector of length");
    // What the comparison covered, stated: these must be printer values, not raw structs.
    for (name, head) in [
        (
            "groups",
            "std::map with 3 elements = {[\"a\"] = std::vector of length 2",
        ),
        ("counts", "std::unordered_map with 3 elements = {"),
        (
            "shared",
            "std::shared_ptr<Point> (use count 2, weak count 1) = {get() = 0x",
        ),
        ("maybe", "std::optional<int> = {[contained value] = 42}"),
        ("nothing", "std::optional<std::string> [no contained value]"),
        ("big", "std::map with 1000 elements = {[0] = 0, "),
    ] {
        let text = rendered(&members, name);
        assert!(text.starts_with(head), "{name}: {text}");
    }
}

fn deques_match(opt: &str) {
    let members = check(opt, "@queues", "q", "std::deque with");
    let queue = rendered(&members, "queue");
    assert_eq!(
        queue,
        "std::deque with 6 elements = {0, 1, 2, 3, ... (4 of 6 shown)}"
    );
    let long = rendered(&members, "long_queue");
    assert_eq!(
        long,
        "std::deque with 300 elements = {-10, -9, -8, -7, ... (4 of 300 shown)}"
    );
}

#[test]
fn cpp_std_values_captured_in_the_kernel_match_gdb_at_o0() {
    if !tracery_tests::is_root() {
        println!("SKIPPED: attaching uprobes needs root");
        return;
    }
    values_match("O0");
}

#[test]
fn cpp_std_values_captured_in_the_kernel_match_gdb_at_o2() {
    if !tracery_tests::is_root() {
        println!("SKIPPED: attaching uprobes needs root");
        return;
    }
    values_match("O2");
}

#[test]
fn cpp_deques_captured_in_the_kernel_match_gdb() {
    if !tracery_tests::is_root() {
        println!("SKIPPED: attaching uprobes needs root");
        return;
    }
    deques_match("O0");
    deques_match("O2");
}
