//! The value tree a hit decodes into, and its JSON form.
//!
//! A value that cannot be shown is data ([`Value::OptimizedOut`], [`Value::Unavailable`]),
//! never an error, so one unreadable field never hides its neighbours.

use serde_json::{json, Map, Value as Json};

/// Whether a variable is a parameter or a local.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VarKind {
    /// A parameter (`DW_TAG_formal_parameter`).
    Arg,
    /// A local variable (`DW_TAG_variable`).
    Local,
}

impl VarKind {
    /// `"arg"` or `"local"`, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            VarKind::Arg => "arg",
            VarKind::Local => "local",
        }
    }
}

/// One decoded variable of a hit.
#[derive(Clone, Debug, PartialEq)]
pub struct Variable {
    /// The name in the source.
    pub name: String,
    /// Parameter or local.
    pub kind: VarKind,
    /// Type name in the source language.
    pub type_name: String,
    /// The decoded value.
    pub value: Value,
    /// The inlined function this variable belongs to; `None` for the probed function itself.
    pub frame: Option<String>,
}

/// A decoded value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A signed integer (any width up to 128 bits).
    Int(i128),
    /// An unsigned integer (any width up to 128 bits).
    UInt(u128),
    /// A float, widened to `f64`.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A Unicode scalar (Rust `char`).
    Char(char),
    /// Text; `truncated` when the capture holds only a prefix.
    Str { text: String, truncated: bool },
    /// A struct, union, class or tuple. Tuple fields are named `__0`, `__1`, ...
    Struct {
        name: String,
        fields: Vec<(String, Value)>,
    },
    /// Array, slice or vector; `total` is the full length when only `items` were captured.
    Array {
        items: Vec<Value>,
        total: Option<u64>,
    },
    /// A non-null pointer; `target` is `None` when it was not followed (depth cap, `void *`).
    Pointer {
        address: u64,
        target: Option<Box<Value>>,
    },
    /// A null pointer.
    Null,
    /// An enum value: a C enumerator (no fields) or a Rust variant.
    Enum {
        name: String,
        variant: String,
        fields: Vec<(String, Value)>,
    },
    /// A Go interface: the dynamic type's name, and the value when it was captured.
    Interface {
        type_name: String,
        value: Option<Box<Value>>,
    },
    /// A value of no bytes (Rust `()`).
    Unit,
    /// DWARF says the value does not exist at this address.
    OptimizedOut,
    /// The value exists but was not captured or cannot be shown; `reason` says why.
    Unavailable { reason: String },
    /// Hidden on the node because its name matched the redaction rule `rule`
    /// ([`crate::redact`]); the raw value never left the node.
    Redacted { rule: String },
}

/// The field that holds a map's entries (`[(key, value)]` tuples) in [`Value::map`].
pub const MAP_ENTRIES: &str = "{map}";
/// The field that holds a set's items in [`Value::set`].
pub const SET_ITEMS: &str = "{set}";

/// A map or set as [`Value::as_collection`] reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Collection<'a> {
    /// True for a set (items are keys), false for a map (items are `(key, value)` tuples).
    pub set: bool,
    /// The entries shown.
    pub items: &'a [Value],
    /// How many entries the collection holds, when more than are shown.
    pub total: Option<u64>,
}

/// Largest integer magnitude a JSON number carries exactly (an IEEE double's mantissa).
const JSON_EXACT: u128 = 1 << 53;

impl Value {
    /// A value that could not be captured or decoded.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Value::Unavailable {
            reason: reason.into(),
        }
    }

    /// A map of type `name` (`HashMap<String, u32>`, `map[string]int`): the entries shown,
    /// and `total` when the map holds more (a cap cut it: "N of M shown").
    pub fn map(name: impl Into<String>, entries: Vec<(Value, Value)>, total: Option<u64>) -> Self {
        let items = entries
            .into_iter()
            .map(|(k, v)| Value::Struct {
                name: "(key, value)".into(),
                fields: vec![("__0".into(), k), ("__1".into(), v)],
            })
            .collect();
        Value::Struct {
            name: name.into(),
            fields: vec![(MAP_ENTRIES.into(), Value::Array { items, total })],
        }
    }

    /// A set of type `name`: the items shown, and `total` when it holds more.
    pub fn set(name: impl Into<String>, items: Vec<Value>, total: Option<u64>) -> Self {
        Value::Struct {
            name: name.into(),
            fields: vec![(SET_ITEMS.into(), Value::Array { items, total })],
        }
    }

    /// The entries of a value made by [`Value::map`] or [`Value::set`].
    pub fn as_collection(&self) -> Option<Collection<'_>> {
        let Value::Struct { fields, .. } = self else {
            return None;
        };
        match fields.as_slice() {
            [(k, Value::Array { items, total })] if k == MAP_ENTRIES || k == SET_ITEMS => {
                Some(Collection {
                    set: k == SET_ITEMS,
                    items,
                    total: *total,
                })
            }
            _ => None,
        }
    }

    /// The JSON form used by `tracery-ctl probe --output json` (issue 2, part 5).
    ///
    /// Integers are numbers, or decimal strings beyond 2^53; pointers are
    /// `{"address": "0x..", "target": ..}`; Rust `None` and null pointers are `null` and
    /// `Some(x)` is `x`; enum variants are `"Name"` or `{"variant", "fields"}`; anything not
    /// shown is `{"unavailable": reason}`.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Int(v) => {
                if v.unsigned_abs() <= JSON_EXACT {
                    json!(*v as i64)
                } else {
                    json!(v.to_string())
                }
            }
            Value::UInt(v) => {
                if *v <= JSON_EXACT {
                    json!(*v as u64)
                } else {
                    json!(v.to_string())
                }
            }
            Value::Float(f) => {
                if f.is_finite() {
                    json!(f)
                } else {
                    json!(f.to_string())
                }
            }
            Value::Bool(b) => json!(b),
            Value::Char(c) => json!(c.to_string()),
            Value::Str { text, .. } => json!(text),
            Value::Struct { .. } if self.as_collection().is_some() => {
                let c = self.as_collection().unwrap_or(Collection {
                    set: true,
                    items: &[],
                    total: None,
                });
                let items: Vec<Json> = c.items.iter().map(Value::to_json).collect();
                let mut m = Map::new();
                m.insert(if c.set { "set" } else { "map" }.into(), Json::Array(items));
                m.insert("shown".into(), json!(c.items.len()));
                m.insert(
                    "total".into(),
                    json!(c.total.unwrap_or(c.items.len() as u64)),
                );
                Json::Object(m)
            }
            Value::Struct { fields, .. } => {
                if is_tuple(fields) {
                    Json::Array(fields.iter().map(|(_, v)| v.to_json()).collect())
                } else {
                    object(fields)
                }
            }
            Value::Array { items, .. } => Json::Array(items.iter().map(Value::to_json).collect()),
            Value::Pointer { address, target } => json!({
                "address": format!("{address:#x}"),
                "target": target.as_ref().map_or(Json::Null, |t| t.to_json()),
            }),
            Value::Null | Value::Unit => Json::Null,
            Value::Enum {
                name,
                variant,
                fields,
            } => {
                if is_option(name) {
                    return match (variant.as_str(), fields.as_slice()) {
                        ("Some", [(_, v)]) => v.to_json(),
                        _ => Json::Null,
                    };
                }
                if fields.is_empty() {
                    return json!(variant);
                }
                let fields: Vec<(String, Value)> = fields
                    .iter()
                    .map(|(k, v)| (k.strip_prefix("__").unwrap_or(k).to_string(), v.clone()))
                    .collect();
                json!({ "variant": variant, "fields": object(&fields) })
            }
            Value::Interface { type_name, value } => {
                let mut m = Map::new();
                m.insert("type".into(), json!(type_name));
                if let Some(v) = value {
                    m.insert("value".into(), v.to_json());
                }
                Json::Object(m)
            }
            Value::OptimizedOut => json!({ "unavailable": "optimized out" }),
            Value::Unavailable { reason } => json!({ "unavailable": reason }),
            Value::Redacted { rule } => json!({ "redacted": rule }),
        }
    }
}

/// True for `core::option::Option<T>` (or a short `Option<T>`): shown as `null` or its value.
pub fn is_option(type_name: &str) -> bool {
    type_name.starts_with("core::option::Option<") || type_name.starts_with("Option<")
}

/// True when `fields` are a Rust tuple's: named `__0`, `__1`, ... in order.
pub fn is_tuple(fields: &[(String, Value)]) -> bool {
    !fields.is_empty()
        && fields
            .iter()
            .enumerate()
            .all(|(i, (k, _))| k.strip_prefix("__") == Some(i.to_string().as_str()))
}

fn object(fields: &[(String, Value)]) -> Json {
    let mut m = Map::new();
    for (k, v) in fields {
        m.insert(k.clone(), v.to_json());
    }
    Json::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_beyond_2_pow_53_are_strings() {
        assert_eq!(Value::Int(-7).to_json(), json!(-7));
        assert_eq!(Value::UInt(1 << 53).to_json(), json!(9007199254740992u64));
        assert_eq!(
            Value::UInt((1 << 53) + 1).to_json(),
            json!("9007199254740993")
        );
        assert_eq!(
            Value::Int(-(1 << 60)).to_json(),
            json!("-1152921504606846976")
        );
        assert_eq!(
            Value::UInt(u64::MAX as u128).to_json(),
            json!("18446744073709551615")
        );
    }

    #[test]
    fn pointers_options_enums_and_unavailable() {
        let p = Value::Pointer {
            address: 0x1000,
            target: Some(Box::new(Value::Int(5))),
        };
        assert_eq!(p.to_json(), json!({"address": "0x1000", "target": 5}));
        let unfollowed = Value::Pointer {
            address: 0x10,
            target: None,
        };
        assert_eq!(
            unfollowed.to_json(),
            json!({"address": "0x10", "target": null})
        );
        assert_eq!(Value::Null.to_json(), Json::Null);
        let some = Value::Enum {
            name: "core::option::Option<u32>".into(),
            variant: "Some".into(),
            fields: vec![("__0".into(), Value::UInt(5))],
        };
        assert_eq!(some.to_json(), json!(5));
        let none = Value::Enum {
            name: "core::option::Option<u32>".into(),
            variant: "None".into(),
            fields: vec![],
        };
        assert_eq!(none.to_json(), Json::Null);
        let paid = Value::Enum {
            name: "orders::Status".into(),
            variant: "Paid".into(),
            fields: vec![("amount".into(), Value::UInt(1250))],
        };
        assert_eq!(
            paid.to_json(),
            json!({"variant": "Paid", "fields": {"amount": 1250}})
        );
        let pending = Value::Enum {
            name: "orders::Status".into(),
            variant: "Pending".into(),
            fields: vec![],
        };
        assert_eq!(pending.to_json(), json!("Pending"));
        let cancelled = Value::Enum {
            name: "orders::Status".into(),
            variant: "Cancelled".into(),
            fields: vec![(
                "__0".into(),
                Value::Str {
                    text: "late".into(),
                    truncated: false,
                },
            )],
        };
        assert_eq!(
            cancelled.to_json(),
            json!({"variant": "Cancelled", "fields": {"0": "late"}})
        );
        assert_eq!(
            Value::OptimizedOut.to_json(),
            json!({"unavailable": "optimized out"})
        );
        assert_eq!(
            Value::unavailable("capture budget exhausted").to_json(),
            json!({"unavailable": "capture budget exhausted"})
        );
    }

    #[test]
    fn structs_tuples_arrays_interfaces() {
        let s = Value::Struct {
            name: "struct address".into(),
            fields: vec![
                (
                    "city".into(),
                    Value::Str {
                        text: "Lisbon".into(),
                        truncated: false,
                    },
                ),
                ("zip".into(), Value::Int(1100)),
            ],
        };
        assert_eq!(s.to_json(), json!({"city": "Lisbon", "zip": 1100}));
        let t = Value::Struct {
            name: "(i32, bool)".into(),
            fields: vec![
                ("__0".into(), Value::Int(-7)),
                ("__1".into(), Value::Bool(true)),
            ],
        };
        assert_eq!(t.to_json(), json!([-7, true]));
        let a = Value::Array {
            items: vec![Value::UInt(1), Value::UInt(2)],
            total: Some(10),
        };
        assert_eq!(a.to_json(), json!([1, 2]));
        let i = Value::Interface {
            type_name: "*main.Order".into(),
            value: None,
        };
        assert_eq!(i.to_json(), json!({"type": "*main.Order"}));
        assert_eq!(Value::Float(19.5).to_json(), json!(19.5));
        assert_eq!(Value::Float(f64::NAN).to_json(), json!("NaN"));
    }
}
