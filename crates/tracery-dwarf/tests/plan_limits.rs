//! Capture limits: string, element and depth caps, and a data budget that runs out. A value
//! the caps or the budget cut is marked, never silently missing.

#[path = "common/expect.rs"]
mod expect;
#[path = "common/snapshot.rs"]
mod snapshot;

use expect::{exact, matches_or_missing, without_addresses};
use serde_json::{json, Value as Json};
use snapshot::{snapshot, snapshot_with};
use tracery_common::{DATA_CAP, MAX_OPS};
use tracery_dwarf::{CaptureLimits, Value};

fn tight() -> CaptureLimits {
    CaptureLimits {
        max_string: 3,
        max_elements: 2,
        max_depth: 1,
        stack_bytes: 0,
    }
}

#[test]
fn strings_and_vectors_are_cut_at_their_caps_and_say_so() {
    let s = snapshot_with("rust-debug", "rust_after_total", &tight());
    assert_eq!(s.plan.config.stack_bytes, 0);
    assert_eq!(
        s.var("name", None).value,
        Value::Str {
            text: "wid".into(),
            truncated: true
        }
    );
    assert_eq!(
        s.var("owner", None).value,
        Value::Str {
            text: "ali".into(),
            truncated: true
        }
    );
    assert_eq!(
        s.var("items", None).value,
        Value::Array {
            items: vec![Value::UInt(10), Value::UInt(20)],
            total: Some(3)
        }
    );
    // One hop: the order is read, the strings and vectors inside it are not.
    let depth = json!({"unavailable": "not captured: pointer depth limit"});
    exact(
        s.var("order", None),
        json!({"address": "0x?", "target": {
            "id": 42, "qty": 3, "customer": depth, "items": depth,
            "coupon": null, "status": "Pending"}}),
    );
    exact(
        s.var("boxed", None),
        json!({"address": "0x?", "target": 99}),
    );
}

#[test]
fn depth_zero_captures_pointers_but_not_their_targets() {
    let limits = CaptureLimits {
        max_depth: 0,
        ..CaptureLimits::default()
    };
    let s = snapshot_with("c-O0", "c_after_total", &limits);
    for name in ["by_ptr", "customer"] {
        match &s.var(name, None).value {
            Value::Pointer {
                address,
                target: None,
            } if *address != 0 => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    let note = s.var("by_value", None).value.to_json()["note"].clone();
    assert_eq!(
        without_addresses(&note),
        json!({"address": "0x?", "target": null})
    );
    assert_eq!(s.var("id", None).value, Value::Int(42));
}

fn contains_budget(j: &Json) -> bool {
    match j {
        Json::Object(m) => {
            m.get("unavailable") == Some(&json!("capture budget exhausted"))
                || m.values().any(contains_budget)
        }
        Json::Array(a) => a.iter().any(contains_budget),
        _ => false,
    }
}

/// Huge caps make the payloads outgrow the data area: later follows are refused and decode
/// as "capture budget exhausted"; every variable is still there, exact or marked.
#[test]
fn an_exhausted_budget_is_reported_not_hidden() {
    let limits = CaptureLimits {
        max_string: 4000,
        max_elements: 1000,
        ..CaptureLimits::default()
    };
    let full = snapshot("rust-debug", "rust_after_total");
    let s = snapshot_with("rust-debug", "rust_after_total", &limits);
    assert!(s.plan.config.data_size as usize <= DATA_CAP);
    assert!(s.plan.config.n_ops as usize <= MAX_OPS);
    let names =
        |vars: &[tracery_dwarf::Variable]| vars.iter().map(|v| v.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&s.vars), names(&full.vars));
    let mut cut = 0;
    for (v, f) in s.vars.iter().zip(&full.vars) {
        let got = without_addresses(&v.value.to_json());
        let want = without_addresses(&f.value.to_json());
        if let Err(e) = matches_or_missing(&got, &want) {
            panic!("{}: {e}", v.name);
        }
        if contains_budget(&got) {
            cut += 1;
        }
    }
    assert!(cut > 0, "nothing ran out of budget: {:#?}", s.vars);
    // Depth 1 in variable order: the two strings take 8000 bytes, the vector and the
    // struct behind `order` do not fit, the boxed u64 still does.
    exact(s.var("name", None), json!("widget"));
    exact(s.var("owner", None), json!("alice"));
    exact(
        s.var("items", None),
        json!({"unavailable": "capture budget exhausted"}),
    );
    exact(
        s.var("order", None),
        json!({"address": "0x?", "target": {"unavailable": "capture budget exhausted"}}),
    );
    exact(
        s.var("boxed", None),
        json!({"address": "0x?", "target": 99}),
    );
    // Variables come first: every variable's own bytes were captured.
    assert_eq!(s.var("total", None).value, Value::UInt(60));
    assert_eq!(s.var("pair", None).value.to_json(), json!([-7, true]));
}
