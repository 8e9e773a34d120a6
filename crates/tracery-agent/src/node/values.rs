//! A Node hit's JSON (written by `capture.js`) → the model's value tree and stack.
//!
//! JavaScript values map onto the same [`Value`]s as native ones: objects are structs
//! named by their constructor, arrays are arrays, Maps and Sets are the model's maps and
//! sets (as Go's and Rust's are), and what the capture would not read (getters, Proxies, cycles, caps) is
//! [`Value::Unavailable`] with the reason.

use serde::Deserialize;
use serde_json::Value as Json;
use tracery_model::value::{Value, VarKind, Variable};

use super::scope::{Binding, ScopeName};
use crate::capture::snapshot::StackFrame;

/// One `bindingCalled` payload.
#[derive(Debug, Deserialize)]
pub struct Hit {
    /// The breakpoint's id.
    pub id: u64,
    /// `[index into the breakpoint's names (-1 for this), value]`.
    #[serde(default)]
    pub vars: Vec<(i64, Json)>,
    /// `new Error().stack` at the hit.
    #[serde(default)]
    pub stack: String,
    /// `Date.now()` at the hit, in milliseconds.
    #[serde(default)]
    pub time: f64,
    /// Set when the capture itself failed (the hit is reported, without values).
    #[serde(default)]
    pub error: Option<String>,
    /// When this hit spent its second's rate: the end of that second (`Date.now()`
    /// milliseconds), until which the site captures nothing. 0 otherwise.
    #[serde(default, rename = "quietUntil")]
    pub quiet_until: f64,
}

/// Beyond this a JavaScript number is not an exact integer (2^53).
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// The hit's variables, named through `names` (the list the condition was built from).
pub fn variables(hit: &Hit, names: &[ScopeName]) -> Vec<Variable> {
    hit.vars
        .iter()
        .filter_map(|(index, node)| {
            let (name, kind, frame) = if *index < 0 {
                ("this".to_owned(), VarKind::Local, None)
            } else {
                let n = names.get(usize::try_from(*index).ok()?)?;
                match &n.binding {
                    Binding::Arg => (n.name.clone(), VarKind::Arg, None),
                    Binding::Local => (n.name.clone(), VarKind::Local, None),
                    Binding::Closure(f) => (n.name.clone(), VarKind::Local, Some(f.clone())),
                }
            };
            Some(Variable {
                name,
                kind,
                type_name: type_name(node),
                value: value(node),
                frame,
            })
        })
        .collect()
}

/// The JavaScript type of a captured node: `typeof`, or the constructor's name for objects.
pub fn type_name(node: &Json) -> String {
    let tag = node["t"].as_str().unwrap_or("");
    match tag {
        "u" => "undefined",
        "null" => "null",
        "b" => "boolean",
        "n" => "number",
        "big" => "bigint",
        "s" => "string",
        "sym" => "symbol",
        "f" => "function",
        "get" => "getter",
        "a" | "o" | "map" | "set" | "err" | "deep" => {
            return node["c"]
                .as_str()
                .unwrap_or(if tag == "a" { "Array" } else { "Object" })
                .to_owned()
        }
        "date" => "Date",
        "proxy" => "Proxy",
        _ => "unknown",
    }
    .to_owned()
}

/// One captured node as a [`Value`].
pub fn value(node: &Json) -> Value {
    let tag = node["t"].as_str().unwrap_or("");
    match tag {
        "u" => Value::Unit,
        "null" => Value::Null,
        "b" => Value::Bool(node["v"].as_bool().unwrap_or(false)),
        "n" => number(node),
        "big" => {
            let text = node["v"].as_str().unwrap_or("");
            text.parse::<i128>()
                .map(Value::Int)
                .unwrap_or_else(|_| Value::Str {
                    text: text.to_owned(),
                    truncated: false,
                })
        }
        "s" => Value::Str {
            text: node["v"].as_str().unwrap_or("").to_owned(),
            truncated: node.get("len").is_some(),
        },
        "sym" | "f" | "date" => Value::Interface {
            type_name: type_name(node),
            value: Some(Box::new(Value::Str {
                text: node["v"]
                    .as_str()
                    .or_else(|| node["name"].as_str())
                    .unwrap_or("")
                    .to_owned(),
                truncated: false,
            })),
        },
        "o" => {
            let mut fields: Vec<(String, Value)> = node["p"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|kv| Some((kv[0].as_str()?.to_owned(), value(&kv[1]))))
                .collect();
            if let Some(count) = node["count"].as_u64() {
                let more = count.saturating_sub(fields.len() as u64);
                fields.push((
                    "…".into(),
                    Value::unavailable(format!("{more} more properties not captured")),
                ));
            }
            Value::Struct {
                name: type_name(node),
                fields,
            }
        }
        "err" => Value::Struct {
            name: type_name(node),
            fields: vec![(
                "message".into(),
                Value::Str {
                    text: node["msg"].as_str().unwrap_or("").to_owned(),
                    truncated: false,
                },
            )],
        },
        "a" => {
            let items: Vec<Value> = node["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(value)
                .collect();
            Value::Array {
                total: node["len"].as_u64().filter(|l| *l > items.len() as u64),
                items,
            }
        }
        "set" => {
            let items: Vec<Value> = node["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(value)
                .collect();
            let total = node["size"].as_u64().filter(|l| *l > items.len() as u64);
            Value::set(type_name(node), items, total)
        }
        "map" => {
            let entries: Vec<(Value, Value)> = node["e"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|kv| (value(&kv[0]), value(&kv[1])))
                .collect();
            let total = node["size"].as_u64().filter(|l| *l > entries.len() as u64);
            Value::map(type_name(node), entries, total)
        }
        "hole" => Value::unavailable("empty array slot"),
        "get" => Value::unavailable("getter (not invoked)"),
        "cyc" => Value::unavailable("circular reference"),
        "proxy" => Value::unavailable("Proxy (not inspected: its traps could run code)"),
        "deep" => Value::unavailable(format!("{} beyond the depth limit", type_name(node))),
        "budget" => Value::unavailable("beyond the capture's byte limit"),
        other => Value::unavailable(format!("unknown capture tag {other:?}")),
    }
}

fn number(node: &Json) -> Value {
    if let Some(special) = node["s"].as_str() {
        return Value::Float(match special {
            "-0" => -0.0,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => f64::NAN,
        });
    }
    let v = node["v"].as_f64().unwrap_or(f64::NAN);
    if v.fract() == 0.0 && v.abs() <= EXACT_INT {
        Value::Int(v as i128)
    } else {
        Value::Float(v)
    }
}

/// The frames of `new Error().stack` below the capture's own two (the capture function and
/// the condition's `eval`), innermost first.
pub fn stack(text: &str) -> Vec<StackFrame> {
    let lines: Vec<&str> = text.lines().skip(1).map(str::trim).collect();
    let start = lines
        .iter()
        .position(|l| l.contains("(eval at "))
        .map_or(0, |i| i + 1);
    lines[start..].iter().filter_map(|l| frame(l)).collect()
}

/// `at fn (file:line:col)`, `at file:line:col` or `at async fn (...)`.
fn frame(line: &str) -> Option<StackFrame> {
    let rest = line.strip_prefix("at ")?;
    let rest = rest.strip_prefix("async ").unwrap_or(rest);
    let (function, place) = match rest.strip_suffix(')').and_then(|r| r.split_once(" (")) {
        Some((f, p)) => (f.to_owned(), p),
        None => ("(anonymous)".to_owned(), rest),
    };
    let (file, line, _col) = split_place(place)?;
    Some(StackFrame {
        function,
        file: Some(file.strip_prefix("file://").unwrap_or(file).to_owned()),
        line: Some(line),
        address: 0,
        inlined: false,
    })
}

/// `file:line:col` → its parts; `None` for `native` and other places without a line.
fn split_place(place: &str) -> Option<(&str, u32, u32)> {
    let (rest, col) = place.rsplit_once(':')?;
    let (file, line) = rest.rsplit_once(':')?;
    Some((file, line.parse().ok()?, col.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn javascript_values_map_onto_the_value_tree() {
        let node = json!({"t":"o","c":"Object","p":[
            ["id",{"t":"n","v":9}],
            ["ratio",{"t":"n","v":0.25}],
            ["big",{"t":"big","v":"12345678901234567890"}],
            ["get",{"t":"get"}],
            ["tags",{"t":"set","c":"Set","items":[{"t":"s","v":"a"}],"size":3}],
            ["m",{"t":"map","c":"Map","e":[[{"t":"s","v":"apple"},{"t":"n","v":3}],[{"t":"n","v":1},{"t":"null"}]],"size":2}],
            ["f",{"t":"f","name":"handler"}],
            ["nan",{"t":"n","s":"NaN"}]
        ]});
        assert_eq!(
            value(&node).to_json(),
            json!({
                "id": 9,
                "ratio": 0.25,
                "big": "12345678901234567890",
                "get": {"unavailable": "getter (not invoked)"},
                "tags": {"set": ["a"], "shown": 1, "total": 3},
                "m": {"map": [["apple", 3], [1, null]], "shown": 2, "total": 2},
                "f": {"type": "function", "value": "handler"},
                "nan": "NaN",
            })
        );
        assert_eq!(type_name(&node["p"][4][1]), "Set");
    }

    #[test]
    fn the_stack_starts_below_the_capture() {
        let text = "Error\n    at Object.capture (<anonymous>:169:24)\n    at eval (eval at applyDiscount (/srv/server.js:25:5), <anonymous>:1:99)\n    at applyDiscount (/srv/server.js:25:5)\n    at file:///srv/app.mjs:3:1\n    at async run (node:internal/x:1:2)\n    at new Promise (<anonymous>)";
        let frames = stack(text);
        let got: Vec<(String, Option<String>, Option<u32>)> = frames
            .into_iter()
            .map(|f| (f.function, f.file, f.line))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "applyDiscount".into(),
                    Some("/srv/server.js".into()),
                    Some(25)
                ),
                ("(anonymous)".into(), Some("/srv/app.mjs".into()), Some(3)),
                ("run".into(), Some("node:internal/x".into()), Some(1)),
            ]
        );
    }
}
