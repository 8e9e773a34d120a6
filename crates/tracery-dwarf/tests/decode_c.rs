//! C fixture, -O0 and -O2: plans compiled at marker lines, captured from the running fixture
//! by the emulator (tests/common/emulator.rs, which mirrors the kernel's capture.rs), decoded
//! and compared with the exact values the fixture passes.

#[path = "common/expect.rs"]
mod expect;
#[path = "common/snapshot.rs"]
mod snapshot;

use expect::{address, exact, exact_or_missing, unavailable};
use serde_json::json;
use snapshot::snapshot;
use tracery_dwarf::{render_text, Value, VarKind};

fn order() -> serde_json::Value {
    json!({
        "id": 42, "qty": 3, "price": 19.5, "paid": true,
        "ship": {"city": "Lisbon", "zip": 1100},
        "items": [1, 2, 3, 4], "note": "fragile"
    })
}

/// The -O0 values at `c_after_total`, for the PIE and the non-PIE build.
fn check_o0_after_total(variant: &str) {
    let s = snapshot(variant, "c_after_total");
    assert_eq!(s.plan.function(), "process_order");
    let names: Vec<_> = s
        .vars
        .iter()
        .map(|v| (v.name.as_str(), v.kind, v.frame.clone()))
        .collect();
    let arg = |n| (n, VarKind::Arg, None);
    let local = |n| (n, VarKind::Local, None);
    assert_eq!(
        names,
        [
            arg("id"),
            arg("qty"),
            arg("delta"),
            arg("price"),
            arg("paid"),
            arg("by_value"),
            arg("by_ptr"),
            arg("customer"),
            local("total"),
            local("weighted"),
            local("discounted"),
        ]
    );
    let types: Vec<_> = s.vars.iter().map(|v| v.type_name.as_str()).collect();
    assert_eq!(
        types,
        [
            "int",
            "unsigned int",
            "int",
            "double",
            "_Bool",
            "struct order",
            "struct order *",
            "const char *",
            "int",
            "int",
            "int",
        ]
    );
    assert_eq!(s.var("id", None).value, Value::Int(42));
    assert_eq!(s.var("qty", None).value, Value::UInt(3));
    assert_eq!(s.var("delta", None).value, Value::Int(-7));
    assert_eq!(s.var("price", None).value, Value::Float(19.5));
    assert_eq!(s.var("paid", None).value, Value::Bool(true));
    exact(s.var("by_value", None), order());
    address(s.var("by_ptr", None));
    exact(
        s.var("by_ptr", None),
        json!({"address": "0x?", "target": order()}),
    );
    exact(s.var("customer", None), json!("alice"));
    // The local assigned mid-function: (int)(3 * 19.5) - 7.
    assert_eq!(s.var("total", None).value, Value::Int(51));
    // Declared on the probed line and after it: their slots hold stale values.
    unavailable(
        s.var("weighted", None),
        "not assigned yet: declared at line",
    );
    unavailable(
        s.var("discounted", None),
        "not assigned yet: declared at line",
    );
}

#[test]
fn c_o0_values_at_a_line_after_a_local_is_assigned() {
    check_o0_after_total("c-O0");
}

#[test]
fn c_nopie_values_match_the_pie_build() {
    check_o0_after_total("c-nopie");
}

#[test]
fn c_o0_inlined_frame_has_its_own_variables() {
    let s = snapshot("c-O0", "c_inline");
    assert_eq!(s.plan.function(), "process_order");
    let f = Some("apply_discount");
    assert_eq!(s.var("total", f).value, Value::Int(1152));
    assert_eq!(s.var("percent", f).value, Value::Int(10));
    assert_eq!(s.var("cut", f).value, Value::Int(115));
    assert_eq!(s.var("total", f).kind, VarKind::Arg);
    assert_eq!(s.var("cut", f).kind, VarKind::Local);
    // The outer frame is at the call line: `weighted` is set, `discounted` not yet.
    assert_eq!(s.var("weighted", None).value, Value::Int(1152));
    assert_eq!(s.var("total", None).value, Value::Int(51));
    unavailable(s.var("discounted", None), "not assigned yet");
    let text = render_text(&s.vars, s.plan.language().language());
    let inlined = &text[text
        .find("inlined apply_discount:\n")
        .expect("an inlined frame")..];
    assert!(inlined.contains("\n  arg total: int = 1152\n"), "{text}");
    assert!(inlined.contains("\n  local cut: int = 115\n"), "{text}");
    assert!(
        text.contains("ship = {city = \"Lisbon\", zip = 1100}"),
        "{text}"
    );
}

#[test]
fn c_o0_function_entry_has_the_arguments() {
    let s = snapshot("c-O0", "c_entry");
    assert_eq!(s.var("id", None).value, Value::Int(42));
    assert_eq!(s.var("delta", None).value, Value::Int(-7));
    exact(s.var("by_value", None), order());
    exact(s.var("customer", None), json!("alice"));
}

/// At -O2 every value is exact or says why it is missing; the registers and memory that
/// DWARF does describe must decode to the fixture's values.
#[test]
fn c_o2_values_are_exact_or_unavailable() {
    let s = snapshot("c-O2", "c_after_total");
    let want = [
        ("id", json!(42)),
        ("qty", json!(3)),
        ("delta", json!(-7)),
        ("price", json!(19.5)),
        ("paid", json!(true)),
        ("by_value", order()),
        ("by_ptr", json!({"address": "0x?", "target": order()})),
        ("customer", json!("alice")),
        ("total", json!(51)),
        ("weighted", json!(1152)),
        ("discounted", json!(1037)),
    ];
    for (name, value) in want {
        exact_or_missing(s.var(name, None), value);
    }
    // What this GCC keeps reachable at the line: integer arguments in registers, the
    // struct in the caller's frame, the pointer and string through their registers.
    exact(s.var("id", None), json!(42));
    exact(s.var("qty", None), json!(3));
    exact(s.var("by_value", None), order());
    exact(
        s.var("by_ptr", None),
        json!({"address": "0x?", "target": order()}),
    );
    exact(s.var("customer", None), json!("alice"));
    // A double in xmm0 is not in a uprobe's registers.
    unavailable(s.var("price", None), "value in register xmm0");
}

#[test]
fn c_o2_inlined_function_is_probed_with_its_frame() {
    let s = snapshot("c-O2", "c_inline");
    let f = Some("apply_discount");
    exact_or_missing(s.var("total", f), json!(1152));
    exact_or_missing(s.var("percent", f), json!(10));
    exact_or_missing(s.var("cut", f), json!(115));
    exact_or_missing(s.var("weighted", None), json!(1152));
    // At least the inlined function's own data is there at -O2.
    exact(s.var("total", f), json!(1152));
    exact(s.var("cut", f), json!(115));
}
