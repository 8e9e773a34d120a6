//! Evaluating a condition over a hit's decoded variables.

use std::cmp::Ordering;

use tracery_common::CmpOp;

use super::{Comparison, Expr, Literal};
use crate::value::{is_option, Value, Variable};

/// Whether `expr` holds for one hit's decoded variables.
///
/// Paths follow pointers, references, Rust `Some` and Go interfaces implicitly. A
/// comparison is false when its value is unavailable (optimized out, not captured, behind
/// a null pointer) or of a kind the literal does not compare with (a string with a number);
/// `!` of such a comparison is true. C enums compare with a string (the enumerator's name),
/// with `==` and `!=` only.
pub fn eval(expr: &Expr, vars: &[Variable]) -> bool {
    match expr {
        Expr::And(a, b) => eval(a, vars) && eval(b, vars),
        Expr::Or(a, b) => eval(a, vars) || eval(b, vars),
        Expr::Not(e) => !eval(e, vars),
        Expr::Cmp(c) => lookup(vars, &c.path).is_some_and(|v| compare(v, c)),
    }
}

/// The value at `path`; `None` when a step is missing or was not captured.
fn lookup<'v>(vars: &'v [Variable], path: &[String]) -> Option<&'v Value> {
    let (first, fields) = path.split_first()?;
    // The probed function's own variable shadows an inlined callee's.
    let var = vars
        .iter()
        .find(|v| v.name == *first && v.frame.is_none())
        .or_else(|| vars.iter().find(|v| v.name == *first))?;
    let mut v = &var.value;
    for name in fields {
        v = match deref(v) {
            Value::Struct { fields, .. } | Value::Enum { fields, .. } => {
                &fields.iter().find(|(k, _)| k == name)?.1
            }
            _ => return None,
        };
    }
    Some(v)
}

/// Follows pointers, `Some` and interfaces to the value they hold, as far as captured.
fn deref(mut v: &Value) -> &Value {
    for _ in 0..16 {
        v = match v {
            Value::Pointer {
                target: Some(t), ..
            } => t,
            Value::Interface { value: Some(t), .. } => t,
            Value::Enum {
                name,
                variant,
                fields,
            } if is_option(name) && variant == "Some" && fields.len() == 1 => &fields[0].1,
            _ => return v,
        };
    }
    v
}

fn is_null(v: &Value) -> Option<bool> {
    match v {
        Value::Null => Some(true),
        Value::Pointer { .. } => Some(false),
        Value::Enum { name, variant, .. } if is_option(name) => Some(variant == "None"),
        Value::Interface { .. } => Some(false),
        _ => None,
    }
}

fn compare(v: &Value, c: &Comparison) -> bool {
    let equality = matches!(c.op, CmpOp::Eq | CmpOp::Ne);
    if let Literal::Null = c.literal {
        return match is_null(v) {
            Some(null) if equality => null == (c.op == CmpOp::Eq),
            _ => false,
        };
    }
    let v = deref(v);
    // An enumerator compares by name, and only for equality.
    if let (Value::Enum { variant, .. }, Literal::Str(s)) = (v, &c.literal) {
        return equality && (variant == s) == (c.op == CmpOp::Eq);
    }
    match order(v, &c.literal) {
        Some(ord) => match c.op {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
        },
        None => false,
    }
}

/// How the value orders against the literal; `None` when they do not compare.
fn order(v: &Value, lit: &Literal) -> Option<Ordering> {
    let int = |v: &Value| -> Option<Int> {
        match v {
            Value::Int(x) => Some(Int::Signed(*x)),
            Value::UInt(x) => Some(Int::Unsigned(*x)),
            Value::Bool(b) => Some(Int::Signed(i128::from(*b))),
            Value::Char(c) => Some(Int::Signed(i128::from(u32::from(*c)))),
            _ => None,
        }
    };
    match (v, lit) {
        (Value::Float(a), Literal::Float(b)) => a.partial_cmp(b),
        (Value::Float(a), Literal::Int(b)) => a.partial_cmp(&(*b as f64)),
        (v, Literal::Float(b)) => int(v)?.as_f64().partial_cmp(b),
        (v, Literal::Int(b)) => Some(int(v)?.cmp_i128(*b)),
        (Value::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        (Value::Str { text, .. }, Literal::Str(s)) => Some(text.as_str().cmp(s.as_str())),
        (Value::Char(a), Literal::Str(s)) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(b), None) => Some(a.cmp(&b)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A decoded integer of either signedness, compared exactly with an `i128` literal.
enum Int {
    Signed(i128),
    Unsigned(u128),
}

impl Int {
    fn cmp_i128(&self, b: i128) -> Ordering {
        match *self {
            Int::Signed(a) => a.cmp(&b),
            Int::Unsigned(a) => match u128::try_from(b) {
                Ok(b) => a.cmp(&b),
                Err(_) => Ordering::Greater,
            },
        }
    }

    fn as_f64(&self) -> f64 {
        match *self {
            Int::Signed(a) => a as f64,
            Int::Unsigned(a) => a as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use crate::value::VarKind;

    fn var(name: &str, value: Value) -> Variable {
        Variable {
            name: name.into(),
            kind: VarKind::Arg,
            type_name: "?".into(),
            value,
            frame: None,
        }
    }

    fn s(text: &str) -> Value {
        Value::Str {
            text: text.into(),
            truncated: false,
        }
    }

    /// The C fixture's `process_order` at `c_after_total`, as decoded.
    fn order_vars() -> Vec<Variable> {
        let order = Value::Struct {
            name: "struct order".into(),
            fields: vec![
                ("id".into(), Value::Int(42)),
                ("qty".into(), Value::UInt(3)),
                ("price".into(), Value::Float(19.5)),
                ("paid".into(), Value::Bool(true)),
                (
                    "ship".into(),
                    Value::Struct {
                        name: "struct address".into(),
                        fields: vec![
                            ("city".into(), s("Lisbon")),
                            ("zip".into(), Value::Int(1100)),
                        ],
                    },
                ),
                ("note".into(), s("fragile")),
            ],
        };
        vec![
            var("id", Value::Int(42)),
            var("qty", Value::UInt(3)),
            var("delta", Value::Int(-7)),
            var("price", Value::Float(19.5)),
            var("paid", Value::Bool(true)),
            var("by_value", order.clone()),
            var(
                "by_ptr",
                Value::Pointer {
                    address: 0x7ffd_0000,
                    target: Some(Box::new(order)),
                },
            ),
            var("customer", s("alice")),
            var("total", Value::OptimizedOut),
            var("nothing", Value::Null),
            var(
                "unfollowed",
                Value::Pointer {
                    address: 0x10,
                    target: None,
                },
            ),
            var(
                "status",
                Value::Enum {
                    name: "enum status".into(),
                    variant: "PENDING".into(),
                    fields: vec![],
                },
            ),
            var(
                "maybe",
                Value::Enum {
                    name: "core::option::Option<u32>".into(),
                    variant: "Some".into(),
                    fields: vec![("__0".into(), Value::UInt(5))],
                },
            ),
            var(
                "none",
                Value::Enum {
                    name: "core::option::Option<u32>".into(),
                    variant: "None".into(),
                    fields: vec![],
                },
            ),
            var("letter", Value::Char('x')),
            var("big", Value::UInt(u64::MAX as u128)),
        ]
    }

    fn holds(src: &str) -> bool {
        eval(&parse(src).unwrap_or_else(|e| panic!("{e}")), &order_vars())
    }

    #[test]
    fn integers_of_either_sign() {
        for yes in [
            "id == 42",
            "id != 41",
            "id > 41 && id >= 42 && id < 43 && id <= 42",
            "delta == -7",
            "delta < 0",
            "qty == 3",
            "qty > -1",
            "big == 0xFFFFFFFFFFFFFFFF",
            "big > 9223372036854775807",
            "42 == id",
            "0 < qty",
        ] {
            assert!(holds(yes), "{yes}");
        }
        for no in ["id == 41", "delta > 0", "qty < -1", "big < 0"] {
            assert!(!holds(no), "{no}");
        }
    }

    #[test]
    fn floats_strings_bools_chars() {
        for yes in [
            "price == 19.5",
            "price > 19",
            "qty < 3.5",
            "customer == \"alice\"",
            "customer != \"bob\"",
            "customer < \"bob\"",
            "paid == true",
            "paid != false",
            "paid == 1",
            "letter == \"x\"",
            "letter == 120",
        ] {
            assert!(holds(yes), "{yes}");
        }
        for no in ["price < 19.5", "customer == \"alic\"", "paid == false"] {
            assert!(!holds(no), "{no}");
        }
    }

    #[test]
    fn paths_follow_pointers_and_options() {
        for yes in [
            "by_value.qty > 2",
            "by_ptr.ship.zip == 1100",
            "by_ptr.ship.city == \"Lisbon\"",
            "by_ptr.note == \"fragile\"",
            "maybe == 5",
            "by_ptr != null",
            "nothing == null",
            "none == null",
            "maybe != null",
            "status == \"PENDING\"",
            "status != \"PAID\"",
        ] {
            assert!(holds(yes), "{yes}");
        }
        for no in ["by_ptr == null", "nothing != null", "status < \"Z\""] {
            assert!(!holds(no), "{no}");
        }
    }

    #[test]
    fn unavailable_or_mismatched_comparisons_are_false() {
        for no in [
            "total == 51",
            "total != 51",
            "unfollowed.id == 1",
            "nothing.id == 1",
            "by_ptr.missing == 1",
            "unknown == 1",
            "customer == 5",
            "id == \"42\"",
            "id == null",
            "id.field == 1",
        ] {
            assert!(!holds(no), "{no}");
        }
        assert!(holds("!(total == 51)"));
    }

    #[test]
    fn and_or_not() {
        assert!(holds("id == 42 && customer == \"alice\""));
        assert!(!holds("id == 41 && customer == \"alice\""));
        assert!(holds("id == 41 || customer == \"alice\""));
        assert!(!holds("id == 41 || customer == \"bob\""));
        assert!(holds("!(id == 41) && (qty == 1 || qty == 3)"));
        assert!(holds("!id == 41"));
    }

    #[test]
    fn inlined_frames_do_not_shadow_the_function() {
        let mut vars = vec![var("total", Value::Int(1))];
        vars.insert(
            0,
            Variable {
                frame: Some("apply_discount".into()),
                ..var("total", Value::Int(2))
            },
        );
        assert!(eval(&parse("total == 1").unwrap(), &vars));
    }
}
