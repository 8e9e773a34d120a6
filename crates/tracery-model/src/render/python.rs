//! Python as `repr` writes it: `{'id': 9, 'tags': ['a']}`, `(1, 2)`, `None`, `True`,
//! `Order(id=9, total=1.5)` for an instance (its class name and `__dict__`).

use super::{items, leaf, single_quoted, Doc, Language, TypeForm};
use crate::value::Value;

/// Python rendering.
pub(crate) struct Python;

impl Language for Python {
    fn name(&self) -> &'static str {
        "Python"
    }

    fn type_name(&self, form: TypeForm<'_>) -> String {
        // Python types come named from the capture; DWARF forms never reach here.
        match form {
            TypeForm::Tagged { name, .. } => name.unwrap_or("object").to_string(),
            TypeForm::Array { .. } => "list".into(),
            TypeForm::Function { .. } => "function".into(),
            _ => "object".into(),
        }
    }

    fn render(&self, value: &Value) -> Doc {
        match value {
            Value::Str { text, truncated } => return single_quoted(text, *truncated),
            Value::Bool(b) => return Doc::leaf(if *b { "True" } else { "False" }),
            Value::Null | Value::Unit => return Doc::leaf("None"),
            _ => {}
        }
        if let Some(leaf) = leaf(value) {
            return leaf;
        }
        if let Some(c) = value.as_collection() {
            return Doc::Group {
                open: "{".into(),
                items: super::collection_items(self, c, ": "),
                close: "}".into(),
                padded: false,
            };
        }
        match value {
            Value::Struct { name, fields } if name == "tuple" => Doc::Group {
                open: "(".into(),
                items: fields.iter().map(|(_, v)| (None, self.render(v))).collect(),
                close: ")".into(),
                padded: false,
            },
            Value::Struct { name, fields } => Doc::Group {
                open: format!("{name}("),
                items: fields
                    .iter()
                    .map(|(k, v)| (Some(format!("{k}=")), self.render(v)))
                    .collect(),
                close: ")".into(),
                padded: false,
            },
            Value::Array { items: xs, total } => Doc::Group {
                open: "[".into(),
                items: items(self, xs, *total),
                close: "]".into(),
                padded: false,
            },
            Value::Interface { type_name, value } => match value.as_deref() {
                Some(v) => self.render(v),
                None => Doc::leaf(format!("<{type_name} object>")),
            },
            Value::Pointer { address, .. } => Doc::leaf(format!("{address:#x}")),
            Value::Enum { variant, .. } => Doc::leaf(variant.clone()),
            // Scalars and missing values: `leaf` above returned them.
            _ => Doc::leaf(""),
        }
    }

    fn frame_label(&self) -> &'static str {
        "in"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Value {
        Value::Str {
            text: t.into(),
            truncated: false,
        }
    }

    #[test]
    fn values_read_as_repr_writes_them() {
        let v = Value::Struct {
            name: "Order".into(),
            fields: vec![
                ("id".into(), Value::Int(9)),
                ("name".into(), s("Ada")),
                ("paid".into(), Value::Bool(true)),
                ("note".into(), Value::Null),
                (
                    "tags".into(),
                    Value::Array {
                        items: vec![s("a"), Value::Int(2)],
                        total: None,
                    },
                ),
                (
                    "m".into(),
                    Value::map("dict", vec![(s("k"), Value::Float(1.5))], None),
                ),
            ],
        };
        assert_eq!(
            Python.render(&v).flat(),
            "Order(id=9, name='Ada', paid=True, note=None, tags=['a', 2], m={'k': 1.5})"
        );
    }
}
