//! The `--when` parser: any text parses or fails with a position inside it; what parses
//! prints as text that parses back to the same expression; evaluation never panics.

use tracery_model::{
    condition::{parse, Expr},
    Value, VarKind, Variable,
};

/// One input: the condition text (invalid UTF-8 is replaced, as a shell would not pass it).
pub fn run(data: &[u8]) {
    let src = String::from_utf8_lossy(data);
    let expr = match parse(&src) {
        Ok(expr) => expr,
        Err(err) => {
            // The caret must point into (or just past) the text.
            assert!(
                err.pos <= src.len(),
                "error position {} past {src:?}",
                err.pos
            );
            let _ = err.to_string();
            return;
        }
    };
    let printed = expr.to_string();
    let again = parse(&printed)
        .unwrap_or_else(|e| panic!("{src:?} parsed, but its rendering {printed:?} does not: {e}"));
    assert_eq!(
        without_positions(expr.clone()),
        without_positions(again),
        "{src:?} and its rendering {printed:?} parse differently"
    );
    let vars = variables();
    let _ = tracery_dwarf::condition::eval(&expr, &vars);
    let _ = expr.conjuncts();
}

/// `expr` with every source position zeroed: a rendering moves them.
fn without_positions(expr: Expr) -> Expr {
    match expr {
        Expr::And(a, b) => Expr::And(
            Box::new(without_positions(*a)),
            Box::new(without_positions(*b)),
        ),
        Expr::Or(a, b) => Expr::Or(
            Box::new(without_positions(*a)),
            Box::new(without_positions(*b)),
        ),
        Expr::Not(a) => Expr::Not(Box::new(without_positions(*a))),
        Expr::Cmp(mut c) => {
            c.pos = 0;
            Expr::Cmp(c)
        }
    }
}

/// Variables of every value kind, for `eval` to walk: the names are the short ones a
/// mutated condition is likely to hit.
fn variables() -> Vec<Variable> {
    let var = |name: &str, value: Value| Variable {
        name: name.to_string(),
        kind: VarKind::Local,
        type_name: "t".to_string(),
        value,
        frame: None,
    };
    let text = |s: &str| Value::Str {
        text: s.to_string(),
        truncated: false,
    };
    vec![
        var("a", Value::Int(-7)),
        var("b", Value::UInt(u128::MAX)),
        var("c", Value::Float(f64::NAN)),
        var("d", Value::Bool(true)),
        var("e", Value::Char('x')),
        var("f", text("abc")),
        var(
            "g",
            Value::Struct {
                name: "s".to_string(),
                fields: vec![
                    ("x".to_string(), Value::Int(1)),
                    (
                        "p".to_string(),
                        Value::Pointer {
                            address: 8,
                            target: Some(Box::new(Value::Struct {
                                name: "s".to_string(),
                                fields: vec![("x".to_string(), text("y"))],
                            })),
                        },
                    ),
                ],
            },
        ),
        var(
            "h",
            Value::Array {
                items: vec![Value::Int(1), Value::Null],
                total: Some(9),
            },
        ),
        var("i", Value::Null),
        var(
            "j",
            Value::Enum {
                name: "Option".to_string(),
                variant: "Some".to_string(),
                fields: vec![("__0".to_string(), Value::Int(3))],
            },
        ),
        var(
            "k",
            Value::Interface {
                type_name: "main.T".to_string(),
                value: Some(Box::new(Value::Float(2.5))),
            },
        ),
    ]
}
