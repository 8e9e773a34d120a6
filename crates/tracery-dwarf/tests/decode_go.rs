//! Go fixture, optimized and `-N -l`: string, slice, struct by value, pointer to struct, and
//! an inlined function, captured by the emulator (see decode_c.rs).

#[path = "common/expect.rs"]
mod expect;
#[path = "common/snapshot.rs"]
mod snapshot;

use expect::{address, exact, exact_or_missing, unavailable};
use serde_json::json;
use snapshot::snapshot;
use tracery_dwarf::{render_text, VarKind};

fn order() -> serde_json::Value {
    json!({"ID": 42, "Customer": "bob", "Items": [1, 2, 3], "Paid": true})
}

fn expected() -> Vec<(&'static str, &'static str, serde_json::Value)> {
    vec![
        ("name", "string", json!("widget")),
        ("items", "[]int", json!([10, 20, 30])),
        ("o", "main.Order", order()),
        (
            "p",
            "*main.Order",
            json!({"address": "0x?", "target": order()}),
        ),
    ]
}

#[test]
fn go_noopt_values() {
    let s = snapshot("go-noopt", "go_after_total");
    assert_eq!(s.plan.function(), "main.processOrder");
    for (name, ty, want) in expected() {
        let v = s.var(name, None);
        assert_eq!((v.kind, v.type_name.as_str()), (VarKind::Arg, ty), "{name}");
        exact(v, want);
    }
    address(s.var("p", None));
    // The local assigned mid-function: 10 + 20 + 30.
    exact(s.var("total", None), json!(60));
    // Declared below the probed line: not values yet.
    unavailable(
        s.var("discounted", None),
        "not assigned yet: declared at line",
    );
    unavailable(s.var("paid", None), "not assigned yet: declared at line");
    let text = render_text(&s.vars, s.plan.language().language());
    assert!(
        text.contains("arg o: main.Order = main.Order{ID: 42, Customer: \"bob\", Items: [1, 2, 3], Paid: true}\n"),
        "{text}"
    );
}

#[test]
fn go_optimized_values_are_exact_or_unavailable() {
    let s = snapshot("go", "go_after_total");
    for (name, _, want) in expected() {
        exact_or_missing(s.var(name, None), want);
    }
    exact_or_missing(s.var("total", None), json!(60));
    // What Go 1.19 keeps at this line: the slice in registers, the struct on the stack,
    // the pointer, and `total`. The string's registers are reused by then.
    exact(s.var("items", None), json!([10, 20, 30]));
    exact(s.var("o", None), order());
    exact(
        s.var("p", None),
        json!({"address": "0x?", "target": order()}),
    );
    exact(s.var("total", None), json!(60));
}

#[test]
fn go_entry_has_register_arguments() {
    for variant in ["go", "go-noopt"] {
        let s = snapshot(variant, "go_entry");
        for (name, _, want) in expected() {
            exact(s.var(name, None), want);
        }
    }
}

#[test]
fn go_inlined_function_is_a_frame() {
    // discount(105): cut = 10.
    let s = snapshot("go", "go_inline");
    assert_eq!(s.plan.function(), "main.processOrder");
    exact(s.var("cut", Some("main.discount")), json!(10));
    exact_or_missing(s.var("o", None), order());
    // Without optimization it is a call, not an inlined frame.
    let s = snapshot("go-noopt", "go_inline");
    assert_eq!(s.plan.function(), "main.discount");
    exact(s.var("total", None), json!(105));
    exact(s.var("cut", None), json!(10));
}
