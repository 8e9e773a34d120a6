//! `tracery-ctl probe` on the Rust fixture, debug and release with debug info.

mod common;

use common::*;
use serde_json::{json, Value};
use tracery_tests::FixtureProcess;

fn expected_order() -> Value {
    json!({
        "id": 42, "qty": 3, "customer": "bob", "items": [1, 2, 3],
        "coupon": null, "status": "Pending",
    })
}

/// Checks every argument and the local at the `rust_after_total` line. In debug builds all
/// must be exact; in release each is exact or reported unavailable.
fn check_after_total(variant: &str, strict: bool) {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn(variant, &["serve"]);
    let hits = probe_json(p.pid(), &at("rust_after_total"), 1, &[]);
    let h = &hits[0];
    assert_eq!(
        h["location"]["function"], "orders::process_order",
        "{variant}"
    );
    assert_eq!(h["location"]["line"], line_of("rust_after_total"));
    let check = |name: &str, expected: Value| check_var(h, variant, strict, name, &expected);
    check("name", json!("widget"));
    check("owner", json!("alice"));
    check("items", json!([10, 20, 30]));
    check("coupon", json!(5));
    check("missing", Value::Null);
    check(
        "status",
        json!({ "variant": "Paid", "fields": { "amount": 1250 } }),
    );
    check("pair", json!([-7, true]));
    check("total", json!(60));
    for (name, target) in [("order", expected_order()), ("boxed", json!(99))] {
        let v = var(h, name);
        if strict || !is_unavailable(v) {
            assert!(
                v["address"].as_str().unwrap().starts_with("0x"),
                "{name}: {v}"
            );
            assert_eq!(v["target"], target, "{variant}: {name}");
        }
    }
    assert_eq!(var_entry(h, "total")["kind"], "local");
    assert_eq!(var_entry(h, "name")["kind"], "arg");
    assert_eq!(var_entry(h, "name")["type"], "&str");
}

#[test]
fn rust_debug_exact_values() {
    check_after_total("rust-debug", true);
}

#[test]
fn rust_release_values_are_exact_or_unavailable() {
    check_after_total("rust-release", false);
}

#[test]
fn rust_release_inlined_function() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("rust-release", &["serve"]);
    let hits = probe_json(p.pid(), &at("rust_inline"), 1, &[]);
    let h = &hits[0];
    assert_eq!(h["location"]["function"], "orders::apply_discount");
    // weighted = 60 + 42 + 3 = 105; cut = 105 * 10 / 100 = 10.
    let f = "orders::apply_discount";
    exact_or_unavailable("total", inlined_var(h, f, "total"), &json!(105));
    exact_or_unavailable("percent", inlined_var(h, f, "percent"), &json!(10));
    exact_or_unavailable("cut", inlined_var(h, f, "cut"), &json!(10));
    // The caller's own `total` is in scope too, and distinct.
    exact_or_unavailable("process_order total", var(h, "total"), &json!(60));
    let frames = stack_functions(h);
    assert_eq!(
        frames[..2],
        ["orders::apply_discount", "orders::process_order"],
        "{frames:?}"
    );
}

#[test]
fn rust_stack_three_calls_deep() {
    tracery_tests::require_root();
    for variant in ["rust-debug", "rust-release"] {
        let p = FixtureProcess::spawn(variant, &["serve"]);
        let hits = probe_json(p.pid(), &at("rust_level3"), 1, &[]);
        let h = &hits[0];
        let frames = stack_functions(h);
        assert_eq!(
            frames[..3],
            ["orders::level3", "orders::level2", "orders::level1"],
            "{variant}: {frames:?}"
        );
        let text = std::fs::read_to_string(tracery_tests::fixture_source("rust")).unwrap();
        for (i, needle) in [
            "@probe:rust_level3",
            "level3(x + 2) + 1",
            "level2(x + 1) + 1",
        ]
        .iter()
        .enumerate()
        {
            let line = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
            let f = &h["stack"][i];
            assert_eq!(base(f["file"].as_str().unwrap()), "orders.rs", "{f}");
            assert_eq!(f["line"], line, "{variant}: frame {i} {f}");
        }
    }
}
