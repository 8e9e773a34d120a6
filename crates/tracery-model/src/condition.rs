//! The `--when` grammar: [`parse`] turns the text into an [`Expr`].
//!
//! Only the syntax lives here, so the CLI checks a condition where the caret can point
//! into what the user typed without the DWARF stack; fitting it to a probe site and
//! evaluating it are `tracery_dwarf::condition`.

mod parse;

pub use parse::{parse, Comparison, Expr, Literal};

/// A `--when` text that is not a condition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed --when: {expected}\n{}", caret(.source_text, *.pos))]
pub struct SyntaxError {
    /// The whole condition as given.
    pub source_text: String,
    /// Byte offset where parsing stopped.
    pub pos: usize,
    /// What was expected there.
    pub expected: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_counts_characters_not_bytes() {
        let e = SyntaxError {
            source_text: "name == \"é\" &&".into(),
            pos: "name == \"é\" &&".len(),
            expected: "expected a comparison after `&&`".into(),
        };
        assert_eq!(
            e.to_string(),
            "malformed --when: expected a comparison after `&&`\n  name == \"é\" &&\n                ^"
        );
    }
}
