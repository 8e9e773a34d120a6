//! Go as `%#v` writes it, shortened: `main.Order{ID: 42}`, `[10, 20, 30]`, `nil`.

use super::{items, leaf, Doc, Language, TypeForm};
use crate::value::Value;

/// Go rendering.
pub(crate) struct Go;

impl Language for Go {
    fn name(&self) -> &'static str {
        "Go"
    }

    fn type_name(&self, form: TypeForm<'_>) -> String {
        match form {
            TypeForm::Void => "struct {}".into(),
            TypeForm::Tagged { name, .. } => name.unwrap_or("struct {...}").to_string(),
            TypeForm::Pointer { target, .. } => format!("*{target}"),
            TypeForm::Qualified { target, .. } => target.to_string(),
            TypeForm::Array { elem, dims } => {
                let dims: String = dims
                    .iter()
                    .map(|d| d.map_or("[]".to_string(), |n| format!("[{n}]")))
                    .collect();
                format!("{dims}{elem}")
            }
            TypeForm::Function { ret, params } => match ret {
                Some(r) => format!("func({}) {r}", params.join(", ")),
                None => format!("func({})", params.join(", ")),
            },
        }
    }

    fn render(&self, value: &Value) -> Doc {
        if let Some(leaf) = leaf(value) {
            return leaf;
        }
        if let Some(c) = value.as_collection() {
            // As Delve shows a map: `map[string]int ["a": 1, "b": 2]`.
            let name = match value {
                Value::Struct { name, .. } => name.as_str(),
                _ => "",
            };
            return Doc::Group {
                open: format!("{name} ["),
                items: super::collection_items(self, c, ": "),
                close: "]".into(),
                padded: false,
            };
        }
        match value {
            Value::Struct { name, fields } => Doc::Group {
                open: format!("{name}{{"),
                items: fields
                    .iter()
                    .map(|(k, v)| (Some(format!("{k}: ")), self.render(v)))
                    .collect(),
                close: "}".into(),
                padded: false,
            },
            Value::Array { items: xs, total } => Doc::Group {
                open: "[".into(),
                items: items(self, xs, *total),
                close: "]".into(),
                padded: false,
            },
            Value::Pointer { address, target } => match target {
                Some(t) => Doc::Concat(vec![
                    Doc::leaf(format!("{address:#x} -> &")),
                    self.render(t),
                ]),
                None => Doc::leaf(format!("{address:#x}")),
            },
            Value::Null => Doc::leaf("nil"),
            Value::Enum { variant, .. } => Doc::leaf(variant.clone()),
            Value::Interface { type_name, value } => match value {
                Some(v) => Doc::Concat(vec![
                    Doc::leaf(format!("{type_name}(")),
                    self.render(v),
                    Doc::leaf(")"),
                ]),
                None => Doc::leaf(format!("{type_name}(...)")),
            },
            Value::Unit => Doc::leaf("struct{}{}"),
            // Scalars and missing values: `leaf` above returned them.
            _ => Doc::leaf(""),
        }
    }
}
