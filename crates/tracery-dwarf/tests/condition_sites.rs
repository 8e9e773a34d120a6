//! Which `--when` comparisons the kernel checks at real fixture probe sites (no root).

#[path = "common/binaries.rs"]
mod binaries;

use binaries::{marker, open};
use tracery_common::{CmpOp, OpKind};
use tracery_dwarf::{
    compile_plan,
    condition::{compile, parse, ConditionError, KernelSplit},
    resolve, CaptureLimits, CapturePlan,
};

fn plan_at(variant: &str, location: &str) -> CapturePlan {
    let b = open(variant);
    let site = resolve(&b, location).unwrap().remove(0);
    compile_plan(&b, site.address, &CaptureLimits::default()).unwrap()
}

fn after_total_o0() -> CapturePlan {
    let (file, line) = marker("c_after_total");
    plan_at("c-O0", &format!("{file}:{line}"))
}

fn split(plan: &CapturePlan, src: &str) -> KernelSplit {
    compile(&parse(src).unwrap(), plan).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn kernel_texts(s: &KernelSplit) -> Vec<String> {
    s.kernel.iter().map(ToString::to_string).collect()
}

/// Each condition reads bytes an op at or before `cond_ops` writes.
fn check_slots(plan: &CapturePlan, s: &KernelSplit) {
    assert!(s.cond_ops <= plan.config.n_ops);
    for c in &s.conds {
        assert!(c.op_index < s.cond_ops, "{c:?}");
        let op = &plan.config.ops[c.op_index as usize];
        let len = if op.kind == OpKind::Value as u8 {
            8
        } else {
            op.len
        };
        assert!(
            op.out <= c.slot && c.slot + u16::from(c.size) <= op.out + len,
            "{c:?} {op:?}"
        );
    }
}

#[test]
fn c_o0_scalars_go_to_the_kernel_strings_stay_in_user_space() {
    let plan = after_total_o0();
    let s = split(
        &plan,
        "id == 42 && by_value.qty > 2 && customer == \"alice\"",
    );
    assert_eq!(kernel_texts(&s), ["id == 42", "by_value.qty > 2"]);
    assert_eq!(
        s.rest.as_ref().unwrap().to_string(),
        "customer == \"alice\""
    );
    let [id, qty] = [s.conds[0], s.conds[1]];
    assert_eq!(
        (id.value, id.size, id.signed, id.op),
        (42, 4, 1, CmpOp::Eq as u8)
    );
    assert_eq!(
        (qty.value, qty.size, qty.signed, qty.op),
        (2, 4, 0, CmpOp::Gt as u8)
    );
    // by_value.qty is 4 bytes into the struct that holds `id` first.
    let by_value = plan.scalar_slot(&["by_value", "id"]).unwrap();
    assert_eq!(
        plan.scalar_slot(&["by_value", "qty"]).unwrap().offset,
        by_value.offset + 4
    );
    check_slots(&plan, &s);
    assert_eq!(s.cond_ops, id.op_index.max(qty.op_index) + 1);

    let mut cfg = plan.config;
    s.apply(&mut cfg);
    assert_eq!((cfg.n_conds, cfg.cond_ops), (2, s.cond_ops));
    assert_eq!(cfg.conds[..2], s.conds[..]);
}

#[test]
fn c_o0_fields_behind_pointers_and_bools() {
    let plan = after_total_o0();
    let s = split(&plan, "by_ptr.ship.zip >= 1100 && paid == 1 && delta < 0");
    assert_eq!(
        kernel_texts(&s),
        ["by_ptr.ship.zip >= 1100", "paid == 1", "delta < 0"]
    );
    assert!(s.rest.is_none());
    check_slots(&plan, &s);
    // The zip is read through the pointer: its op depends on the op loading `by_ptr`.
    let zip = plan.scalar_slot(&["by_ptr", "ship", "zip"]).unwrap();
    let op = plan.config.ops[zip.op_index as usize];
    assert!((op.base_op as u16) < u16::from(s.cond_ops));
    assert_eq!((zip.size, zip.signed), (4, true));
}

#[test]
fn c_o0_what_the_kernel_cannot_take() {
    let plan = after_total_o0();
    for src in [
        "price > 19",            // float
        "qty > -1",              // negative literal against an unsigned scalar
        "customer == \"alice\"", // string
        "by_ptr != null",        // null
        "paid == true",          // bool literal
        "id == 42 || qty == 3",  // not a top-level conjunct
        "!(id == 41)",           // negation: the kernel would drop uncaptured values
        "by_value.ship.city == \"Lisbon\"",
        "by_value.price == 19.5",
    ] {
        let s = split(&plan, src);
        assert!(s.conds.is_empty(), "{src}: {:?}", kernel_texts(&s));
        assert_eq!(s.cond_ops, 0);
        assert_eq!(s.rest.unwrap(), parse(src).unwrap(), "{src}");
    }
    // At most MAX_CONDS go to the kernel; the fifth stays in user space.
    let s = split(
        &plan,
        "id == 42 && qty == 3 && delta == -7 && paid == 1 && by_value.id == 42",
    );
    assert_eq!(s.conds.len(), tracery_common::MAX_CONDS);
    assert_eq!(s.rest.unwrap().to_string(), "by_value.id == 42");
}

#[test]
fn unknown_variables_name_the_scope() {
    let plan = after_total_o0();
    let e = compile(&parse("id == 42 && qtty > 1").unwrap(), &plan).unwrap_err();
    let ConditionError::UnknownVariable { name, in_scope } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(name, "qtty");
    for v in [
        "id", "qty", "delta", "price", "paid", "by_value", "by_ptr", "customer", "total",
    ] {
        assert!(
            in_scope.iter().any(|s| s == v),
            "{v} missing from {in_scope:?}"
        );
    }
    assert!(e
        .to_string()
        .starts_with("unknown variable `qtty` in --when; in scope at this location: "));
}

#[test]
fn unknown_fields_name_the_type_and_its_fields() {
    let plan = after_total_o0();
    let e = compile(&parse("by_ptr.ship.zipp == 1").unwrap(), &plan).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`by_ptr.ship` (struct address) has no field `zipp` in --when; its fields: city, zip"
    );
    let e = compile(&parse("id.x == 1").unwrap(), &plan).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`id` (int) has no field `x` in --when; its fields: none"
    );
    // A C string is a char pointer: no fields.
    let e = compile(&parse("customer.len == 1").unwrap(), &plan).unwrap_err();
    assert!(e.to_string().contains("has no field `len`"), "{e}");
}

#[test]
fn c_o2_tick_parameter_goes_to_the_kernel() {
    let plan = plan_at("c-O2", "tick");
    let s = split(&plan, "i < 0");
    assert_eq!(kernel_texts(&s), ["i < 0"]);
    assert_eq!((s.conds[0].size, s.conds[0].signed), (8, 1));
    check_slots(&plan, &s);
}

#[test]
fn go_and_rust_fields_through_pointers_and_references() {
    let (file, line) = marker("go_after_total");
    let go = plan_at("go-noopt", &format!("{file}:{line}"));
    let s = split(&go, "p.ID == 42 && p.Paid == 1 && name == \"alice\"");
    assert_eq!(kernel_texts(&s), ["p.ID == 42", "p.Paid == 1"]);
    assert_eq!((s.conds[0].size, s.conds[0].signed), (8, 1));
    assert_eq!(s.rest.as_ref().unwrap().to_string(), "name == \"alice\"");
    check_slots(&go, &s);

    let (file, line) = marker("rust_after_total");
    let rust = plan_at("rust-debug", &format!("{file}:{line}"));
    let s = split(
        &rust,
        "order.id == 42 && order.qty > 2 && order.customer == \"alice\"",
    );
    assert_eq!(kernel_texts(&s), ["order.id == 42", "order.qty > 2"]);
    assert_eq!(
        [
            (s.conds[0].size, s.conds[0].signed),
            (s.conds[1].size, s.conds[1].signed)
        ],
        [(8, 0), (4, 0)]
    );
    check_slots(&rust, &s);
    // Rust strings, vectors and enums are not checked against their DWARF members (the
    // decoder shows them as text, lists and variants); plain struct fields are.
    for ok in ["name.len == 1", "items.len == 1", "status.x == 1"] {
        assert!(compile(&parse(ok).unwrap(), &rust).is_ok(), "{ok}");
    }
    let e = compile(&parse("order.qtty == 1").unwrap(), &rust).unwrap_err();
    assert!(e.to_string().contains("has no field `qtty`"), "{e}");
}
