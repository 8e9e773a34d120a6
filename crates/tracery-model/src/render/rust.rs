//! Rust as `{:?}` writes it: `Order { id: 42 }`, `Some(5)`, `Status::Paid { amount: 1 }`,
//! `(-7, true)`, `[1, 2, 3]`, `"text"`.

use super::{collection_items, items, leaf, Doc, Language, TypeForm};
use crate::value::{is_option, is_tuple, Value};

/// Rust rendering.
pub(crate) struct Rust;

/// `Order` from `orders::Order`, `Vec<u32>` kept whole: the last path segment before any
/// generic arguments.
fn short(name: &str) -> &str {
    let generic = name.find('<').unwrap_or(name.len());
    match name[..generic].rfind("::") {
        Some(i) => &name[i + 2..],
        None => name,
    }
}

impl Rust {
    fn fields(&self, open: String, fields: &[(String, Value)]) -> Doc {
        if is_tuple(fields) {
            Doc::Group {
                open: format!("{open}("),
                items: fields.iter().map(|(_, v)| (None, self.render(v))).collect(),
                close: ")".into(),
                padded: false,
            }
        } else if fields.is_empty() {
            Doc::leaf(open)
        } else {
            Doc::Group {
                open: format!("{open} {{"),
                items: fields
                    .iter()
                    .map(|(k, v)| (Some(format!("{k}: ")), self.render(v)))
                    .collect(),
                close: "}".into(),
                padded: true,
            }
        }
    }
}

impl Language for Rust {
    fn name(&self) -> &'static str {
        "Rust"
    }

    fn type_name(&self, form: TypeForm<'_>) -> String {
        match form {
            TypeForm::Void => "()".into(),
            TypeForm::Tagged { name, .. } => name.unwrap_or("<anonymous>").to_string(),
            TypeForm::Pointer { target, reference } => {
                if reference {
                    format!("&{target}")
                } else {
                    format!("*const {target}")
                }
            }
            TypeForm::Qualified { target, .. } => target.to_string(),
            TypeForm::Array { elem, dims } => {
                dims.iter().rev().fold(elem.to_string(), |acc, d| match d {
                    Some(n) => format!("[{acc}; {n}]"),
                    None => format!("[{acc}]"),
                })
            }
            TypeForm::Function { ret, params } => match ret {
                Some(r) => format!("fn({}) -> {r}", params.join(", ")),
                None => format!("fn({})", params.join(", ")),
            },
        }
    }

    fn render(&self, value: &Value) -> Doc {
        if let Some(leaf) = leaf(value) {
            return leaf;
        }
        if let Some(c) = value.as_collection() {
            // `{:?}` of a HashMap: `{"a": 1}`; of a HashSet: `{1, 2}`.
            return Doc::Group {
                open: "{".into(),
                items: collection_items(self, c, ": "),
                close: "}".into(),
                padded: false,
            };
        }
        match value {
            Value::Struct { name, fields } if name == "core::time::Duration" => {
                match duration(fields) {
                    Some(text) => Doc::leaf(text),
                    None => self.fields("Duration".into(), fields),
                }
            }
            Value::Struct { name, fields } => {
                // Tuples are named `(i32, bool)`: no prefix.
                let prefix = if name.starts_with('(') {
                    ""
                } else {
                    short(name)
                };
                self.fields(prefix.to_string(), fields)
            }
            Value::Array { items: xs, total } => Doc::Group {
                open: "[".into(),
                items: items(self, xs, *total),
                close: "]".into(),
                padded: false,
            },
            Value::Pointer { address, target } => match target {
                Some(t) => {
                    Doc::Concat(vec![Doc::leaf(format!("{address:#x} -> ")), self.render(t)])
                }
                None => Doc::leaf(format!("{address:#x}")),
            },
            Value::Null => Doc::leaf("0x0"),
            Value::Enum {
                name,
                variant,
                fields,
            } => {
                if is_option(name) {
                    return self.fields(variant.clone(), fields);
                }
                self.fields(format!("{}::{variant}", short(name)), fields)
            }
            Value::Interface { type_name, value } => match value {
                Some(v) => {
                    Doc::Concat(vec![Doc::leaf(format!("dyn {type_name} ")), self.render(v)])
                }
                None => Doc::leaf(format!("dyn {type_name}")),
            },
            Value::Unit => Doc::leaf("()"),
            // Scalars and missing values: `leaf` above returned them.
            _ => Doc::leaf(""),
        }
    }
}

/// `{:?}` of a `Duration { secs, nanos }`: `1.5s`, `1.25ms`, `7µs`, `0ns` (core's
/// `fmt_decimal` without a precision: the fraction's trailing zeros are dropped).
fn duration(fields: &[(String, Value)]) -> Option<String> {
    let num = |n: &str| match fields.iter().find(|(k, _)| k == n)?.1 {
        Value::UInt(x) => u64::try_from(x).ok(),
        Value::Int(x) => u64::try_from(x).ok(),
        _ => None,
    };
    let (secs, nanos) = (num("secs")?, num("nanos")?);
    if nanos >= 1_000_000_000 {
        return None;
    }
    let (int, mut frac, mut div, unit) = if secs > 0 {
        (secs, nanos, 100_000_000, "s")
    } else if nanos >= 1_000_000 {
        (nanos / 1_000_000, nanos % 1_000_000, 100_000, "ms")
    } else if nanos >= 1_000 {
        (nanos / 1_000, nanos % 1_000, 100, "\u{b5}s")
    } else {
        (nanos, 0, 1, "ns")
    };
    let mut text = int.to_string();
    if frac > 0 {
        text.push('.');
    }
    while frac > 0 && div > 0 {
        text.push(char::from(b'0' + (frac / div) as u8));
        frac %= div;
        div /= 10;
    }
    text.push_str(unit);
    Some(text)
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn durations_read_like_debug() {
        let d = |secs: u64, nanos: u64| {
            duration(&[
                ("secs".into(), Value::UInt(secs.into())),
                ("nanos".into(), Value::UInt(nanos.into())),
            ])
        };
        for (secs, nanos) in [
            (1, 500_000_000),
            (0, 1_250_000),
            (0, 7_000),
            (0, 0),
            (3, 1),
            (0, 999),
        ] {
            let want = format!("{:?}", std::time::Duration::new(secs, nanos as u32));
            assert_eq!(d(secs, nanos).as_deref(), Some(want.as_str()));
        }
    }
}
