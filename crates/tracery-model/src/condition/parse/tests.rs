//! Parser tests: precedence, literals, and where malformed input is reported.
use super::*;

fn cmp(path: &str, op: CmpOp, literal: Literal) -> Comparison {
    Comparison {
        path: path.split('.').map(String::from).collect(),
        op,
        literal,
        pos: 0,
    }
}

/// The parsed expression with every position zeroed, for comparing trees.
fn tree(src: &str) -> Expr {
    fn strip(e: Expr) -> Expr {
        match e {
            Expr::And(a, b) => Expr::And(Box::new(strip(*a)), Box::new(strip(*b))),
            Expr::Or(a, b) => Expr::Or(Box::new(strip(*a)), Box::new(strip(*b))),
            Expr::Not(a) => Expr::Not(Box::new(strip(*a))),
            Expr::Cmp(c) => Expr::Cmp(Comparison { pos: 0, ..c }),
        }
    }
    strip(parse(src).unwrap_or_else(|e| panic!("{src}: {e}")))
}

fn lit(src: &str) -> Literal {
    match tree(&format!("x == {src}")) {
        Expr::Cmp(c) => c.literal,
        other => panic!("{other:?}"),
    }
}

fn err(src: &str) -> (usize, String, String) {
    let e = parse(src).expect_err(src);
    let shown = e.to_string();
    (e.pos, e.expected, shown)
}

#[test]
fn precedence_not_and_or() {
    assert_eq!(
        tree("a == 1 || b == 2 && !c == 3").to_string(),
        "a == 1 || (b == 2 && !c == 3)"
    );
    assert_eq!(
        tree("(a == 1 || b == 2) && c == 3").to_string(),
        "(a == 1 || b == 2) && c == 3"
    );
    assert_eq!(
        tree("!(a == 1 && b == 2)").to_string(),
        "!(a == 1 && b == 2)"
    );
    // && and || are left-associative.
    let e = tree("a == 1 && b == 2 && c == 3");
    let Expr::And(left, _) = &e else {
        panic!("{e:?}")
    };
    assert!(matches!(**left, Expr::And(..)));
    assert_eq!(e.conjuncts().len(), 3);
    assert_eq!(
        tree("((a == 1))"),
        Expr::Cmp(cmp("a", CmpOp::Eq, Literal::Int(1)))
    );
}

#[test]
fn every_operator_and_flipped_sides() {
    for (text, op) in [
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        ("<", CmpOp::Lt),
        ("<=", CmpOp::Le),
        (">", CmpOp::Gt),
        (">=", CmpOp::Ge),
    ] {
        assert_eq!(
            tree(&format!("order.qty {text} 10")),
            Expr::Cmp(cmp("order.qty", op, Literal::Int(10)))
        );
        assert_eq!(
            tree(&format!("10 {text} order.qty")),
            Expr::Cmp(cmp("order.qty", flip(op), Literal::Int(10)))
        );
    }
    assert_eq!(
        tree("by_ptr.ship.zip>=1100"),
        Expr::Cmp(cmp("by_ptr.ship.zip", CmpOp::Ge, Literal::Int(1100)))
    );
    assert_eq!(
        tree("p.ID != 0"),
        Expr::Cmp(cmp("p.ID", CmpOp::Ne, Literal::Int(0)))
    );
}

#[test]
fn every_literal_kind() {
    assert_eq!(lit("42"), Literal::Int(42));
    assert_eq!(lit("-7"), Literal::Int(-7));
    assert_eq!(lit("0x1F"), Literal::Int(31));
    assert_eq!(lit("-0x10"), Literal::Int(-16));
    assert_eq!(lit("18446744073709551615"), Literal::Int(u64::MAX as i128));
    assert_eq!(lit("19.5"), Literal::Float(19.5));
    assert_eq!(lit("-0.25"), Literal::Float(-0.25));
    assert_eq!(lit("1e3"), Literal::Float(1000.0));
    assert_eq!(lit("2.5E-1"), Literal::Float(0.25));
    assert_eq!(lit("\"alice\""), Literal::Str("alice".into()));
    assert_eq!(lit("\"\""), Literal::Str(String::new()));
    assert_eq!(
        lit(r#""a \"q\" \\ \n\t\r\0 \u{e9}""#),
        Literal::Str("a \"q\" \\ \n\t\r\0 é".into())
    );
    assert_eq!(lit("\"x && y\""), Literal::Str("x && y".into()));
    assert_eq!(lit("true"), Literal::Bool(true));
    assert_eq!(lit("false"), Literal::Bool(false));
    assert_eq!(lit("null"), Literal::Null);
}

#[test]
fn the_example_from_the_issue() {
    assert_eq!(
        tree("order.qty > 10 && status == \"pending\""),
        Expr::And(
            Box::new(Expr::Cmp(cmp("order.qty", CmpOp::Gt, Literal::Int(10)))),
            Box::new(Expr::Cmp(cmp(
                "status",
                CmpOp::Eq,
                Literal::Str("pending".into())
            ))),
        )
    );
    // Positions point at the path.
    let Expr::And(_, b) = parse("order.qty > 10 && status == \"pending\"").unwrap() else {
        panic!()
    };
    let Expr::Cmp(c) = *b else { panic!() };
    assert_eq!(c.pos, 18);
}

#[test]
fn caret_under_a_missing_value() {
    let (pos, expected, shown) = err("order.qty > && x");
    assert_eq!(pos, 12);
    assert_eq!(expected, "expected a value after `>`");
    assert_eq!(
        shown,
        "malformed --when: expected a value after `>`\n  order.qty > && x\n              ^"
    );
}

#[test]
fn caret_positions_of_malformed_inputs() {
    for (src, pos, expected) in [
        ("", 0, "expected a comparison such as `qty > 10`"),
        ("   ", 3, "expected a comparison such as `qty > 10`"),
        ("qty >", 5, "expected a value after `>`"),
        ("qty 10", 4, "expected a comparison operator (==, !=, <, <=, >, >=) after `qty`"),
        ("qty == 1 &&", 11, "expected a comparison after `&&`"),
        ("qty == 1 || && id == 2", 12, "expected a comparison after `||`"),
        ("qty = 1", 4, "expected `==` (comparison), not `=`"),
        ("qty == 1 & id == 2", 9, "expected `&&`"),
        ("(qty == 1", 9, "expected `)` to close the `(` at byte 0, or `&&` or `||`"),
        ("qty == 1)", 8, "unmatched `)`"),
        ("qty == 1 id == 2", 9, "expected `&&`, `||` or the end after `1`"),
        ("qty == id", 7, "expected a value after `==`: a variable compares with a constant, not with another variable"),
        ("1 == 2", 0, "expected a variable: one side of a comparison must name a variable"),
        ("qty == 12abc", 7, "malformed number `12abc`"),
        ("qty == 1.2.3", 7, "malformed number `1.2.3`"),
        ("qty == 0xZZ", 7, "malformed number `0xZZ`"),
        ("qty == -x", 7, "expected a number after `-`"),
        ("name == \"bob", 12, "expected a closing `\"` for the string opened at byte 8"),
        ("name == \"a\\qb\"", 10, "unknown escape `\\q`; use \\\" \\\\ \\n \\t \\r \\0 or \\u{..}"),
        ("order. == 1", 7, "expected a field name after `order.`"),
        ("qty @ 1", 4, "unexpected character `@`"),
        ("!", 1, "expected a comparison after `!`"),
    ] {
        let (p, e, shown) = err(src);
        assert_eq!((p, e.as_str()), (pos, expected), "{src:?}");
        let caret_line = shown.lines().last().unwrap();
        assert_eq!(caret_line.len(), 2 + pos + 1, "{src:?}: {shown}");
        assert!(caret_line.ends_with('^'));
    }
}

/// Found by the fuzzer: `41054e373` parsed as infinity, which renders as `inf`, which
/// does not parse: a condition that cannot survive its own rendering.
#[test]
fn float_out_of_range_is_refused() {
    for src in ["x == 41054e373", "x == -1e309", "x == 1.5e999"] {
        let err = parse(src).expect_err(src);
        assert!(err.expected.contains("out of range"), "{src}: {err}");
    }
    // Tiny values round to zero and still print back as a literal.
    let e = parse("x == 1e-400").unwrap();
    assert_eq!(tree(&e.to_string()), tree("x == 1e-400"));
}
