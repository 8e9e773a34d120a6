//! `--when` conditions: parsed once, split between the kernel and user space.
//!
//! [`parse`] turns the text into an [`Expr`]. [`compile`] takes the top-level conjunction's
//! simple scalar comparisons that a plan captures at a fixed data offset and turns them into
//! kernel [`tracery_common::Condition`]s, so a false condition costs no ring-buffer record.
//! [`eval`] evaluates any expression over a hit's decoded variables, for what the kernel
//! cannot check (`||`, strings, floats, null, values it did not capture).

mod compile;
mod eval;

pub use compile::{compile, KernelSplit};
pub use eval::eval;
pub use tracery_model::condition::{Comparison, Expr, Literal, SyntaxError};

/// Parses a `--when` expression (the grammar is `tracery_model::condition`).
///
/// Errors carry the byte position where the text stops making sense and what was expected
/// there; their `Display` draws a caret under it.
pub fn parse(src: &str) -> Result<Expr, ConditionError> {
    Ok(tracery_model::condition::parse(src)?)
}

/// A `--when` expression could not be parsed or does not fit the probe site.
#[derive(Debug, thiserror::Error)]
pub enum ConditionError {
    /// The text is not a condition.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
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
