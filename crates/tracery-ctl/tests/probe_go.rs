//! `tracery-ctl probe` on the Go fixture (Go 1.19, register ABI, compressed DWARF).

mod common;

use common::*;
use serde_json::{json, Value};
use tracery_tests::FixtureProcess;

fn expected_order() -> Value {
    json!({ "ID": 42, "Customer": "bob", "Items": [1, 2, 3], "Paid": true })
}

fn check_after_total(variant: &str, strict: bool) {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn(variant, &["serve"]);
    let hits = probe_json(p.pid(), &at("go_after_total"), 1, &[]);
    let h = &hits[0];
    assert_eq!(h["location"]["function"], "main.processOrder");
    assert_eq!(h["location"]["line"], line_of("go_after_total"));
    let check = |name: &str, expected: Value| check_var(h, variant, strict, name, &expected);
    check("name", json!("widget"));
    check("items", json!([10, 20, 30]));
    check("o", expected_order());
    check("total", json!(60));
    let p_val = var(h, "p");
    if strict || !is_unavailable(p_val) {
        assert!(
            p_val["address"].as_str().unwrap().starts_with("0x"),
            "{p_val}"
        );
        assert_eq!(p_val["target"], expected_order());
    }
    assert_eq!(var_entry(h, "name")["type"], "string");
}

#[test]
fn go_unoptimized_exact_values() {
    check_after_total("go-noopt", true);
}

#[test]
fn go_optimized_values_are_exact_or_unavailable() {
    check_after_total("go", false);
}

#[test]
fn go_inlined_function() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("go", &["serve"]);
    let hits = probe_json(p.pid(), &at("go_inline"), 1, &[]);
    let h = &hits[0];
    assert_eq!(h["location"]["function"], "main.discount");
    // sink = 60 + 42 + 3 = 105; cut = 10.
    // Go 1.19 emits no DWARF for the inlined copy of `total`; `cut` it does describe.
    exact_or_unavailable("cut", inlined_var(h, "main.discount", "cut"), &json!(10));
    let frames = stack_functions(h);
    assert_eq!(
        frames[..2],
        ["main.discount", "main.processOrder"],
        "{frames:?}"
    );
}

#[test]
fn go_stack_three_calls_deep() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("go", &["serve"]);
    let hits = probe_json(p.pid(), &at("go_level3"), 1, &[]);
    let frames = stack_functions(&hits[0]);
    assert_eq!(
        frames[..3],
        ["main.level3", "main.level2", "main.level1"],
        "{frames:?}"
    );
}
