//! Rust fixture, debug and release: &str, String, Vec<u32>, Option, an enum with data, a
//! struct behind a reference, Box and a tuple, captured by the emulator (see decode_c.rs).

#[path = "common/expect.rs"]
mod expect;
#[path = "common/snapshot.rs"]
mod snapshot;

use expect::{address, exact, exact_or_missing};
use serde_json::json;
use snapshot::snapshot;
use tracery_dwarf::{render_text, Value, VarKind};

fn order() -> serde_json::Value {
    json!({
        "id": 42, "qty": 3, "customer": "bob", "items": [1, 2, 3],
        "coupon": null, "status": "Pending"
    })
}

fn expected() -> Vec<(&'static str, &'static str, serde_json::Value)> {
    vec![
        ("name", "&str", json!("widget")),
        ("owner", "alloc::string::String", json!("alice")),
        (
            "items",
            "alloc::vec::Vec<u32, alloc::alloc::Global>",
            json!([10, 20, 30]),
        ),
        ("coupon", "core::option::Option<u32>", json!(5)),
        ("missing", "core::option::Option<u32>", json!(null)),
        (
            "status",
            "orders::Status",
            json!({"variant": "Paid", "fields": {"amount": 1250}}),
        ),
        (
            "order",
            "&orders::Order",
            json!({"address": "0x?", "target": order()}),
        ),
        (
            "boxed",
            "alloc::boxed::Box<u64, alloc::alloc::Global>",
            json!({"address": "0x?", "target": 99}),
        ),
        ("pair", "(i32, bool)", json!([-7, true])),
    ]
}

fn check_after_total(variant: &str) {
    let s = snapshot(variant, "rust_after_total");
    assert_eq!(s.plan.function(), "orders::process_order");
    for (name, ty, want) in expected() {
        let v = s.var(name, None);
        assert_eq!(v.kind, VarKind::Arg, "{name}");
        assert_eq!(v.type_name, ty, "{name}");
        exact(v, want);
    }
    // The local assigned mid-function: 10 + 20 + 30.
    let total = s.var("total", None);
    assert_eq!(
        (total.kind, total.value.clone()),
        (VarKind::Local, Value::UInt(60))
    );
    address(s.var("boxed", None));
    // The value tree keeps Rust's own shapes; only JSON flattens Option.
    assert_eq!(
        s.var("coupon", None).value,
        Value::Enum {
            name: "core::option::Option<u32>".into(),
            variant: "Some".into(),
            fields: vec![("__0".into(), Value::UInt(5))],
        }
    );
    let text = render_text(&s.vars, s.plan.language().language());
    for line in [
        "arg name: &str = \"widget\"\n",
        "arg items: alloc::vec::Vec<u32, alloc::alloc::Global> = [10, 20, 30]\n",
        "arg coupon: core::option::Option<u32> = Some(5)\n",
        "arg missing: core::option::Option<u32> = None\n",
        "arg status: orders::Status = Status::Paid { amount: 1250 }\n",
        "arg pair: (i32, bool) = (-7, true)\n",
        "local total: u64 = 60\n",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
}

#[test]
fn rust_debug_values() {
    check_after_total("rust-debug");
}

/// rustc -O passes `status` by reference through the stack, and LLVM describes the stack slot
/// without the dereference; the plan follows the reference (fetch_plan::rust_indirect_argument).
#[test]
fn rust_release_values() {
    check_after_total("rust-release");
}

#[test]
fn rust_inlined_function_in_both_builds() {
    for variant in ["rust-debug", "rust-release"] {
        let s = snapshot(variant, "rust_inline");
        let f = Some("orders::apply_discount");
        // weighted = 60 + 42 + 3; cut = 105 * 10 / 100.
        exact_or_missing(s.var("weighted", None), json!(105));
        exact_or_missing(s.var("percent", f), json!(10));
        exact(s.var("total", f), json!(105));
        exact(s.var("cut", f), json!(10));
        assert_eq!(s.var("total", f).kind, VarKind::Arg, "{variant}");
    }
}

/// At the signature line of a debug build, rustc's DWARF leaves a gap in the location lists
/// of `owner` and `status` while it moves them: those must say so, the rest be exact.
#[test]
fn rust_entry_arguments_are_exact_or_unavailable() {
    let s = snapshot("rust-debug", "rust_entry");
    for (name, _, want) in expected() {
        let v = s.var(name, None);
        match name {
            "owner" | "status" => exact_or_missing(v, want),
            _ => exact(v, want),
        }
    }
}
