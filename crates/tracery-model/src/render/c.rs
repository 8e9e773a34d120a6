//! C (and C++) as gdb writes it: `{id = 42, ship = {zip = 1100}}`, `0x10 -> 1`, `NULL`.

use super::{items, leaf, Doc, Language, TypeForm};
use crate::value::Value;

/// C and C++ rendering; `cpp` drops the `struct` keyword from type names.
pub(crate) struct C {
    pub cpp: bool,
}

impl Language for C {
    fn name(&self) -> &'static str {
        if self.cpp {
            "C++"
        } else {
            "C"
        }
    }

    fn type_name(&self, form: TypeForm<'_>) -> String {
        match form {
            TypeForm::Void => "void".into(),
            TypeForm::Tagged { keyword, name } => match (name, self.cpp) {
                (Some(n), true) => n.to_string(),
                (Some(n), false) => format!("{keyword} {n}"),
                (None, _) => format!("{keyword} <anonymous>"),
            },
            TypeForm::Pointer { target, reference } => {
                let sigil = if reference { '&' } else { '*' };
                // Pointer to function: `int (*)(int)`.
                if let Some(paren) = target.find(" (") {
                    return format!("{} ({sigil}){}", &target[..paren], &target[paren + 1..]);
                }
                if target.ends_with(['*', '&']) {
                    format!("{target}{sigil}")
                } else {
                    format!("{target} {sigil}")
                }
            }
            TypeForm::Qualified { qualifier, target } => format!("{qualifier} {target}"),
            TypeForm::Array { elem, dims } => {
                let dims: String = dims
                    .iter()
                    .map(|d| d.map_or("[]".to_string(), |n| format!("[{n}]")))
                    .collect();
                format!("{elem} {dims}")
            }
            TypeForm::Function { ret, params } => {
                let params = if params.is_empty() {
                    "void".to_string()
                } else {
                    params.join(", ")
                };
                format!("{} ({params})", ret.unwrap_or("void"))
            }
        }
    }

    fn render(&self, value: &Value) -> Doc {
        if let Some(leaf) = leaf(value) {
            return leaf;
        }
        if self.cpp {
            if let Some(doc) = super::cpp::printer(self, value) {
                return doc;
            }
        }
        match value {
            Value::Struct { fields, .. } => Doc::Group {
                open: "{".into(),
                items: fields
                    .iter()
                    .map(|(k, v)| (Some(format!("{k} = ")), self.render(v)))
                    .collect(),
                close: "}".into(),
                padded: false,
            },
            Value::Array { items: xs, total } => Doc::Group {
                open: "{".into(),
                items: items(self, xs, *total),
                close: "}".into(),
                padded: false,
            },
            Value::Pointer { address, target } => match target {
                Some(t) => {
                    Doc::Concat(vec![Doc::leaf(format!("{address:#x} -> ")), self.render(t)])
                }
                None => Doc::leaf(format!("{address:#x}")),
            },
            Value::Null => Doc::leaf("NULL"),
            Value::Enum {
                variant, fields, ..
            } => {
                if fields.is_empty() {
                    Doc::leaf(variant.clone())
                } else {
                    Doc::Concat(vec![
                        Doc::leaf(format!("{variant} ")),
                        self.render(&Value::Struct {
                            name: String::new(),
                            fields: fields.clone(),
                        }),
                    ])
                }
            }
            Value::Interface { type_name, value } => match value {
                Some(v) => Doc::Concat(vec![Doc::leaf(format!("({type_name}) ")), self.render(v)]),
                None => Doc::leaf(format!("({type_name})")),
            },
            Value::Unit => Doc::leaf("void"),
            // Scalars and missing values: `leaf` above returned them.
            _ => Doc::leaf(""),
        }
    }
}
