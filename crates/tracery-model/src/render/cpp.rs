//! C++ standard-library values as gdb's libstdc++ pretty printers write them:
//! `std::vector of length 2, capacity 2 = {1, 2}`, `std::map with 1 elements = {["a"] = 1}`,
//! `std::optional<int> = {[contained value] = 5}`. The C++ decoder names such a struct
//! after the printer's header and gives it one of [`PRINTER_FIELDS`] first.

use super::{Doc, Language};
use crate::value::Value;

/// First field names that mark a struct as a printer's output.
const PRINTER_FIELDS: [&str; 5] = ["{items}", "{map}", "{set}", "get()", "[contained value]"];

/// The printer form of `value`, when it is a libstdc++ value decoded as one.
pub(super) fn printer(lang: &dyn Language, value: &Value) -> Option<Doc> {
    let Value::Struct { name, fields } = value else {
        return None;
    };
    let (first, inner) = fields.first()?;
    if !name.starts_with("std::") || !PRINTER_FIELDS.contains(&first.as_str()) {
        return None;
    }
    let with = |items: Vec<(Option<String>, Doc)>| {
        if items.is_empty() {
            return Doc::leaf(name.clone());
        }
        Doc::Concat(vec![
            Doc::leaf(format!("{name} = ")),
            Doc::Group {
                open: "{".into(),
                items,
                close: "}".into(),
                padded: false,
            },
        ])
    };
    if let Some(c) = value.as_collection() {
        let mut items: Vec<(Option<String>, Doc)> = c
            .items
            .iter()
            .enumerate()
            .map(|(i, e)| match e {
                Value::Struct { fields, .. } if !c.set && fields.len() == 2 => (
                    Some(format!("[{}] = ", lang.render(&fields[0].1).flat())),
                    lang.render(&fields[1].1),
                ),
                other => (Some(format!("[{i}] = ")), lang.render(other)),
            })
            .collect();
        push_cut(&mut items, c.items.len(), c.total);
        return Some(with(items));
    }
    if first == "{items}" {
        return Some(match inner {
            Value::Array { items: xs, total } => {
                let mut items: Vec<(Option<String>, Doc)> =
                    xs.iter().map(|v| (None, lang.render(v))).collect();
                push_cut(&mut items, xs.len(), *total);
                with(items)
            }
            other => Doc::Concat(vec![Doc::leaf(format!("{name} = ")), lang.render(other)]),
        });
    }
    let items = fields
        .iter()
        .map(|(k, v)| (Some(format!("{k} = ")), lang.render(v)))
        .collect();
    Some(with(items))
}

/// `... (N of M shown)` after entries a capture cap cut.
fn push_cut(items: &mut Vec<(Option<String>, Doc)>, shown: usize, total: Option<u64>) {
    if let Some(t) = total.filter(|t| *t > shown as u64) {
        items.push((None, Doc::leaf(format!("... ({shown} of {t} shown)"))));
    }
}
