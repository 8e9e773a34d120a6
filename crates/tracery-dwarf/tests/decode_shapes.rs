//! Shapes the fixtures lack, from this crate's own programs (tests/programs): C enums,
//! bit-fields, unions, a linked list through three pointer hops, NULL, long double, function
//! pointers, 2-D arrays, a static local at an absolute address (relocated in a PIE), and Go
//! interfaces with their dynamic type names.

#[path = "common/expect.rs"]
mod expect;
#[path = "common/programs.rs"]
mod programs;
#[path = "common/snapshot.rs"]
mod snapshot;

use std::path::Path;

use expect::{exact, exact_or_missing};
use serde_json::json;
use snapshot::emulator::{capture_with, Hit, Program, Run};
use tracery_common::BaseKind;
use tracery_dwarf::{
    compile_plan, decode, resolve, Binary, CaptureLimits, CapturePlan, Value, Variable,
};

struct Captured {
    binary: Binary,
    plan: CapturePlan,
    hit: Hit,
    vars: Vec<Variable>,
}

impl Captured {
    fn var(&self, name: &str) -> &Variable {
        self.vars
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no {name}: {:#?}", self.vars))
    }
}

fn capture(program: &str, source: &str, limits: &CaptureLimits) -> Captured {
    let path = programs::build(program);
    let binary = Binary::open(&path).unwrap();
    let file = Path::new(source).file_name().unwrap().to_str().unwrap();
    let site = resolve(&binary, &format!("{file}:{}", programs::here(source)))
        .unwrap()
        .remove(0);
    let plan = compile_plan(&binary, site.address, limits).unwrap();
    let run = Run {
        program: Program::Path(&path),
        args: &[],
        start_line: true,
    };
    let hit = capture_with(&run, &binary, plan.address(), |bias| plan.relocate(bias));
    let vars = decode(&binary, &plan, &hit.header, &hit.data);
    Captured {
        binary,
        plan,
        hit,
        vars,
    }
}

#[test]
fn c_enums_bitfields_unions_lists_and_globals() {
    let c = capture("shapes", "shapes.c", &CaptureLimits::default());
    exact(c.var("c"), json!("GREEN"));
    assert_eq!(c.var("c").type_name, "enum color");
    // RED | BLUE names no enumerator: the number.
    exact(c.var("mixed"), json!(5));
    exact(c.var("fl"), json!({"a": 5, "b": -3, "c": 1}));
    exact(
        c.var("n"),
        json!({"i": 0x40490fdb, "f": f64::from(f32::from_bits(0x40490fdb))}),
    );
    // Three hops (the default depth) reach the last node, whose next is NULL.
    exact(
        c.var("list"),
        json!({"address": "0x?", "target": {"value": 1, "next": {"address": "0x?", "target": {
            "value": 2, "next": {"address": "0x?", "target": {"value": 3, "next": null}}}}}}),
    );
    assert_eq!(c.var("list").type_name, "node_t *");
    assert_eq!(c.var("none").value, Value::Null);
    exact(c.var("ld"), json!(2.5));
    exact(c.var("neg"), json!(-300));
    assert_eq!(c.var("neg").type_name, "int16_t");
    exact(c.var("word"), json!("hi"));
    exact(c.var("grid"), json!([[1, 2, 3], [4, 5, 6]]));
    // A function pointer is an address, never followed; it is the PIE-relocated `twice`.
    assert_eq!(c.var("fn").type_name, "int (*)(int)");
    let twice = c
        .binary
        .symbols()
        .iter()
        .find(|s| s.name == "twice")
        .unwrap()
        .address;
    assert_eq!(
        c.var("fn").value,
        Value::Pointer {
            address: c.hit.bias.to_proc(twice).0,
            target: None
        }
    );
    // `void *` is not followed either.
    assert!(matches!(
        c.var("opaque").value,
        Value::Pointer { target: None, .. }
    ));
    // The static local lives at a link-time address: the one Absolute op, relocated by the
    // load bias; its value after the first call is 7 + 1.
    let absolute: Vec<_> = c.plan.config.ops[..c.plan.config.n_ops as usize]
        .iter()
        .filter(|op| op.base == BaseKind::Absolute as u8)
        .collect();
    assert_eq!(absolute.len(), 1);
    assert!(c.binary.is_pie() && c.hit.bias.0 != 0);
    let relocated = c.plan.relocate(c.hit.bias);
    let i = c
        .plan
        .config
        .ops
        .iter()
        .position(|op| op.base == BaseKind::Absolute as u8)
        .unwrap();
    assert_eq!(
        relocated.ops[i].offset,
        absolute[0].offset + c.hit.bias.0 as i64
    );
    exact(c.var("calls"), json!(8));
}

#[test]
fn go_interfaces_show_their_dynamic_type() {
    for program in ["goiface-noopt", "goiface"] {
        let c = capture(program, "goiface/main.go", &CaptureLimits::default());
        // The dynamic type and, read through the data word, its value.
        let rect =
            json!({"type": "*main.Rect", "value": {"address": "0x?", "target": {"W": 2, "H": 3}}});
        exact(c.var("any"), rect.clone());
        exact(c.var("s"), rect);
        exact(
            c.var("err"),
            json!({"type": "*errors.errorString", "value": {"address": "0x?", "target": {"s": "boom"}}}),
        );
        assert_eq!(c.var("nilErr").value, Value::Null, "{program}");
        assert_eq!(c.var("err").type_name, "error");
        exact(c.var("arr"), json!([7, 8, 9]));
        exact(c.var("b"), json!(120));
        exact(c.var("r"), json!(233));
        exact_or_missing(c.var("f"), json!(1.5));
        // A map shows its entries, read from the runtime's buckets.
        exact(
            c.var("m"),
            json!({"map": [["a", 1]], "shown": 1, "total": 1}),
        );
    }
}
