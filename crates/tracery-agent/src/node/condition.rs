//! The `condition` of a Node breakpoint: a JavaScript expression that hands the scope to
//! the capture (`capture.js`) and evaluates to `false`, so V8 never pauses; and the user's
//! `--when`, translated into JavaScript and evaluated in the same frame.

use tracery_common::CmpOp;
use tracery_model::condition::{Comparison, Expr, Literal};

use super::{scope::ScopeName, NodeError};

/// The global the agent's `Runtime.addBinding` creates; hits call it with their JSON.
pub const BINDING: &str = "__traceryHit";

/// The capture's caps, as `capture.js` reads them.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Characters kept of one string.
    pub max_string: u32,
    /// Elements of an array, Map or Set, and properties of an object.
    pub max_elements: u32,
    /// Levels of objects below a variable.
    pub max_depth: u32,
}

/// Bytes of JSON one hit may carry at most (roughly: strings and names are counted, and a
/// few bytes per value): a binding call copies its payload on the service's own thread.
pub const MAX_CAPTURE_BYTES: u32 = 32 * 1024;

/// Stack frames kept (`Error.stackTraceLimit` during the capture).
pub const MAX_FRAMES: u32 = 32;

/// The JavaScript that installs the capture on the binding, given `util.types` (native
/// type checks): evaluated once per process with the command-line API (for `require`).
pub fn install_expression(caps: Caps) -> String {
    format!(
        "({})({BINDING}, require('util').types, {{ maxString: {}, maxElements: {}, \
         maxDepth: {}, maxBytes: {MAX_CAPTURE_BYTES}, maxFrames: {MAX_FRAMES} }})",
        include_str!("capture.js").trim_end(),
        caps.max_string,
        caps.max_elements,
        caps.max_depth,
    )
}

/// The breakpoint condition for site `id` reading `names` (by index) and `this`. V8
/// applies `when`, `rate_per_sec` and `hit_limit` (0: none) before reading anything; the
/// agent still counts hits across processes.
pub fn breakpoint_condition(
    id: u64,
    names: &[ScopeName],
    when: Option<&Expr>,
    rate_per_sec: u32,
    hit_limit: u64,
) -> Result<String, NodeError> {
    let thunks: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("[{i},()=>{}]", n.name))
        .collect();
    let when = match when {
        Some(e) => format!("()=>({})", translate(e)?),
        None => "null".to_owned(),
    };
    // Without a limit there is nothing to ask `spent`.
    let spent = if rate_per_sec > 0 || hit_limit > 0 {
        format!("!{BINDING}.tracery.spent({id},{rate_per_sec},{hit_limit})&&")
    } else {
        String::new()
    };
    Ok(format!(
        "(typeof {BINDING}===\"function\"&&{BINDING}.tracery!==undefined&&{spent}\
         {BINDING}.tracery.capture({id},this,[{}],{when},{rate_per_sec},{hit_limit}))===true",
        thunks.join(",")
    ))
}

/// `--when` as JavaScript; comparisons whose variable is not in scope throw, and the
/// capture takes a throwing condition as false.
pub fn translate(e: &Expr) -> Result<String, NodeError> {
    Ok(match e {
        Expr::And(a, b) => format!("({} && {})", translate(a)?, translate(b)?),
        Expr::Or(a, b) => format!("({} || {})", translate(a)?, translate(b)?),
        Expr::Not(a) => format!("!({})", translate(a)?),
        Expr::Cmp(c) => comparison(c)?,
    })
}

fn comparison(c: &Comparison) -> Result<String, NodeError> {
    let path = path(c)?;
    let untranslatable = |why: &str| NodeError::When {
        condition: c.to_string(),
        reason: why.to_owned(),
    };
    let op = match c.op {
        CmpOp::Eq => "===",
        CmpOp::Ne => "!==",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    };
    let ordered = !matches!(c.op, CmpOp::Eq | CmpOp::Ne);
    Ok(match &c.literal {
        // A bigint compares with the same integer as a bigint.
        Literal::Int(v) => format!("((x)=>typeof x===\"bigint\"?x{op}{v}n:x{op}{v})({path})"),
        Literal::Float(v) if v.is_finite() => format!("({path}{op}{v:?})"),
        Literal::Float(_) => {
            return Err(untranslatable(
                "NaN and infinities never compare equal in JavaScript",
            ))
        }
        Literal::Str(s) => format!(
            "({path}{op}{})",
            serde_json::to_string(s).expect("a string serializes")
        ),
        Literal::Bool(_) | Literal::Null if ordered => {
            return Err(untranslatable(
                "only == and != compare with true, false or null",
            ))
        }
        Literal::Bool(b) => format!("({path}{op}{b})"),
        // `null` matches undefined too, as a JavaScript reader expects of `== null`.
        Literal::Null => format!(
            "({path}{}null)",
            if c.op == CmpOp::Eq { "==" } else { "!=" }
        ),
    })
}

/// `order.customer.name` → `order?.customer?.name`: a missing field compares as undefined.
fn path(c: &Comparison) -> Result<String, NodeError> {
    let mut out = String::new();
    for (i, seg) in c.path.iter().enumerate() {
        let ident = is_identifier(seg);
        if i == 0 {
            if !ident {
                return Err(NodeError::When {
                    condition: c.to_string(),
                    reason: format!("`{seg}` is not a JavaScript variable name"),
                });
            }
            out.push_str(seg);
        } else if ident {
            out.push_str("?.");
            out.push_str(seg);
        } else if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("?.[{seg}]"));
        } else {
            return Err(NodeError::When {
                condition: c.to_string(),
                reason: format!("`{seg}` is not a JavaScript property name"),
            });
        }
    }
    Ok(out)
}

/// True for a plain JavaScript identifier (ASCII; no reserved-word check beyond `this`).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracery_model::condition::parse;

    #[test]
    fn when_translates_to_javascript() {
        let e = parse("order.customer.name == \"Ada\" && !(total < 3) || id == 5").unwrap();
        assert_eq!(
            translate(&e).unwrap(),
            r#"(((order?.customer?.name==="Ada") && !(((x)=>typeof x==="bigint"?x<3n:x<3)(total))) || ((x)=>typeof x==="bigint"?x===5n:x===5)(id))"#
        );
        let e = parse("user == null").unwrap();
        assert_eq!(translate(&e).unwrap(), "(user==null)");
    }

    #[test]
    fn what_javascript_cannot_say_is_refused() {
        let e = parse("flag < true").unwrap();
        let err = translate(&e).unwrap_err().to_string();
        assert!(err.contains("only == and != compare with true"), "{err}");
    }
}
