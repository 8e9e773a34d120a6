//! PostgreSQL capture queries: placeholders become `$n`, and a real SQL parser makes sure
//! the text is exactly one read-only query before anything runs.

use std::ops::ControlFlow;

use sqlparser::{
    ast::{SetExpr, Statement, Visit, Visitor},
    dialect::PostgreSqlDialect,
    parser::Parser,
};

use super::{placeholder::placeholder_at, placeholder::PathTable, CaptureError};

/// A validated PostgreSQL query: `sql` uses `$1..$n`, where `$k` is `paths[k - 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgQuery {
    /// The query with each placeholder replaced by `$n`.
    pub sql: String,
    /// The same text, split at each parameter (to add casts without touching literals).
    parts: Vec<SqlPart>,
    pub(crate) paths: PathTable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SqlPart {
    Text(String),
    /// Parameter `$k` (1-based).
    Param(usize),
}

impl PgQuery {
    /// The query with parameter `$k` written as `param(k)` (for example `$1::text::int4`).
    pub fn render(&self, param: impl Fn(usize) -> String) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                SqlPart::Text(text) => text.clone(),
                SqlPart::Param(k) => param(*k),
            })
            .collect()
    }
}

/// Parses and checks `text` (without the `name:` prefix).
pub(crate) fn parse(text: &str) -> Result<PgQuery, CaptureError> {
    let (parts, paths) = substitute(text)?;
    let sql: String = parts
        .iter()
        .map(|part| match part {
            SqlPart::Text(text) => text.clone(),
            SqlPart::Param(k) => format!("${k}"),
        })
        .collect();
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, &sql).map_err(|source| {
        CaptureError::SqlSyntax {
            query: text.to_owned(),
            message: source.to_string(),
        }
    })?;
    let statement = match statements.as_slice() {
        [one] => one,
        [] => {
            return Err(CaptureError::NotOneStatement {
                query: text.to_owned(),
                count: 0,
            })
        }
        many => {
            return Err(CaptureError::NotOneStatement {
                query: text.to_owned(),
                count: many.len(),
            })
        }
    };
    if !matches!(statement, Statement::Query(_)) {
        return Err(CaptureError::Writes {
            query: text.to_owned(),
            reason: format!(
                "it is a {} statement, not a query",
                statement_kind(statement)
            ),
        });
    }
    let mut check = ReadOnly;
    if let ControlFlow::Break(reason) = statement.visit(&mut check) {
        return Err(CaptureError::Writes {
            query: text.to_owned(),
            reason,
        });
    }
    Ok(PgQuery { sql, parts, paths })
}

/// Finds every way a query could write or lock: nested INSERT/UPDATE/DELETE/MERGE (in a
/// CTE), `SELECT INTO`, and `FOR UPDATE/SHARE`.
struct ReadOnly;

impl Visitor for ReadOnly {
    type Break = String;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        if matches!(statement, Statement::Query(_)) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(format!(
                "it contains a {} statement (a data-modifying WITH)",
                statement_kind(statement)
            ))
        }
    }

    fn pre_visit_query(&mut self, query: &sqlparser::ast::Query) -> ControlFlow<String> {
        if let Some(lock) = query.locks.first() {
            return ControlFlow::Break(format!(
                "it takes row locks ({lock}); drop the FOR UPDATE/SHARE clause"
            ));
        }
        if let SetExpr::Select(select) = query.body.as_ref() {
            if select.into.is_some() {
                return ControlFlow::Break(
                    "SELECT INTO creates a table; drop the INTO clause".into(),
                );
            }
        }
        if let SetExpr::Insert(statement)
        | SetExpr::Update(statement)
        | SetExpr::Delete(statement)
        | SetExpr::Merge(statement) = query.body.as_ref()
        {
            return self.pre_visit_statement(statement);
        }
        ControlFlow::Continue(())
    }
}

/// The statement's leading keyword(s), for messages: `INSERT`, `UPDATE`, `CREATE TABLE`.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second] if matches!(*first, "CREATE" | "DROP" | "ALTER") => {
            format!("{first} {second}")
        }
        [first, ..] => (*first).to_owned(),
        [] => "empty".into(),
    }
}

/// Replaces each `{path}` outside quotes and comments with `$n`; the same path twice gets
/// the same `$n`. A `$1` the user wrote is refused: it would have no value.
fn substitute(text: &str) -> Result<(Vec<SqlPart>, PathTable), CaptureError> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut paths = PathTable::default();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let skip_to = match c {
            b'\'' => {
                // E'...' strings take backslash escapes.
                let escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E');
                Some(quoted_end(bytes, i, b'\'', escapes))
            }
            b'"' => Some(quoted_end(bytes, i, b'"', false)),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                Some(text[i..].find('\n').map_or(bytes.len(), |n| i + n))
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => Some(block_comment_end(bytes, i)),
            b'$' => match dollar_tag(text, i) {
                Some(tag) => Some(
                    text[i + tag.len()..]
                        .find(tag)
                        .map_or(bytes.len(), |n| i + tag.len() + n + tag.len()),
                ),
                None if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    return Err(CaptureError::PositionalParameter {
                        query: text.to_owned(),
                    })
                }
                None => None,
            },
            b'{' => match placeholder_at(text, i) {
                Some((path, end)) => {
                    let slot = paths.slot(path);
                    parts.push(SqlPart::Text(std::mem::take(&mut out)));
                    parts.push(SqlPart::Param(slot + 1));
                    i = end;
                    continue;
                }
                None => {
                    let shown: String = text[i..].chars().take(40).collect();
                    return Err(CaptureError::BadPlaceholder {
                        query: text.to_owned(),
                        near: shown,
                    });
                }
            },
            _ => None,
        };
        let end = skip_to.unwrap_or(i + 1).max(i + 1).min(bytes.len());
        out.push_str(&text[i..end]);
        i = end;
    }
    parts.push(SqlPart::Text(out));
    parts.retain(|p| !matches!(p, SqlPart::Text(t) if t.is_empty()));
    Ok((parts, paths))
}

fn quoted_end(bytes: &[u8], open: usize, quote: u8, escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            q if q == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            q if q == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// PostgreSQL block comments nest.
fn block_comment_end(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// `$$` or `$tag$` at `at`, the opening of a dollar-quoted string.
fn dollar_tag(text: &str, at: usize) -> Option<&str> {
    let rest = &text[at + 1..];
    let len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    let starts_ok = rest.bytes().next().is_some_and(|b| !b.is_ascii_digit());
    (rest.as_bytes().get(len) == Some(&b'$') && (len == 0 || starts_ok))
        .then(|| &text[at..at + len + 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_parameters() {
        let q = parse(
            "SELECT id, '{not.this}' AS s, $x${nor.this}$x$ FROM orders /* {nor.that} */ \
             WHERE customer = {order.customer} AND total > {limit} OR customer = {order.customer}",
        )
        .unwrap();
        assert_eq!(
            q.sql,
            "SELECT id, '{not.this}' AS s, $x${nor.this}$x$ FROM orders /* {nor.that} */ \
             WHERE customer = $1 AND total > $2 OR customer = $1"
        );
        assert_eq!(q.paths.paths, ["order.customer", "limit"]);
        assert!(q.render(|k| format!("${k}::text::int8")).ends_with(
            "customer = $1::text::int8 AND total > $2::text::int8 OR customer = $1::text::int8"
        ));
    }

    #[test]
    fn read_only_queries_pass() {
        for ok in [
            "SELECT 1",
            "WITH t AS (SELECT 1 AS a) SELECT a FROM t",
            "SELECT * FROM a UNION SELECT * FROM b",
            "VALUES (1), (2)",
            "SELECT to_json(o) FROM orders o WHERE o.id = ANY({ids})",
        ] {
            parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }
}
