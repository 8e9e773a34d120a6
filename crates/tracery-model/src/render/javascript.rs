//! JavaScript as Node's `util.inspect` writes it, shortened: `{ id: 9, tags: [ 'a' ] }`,
//! `Map(2) { 'apple' => 3 }`, `[Function: handler]`, `undefined`.

use super::{items, leaf, single_quoted, Doc, Language, TypeForm};
use crate::value::Value;

/// JavaScript rendering.
pub(crate) struct JavaScript;

impl Language for JavaScript {
    fn name(&self) -> &'static str {
        "JavaScript"
    }

    fn type_name(&self, form: TypeForm<'_>) -> String {
        // JavaScript types come named from the capture; DWARF forms never reach here.
        match form {
            TypeForm::Tagged { name, .. } => name.unwrap_or("Object").to_string(),
            TypeForm::Array { .. } => "Array".into(),
            TypeForm::Function { .. } => "function".into(),
            _ => "Object".into(),
        }
    }

    fn render(&self, value: &Value) -> Doc {
        if let Value::Str { text, truncated } = value {
            return single_quoted(text, *truncated);
        }
        if let Some(leaf) = leaf(value) {
            return leaf;
        }
        if let Some(c) = value.as_collection() {
            let name = match value {
                Value::Struct { name, .. } => name.as_str(),
                _ => "",
            };
            let size = c.total.unwrap_or(c.items.len() as u64);
            return Doc::Group {
                open: format!("{name}({size}) {{"),
                items: super::collection_items(self, c, " => "),
                close: "}".into(),
                padded: true,
            };
        }
        match value {
            Value::Struct { name, fields } => Doc::Group {
                open: if name == "Object" {
                    "{".into()
                } else {
                    format!("{name} {{")
                },
                items: fields
                    .iter()
                    .map(|(k, v)| (Some(format!("{k}: ")), self.render(v)))
                    .collect(),
                close: "}".into(),
                padded: true,
            },
            Value::Array { items: xs, total } => Doc::Group {
                open: "[".into(),
                items: items(self, xs, *total),
                close: "]".into(),
                padded: true,
            },
            Value::Interface { type_name, value } => {
                let inner = match value.as_deref() {
                    Some(Value::Str { text, .. }) => text.clone(),
                    Some(v) => self.render(v).flat(),
                    None => String::new(),
                };
                Doc::leaf(match type_name.as_str() {
                    "function" if inner.is_empty() => "[Function (anonymous)]".to_owned(),
                    "function" => format!("[Function: {inner}]"),
                    "symbol" => format!("Symbol({inner})"),
                    other => format!("{other} {inner}"),
                })
            }
            Value::Null => Doc::leaf("null"),
            Value::Unit => Doc::leaf("undefined"),
            Value::Pointer { address, .. } => Doc::leaf(format!("{address:#x}")),
            Value::Enum { variant, .. } => Doc::leaf(variant.clone()),
            // Scalars and missing values: `leaf` above returned them.
            _ => Doc::leaf(""),
        }
    }

    fn frame_label(&self) -> &'static str {
        "closure of"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_node_prints_them() {
        let v = Value::Struct {
            name: "Object".into(),
            fields: vec![
                ("id".into(), Value::Int(9)),
                (
                    "name".into(),
                    Value::Str {
                        text: "Ada".into(),
                        truncated: false,
                    },
                ),
                (
                    "m".into(),
                    Value::map(
                        "Map",
                        vec![(
                            Value::Str {
                                text: "apple".into(),
                                truncated: false,
                            },
                            Value::Int(3),
                        )],
                        None,
                    ),
                ),
                (
                    "f".into(),
                    Value::Interface {
                        type_name: "function".into(),
                        value: Some(Box::new(Value::Str {
                            text: "h".into(),
                            truncated: false,
                        })),
                    },
                ),
                ("u".into(), Value::Unit),
            ],
        };
        assert_eq!(
            JavaScript.render(&v).flat(),
            "{ id: 9, name: 'Ada', m: Map(1) { 'apple' => 3 }, f: [Function: h], u: undefined }"
        );
    }
}
