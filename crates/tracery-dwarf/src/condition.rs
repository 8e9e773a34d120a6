//! `--when` conditions: parsed once, split between the kernel and user space.
//!
//! [`parse`] turns the text into an [`Expr`]. [`compile`] takes the top-level conjunction's
//! simple scalar comparisons that a plan captures at a fixed data offset and turns them into
//! kernel [`tracery_common::Condition`]s, so a false condition costs no ring-buffer record.
//! [`eval`] evaluates any expression over a hit's decoded variables, for what the kernel
//! cannot check (`||`, strings, floats, null, values it did not capture).

mod compile;
mod eval;
mod parse;

pub use compile::{compile, KernelSplit};
pub use eval::eval;
pub use parse::{parse, Comparison, Expr, Literal};

/// A `--when` expression could not be parsed or does not fit the probe site.
#[derive(Debug, thiserror::Error)]
pub enum ConditionError {
    /// The text is not a condition; `pos` is the byte offset where parsing stopped.
    #[error("malformed --when: {expected}\n{}", caret(.source_text, *.pos))]
    Syntax {
        source_text: String,
        pos: usize,
        expected: String,
    },
    /// A comparison names a variable the probe site does not have.
    #[error(
        "unknown variable `{name}` in --when; in scope at this location: {}",
        in_scope_list(.in_scope)
    )]
    UnknownVariable { name: String, in_scope: Vec<String> },
    /// A path names a field that the value's type does not have.
    #[error(
        "`{path}` ({type_name}) has no field `{field}` in --when; its fields: {}",
        in_scope_list(.fields)
    )]
    UnknownField {
        path: String,
        type_name: String,
        field: String,
        fields: Vec<String>,
    },
}

/// The expression on one line and a caret under byte `pos` on the next, both indented.
fn caret(src: &str, pos: usize) -> String {
    let pos = pos.min(src.len());
    // Columns count characters, not bytes; a position inside a character points at it.
    let col = src.char_indices().take_while(|(i, _)| *i < pos).count();
    let line: String = src
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    format!("  {line}\n  {}^", " ".repeat(col))
}

fn in_scope_list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_counts_characters_not_bytes() {
        let e = ConditionError::Syntax {
            source_text: "name == \"é\" &&".into(),
            pos: "name == \"é\" &&".len(),
            expected: "expected a comparison after `&&`".into(),
        };
        assert_eq!(
            e.to_string(),
            "malformed --when: expected a comparison after `&&`\n  name == \"é\" &&\n                ^"
        );
    }

    #[test]
    fn unknown_variable_lists_the_scope() {
        let e = ConditionError::UnknownVariable {
            name: "qtty".into(),
            in_scope: vec!["id".into(), "qty".into()],
        };
        assert_eq!(
            e.to_string(),
            "unknown variable `qtty` in --when; in scope at this location: id, qty"
        );
    }
}
