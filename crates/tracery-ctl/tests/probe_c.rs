//! `tracery-ctl probe` on the C fixture: exact captured values at -O0 and -O2, PIE and
//! non-PIE, inlined code, and a three-deep stack.

mod common;

use common::*;
use serde_json::{json, Value};
use tracery_tests::FixtureProcess;

fn expected_order() -> Value {
    json!({
        "id": 42, "qty": 3, "price": 19.5, "paid": true,
        "ship": { "city": "Lisbon", "zip": 1100 },
        "items": [1, 2, 3, 4],
        "note": "fragile",
    })
}

fn check_after_total_o0(variant: &str) {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn(variant, &["serve"]);
    let hits = probe_json(p.pid(), &at("c_after_total"), 1, &[]);
    let h = &hits[0];
    assert_eq!(h["pid"], p.pid());
    assert_eq!(h["location"]["function"], "process_order");
    assert_eq!(base(h["location"]["file"].as_str().unwrap()), "orders.c");
    assert_eq!(h["location"]["line"], line_of("c_after_total"));
    assert_eq!(var(h, "id"), &json!(42));
    assert_eq!(var(h, "qty"), &json!(3));
    assert_eq!(var(h, "delta"), &json!(-7));
    assert_eq!(var(h, "price"), &json!(19.5));
    assert_eq!(var(h, "paid"), &json!(true));
    assert_eq!(var(h, "customer"), &json!("alice"));
    assert_eq!(var(h, "by_value"), &expected_order());
    let by_ptr = var(h, "by_ptr");
    assert!(
        by_ptr["address"].as_str().unwrap().starts_with("0x"),
        "{by_ptr}"
    );
    assert_eq!(by_ptr["target"], expected_order());
    // The local assigned mid-function: (int)(3 * 19.5) + -7.
    assert_eq!(var(h, "total"), &json!(51));
    assert_eq!(var_entry(h, "total")["kind"], "local");
    assert_eq!(var_entry(h, "id")["kind"], "arg");
    assert_eq!(var_entry(h, "id")["type"], "int");
    assert_eq!(var_entry(h, "qty")["type"], "unsigned int");
}

#[test]
fn c_o0_pie_exact_values() {
    check_after_total_o0("c-O0");
}

#[test]
fn c_o0_non_pie_exact_values() {
    check_after_total_o0("c-nopie");
}

#[test]
fn c_o2_values_are_exact_or_unavailable() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-O2", &["serve"]);
    let hits = probe_json(p.pid(), &at("c_after_total"), 1, &[]);
    let h = &hits[0];
    for (name, expected) in [
        ("id", json!(42)),
        ("qty", json!(3)),
        ("delta", json!(-7)),
        ("price", json!(19.5)),
        ("paid", json!(true)),
        ("customer", json!("alice")),
        ("by_value", expected_order()),
        ("total", json!(51)),
    ] {
        exact_or_unavailable(name, var(h, name), &expected);
    }
    let by_ptr = var(h, "by_ptr");
    if !is_unavailable(by_ptr) {
        assert_eq!(by_ptr["target"], expected_order());
    }
    // At -O2 gcc keeps `id` live in a register here; it must be read, not lost.
    let available = h["variables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| !is_unavailable(&v["value"]))
        .count();
    assert!(available >= 3, "too little captured at -O2: {h:#}");
}

#[test]
fn c_o2_inlined_function() {
    tracery_tests::require_root();
    let p = FixtureProcess::spawn("c-O2", &["serve"]);
    let hits = probe_json(p.pid(), &at("c_inline"), 1, &[]);
    let h = &hits[0];
    assert_eq!(h["location"]["function"], "apply_discount");
    // weighted = 51 + items[0] + ship.zip = 1152; cut = 1152 * 10 / 100.
    let f = "apply_discount";
    exact_or_unavailable("total", inlined_var(h, f, "total"), &json!(1152));
    exact_or_unavailable("percent", inlined_var(h, f, "percent"), &json!(10));
    exact_or_unavailable("cut", inlined_var(h, f, "cut"), &json!(115));
    let frames = stack_functions(h);
    assert_eq!(
        frames[..2],
        ["apply_discount", "process_order"],
        "{frames:?}"
    );
    assert_eq!(h["stack"][0]["inlined"], true);
}

#[test]
fn c_stack_three_calls_deep() {
    tracery_tests::require_root();
    for variant in ["c-O0", "c-O2"] {
        let p = FixtureProcess::spawn(variant, &["serve"]);
        let hits = probe_json(p.pid(), &at("c_level3"), 1, &[]);
        let h = &hits[0];
        let frames = stack_functions(h);
        assert_eq!(
            frames[..3],
            ["level3", "level2", "level1"],
            "{variant}: {frames:?}"
        );
        let src = tracery_tests::fixture_source("c");
        let text = std::fs::read_to_string(src).unwrap();
        for (i, (func, needle)) in [
            ("level3", "@probe:c_level3"),
            ("level2", "return level3(x + 2) + 1;"),
            ("level1", "return level2(x + 1) + 1;"),
        ]
        .iter()
        .enumerate()
        {
            let line = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
            let f = &h["stack"][i];
            assert_eq!(f["function"], *func);
            assert_eq!(base(f["file"].as_str().unwrap()), "orders.c", "{f}");
            assert_eq!(f["line"], line, "{variant}: frame {i} {f}");
        }
        assert_eq!(var(h, "x"), &json!(4), "{variant}");
        // Stack addresses are process addresses, like the location's.
        assert_eq!(h["stack"][0]["address"], h["location"]["address"]);
    }
}
