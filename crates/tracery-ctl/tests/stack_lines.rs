//! Every frame of a live stack carries its line: real uprobes on the C (-O0, -O2), Rust
//! (debug, release) and Go (optimized, `-N -l`) fixtures, at the probe sites the other
//! end-to-end tests use. The one frame allowed no line is rustc's generated C `main`
//! shim, which has no DWARF at all (no file either); it is checked to be exactly that.

mod common;

use common::*;
use serde_json::Value;
use tracery_tests::FixtureProcess;

/// Variants, their probe markers, and the language's main function, which every stack
/// here must reach.
const CASES: &[(&str, &[&str], &str)] = &[
    ("c-O0", &["c_level3", "c_inline", "c_after_total"], "main"),
    ("c-O2", &["c_level3", "c_inline", "c_after_total"], "main"),
    (
        "rust-debug",
        &["rust_level3", "rust_inline", "rust_after_total"],
        "orders::main",
    ),
    (
        "rust-release",
        &["rust_level3", "rust_inline", "rust_after_total"],
        "orders::main",
    ),
    ("go", &["go_level3", "go_after_total"], "main.main"),
    ("go-noopt", &["go_level3", "go_after_total"], "main.main"),
];

fn check(variant: &str, marker: &str, root: &str, h: &Value) {
    let stack = h["stack"].as_array().expect("stack array");
    let functions = stack_functions(h);
    assert!(
        functions.iter().any(|f| f == root),
        "{variant} {marker}: no {root} in {functions:?}"
    );
    for (i, f) in stack.iter().enumerate() {
        let line = f.get("line").and_then(Value::as_u64).unwrap_or(0);
        if line > 0 {
            assert!(f["file"].is_string(), "{variant} {marker}: frame {i} {f}");
            continue;
        }
        // rustc's `main` shim: outermost, named by its ELF symbol, no DWARF.
        let shim = variant.starts_with("rust")
            && f["function"] == "main"
            && f.get("file").is_none_or(Value::is_null)
            && i == stack.len() - 1;
        assert!(
            shim,
            "{variant} {marker}: frame {i} has no line: {f}\n{:#}",
            h["stack"]
        );
    }
}

#[test]
fn every_frame_of_the_fixture_stacks_has_a_line() {
    tracery_tests::require_root();
    for (variant, markers, root) in CASES {
        let p = FixtureProcess::spawn(variant, &["serve"]);
        for marker in *markers {
            let hits = probe_json(p.pid(), &at(marker), 1, &[]);
            let h = &hits[0];
            check(variant, marker, root, h);
            let frames = h["stack"].as_array().map_or(0, Vec::len);
            let lined = h["stack"].as_array().map_or(0, |s| {
                s.iter().filter(|f| f["line"].as_u64().is_some()).count()
            });
            println!("{variant} {marker}: {frames} frames, {lined} with a line");
        }
    }
}
