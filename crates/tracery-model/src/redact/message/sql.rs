//! Which column each SQL value belongs to, from a light tokenizer: enough for
//! `col = value` (and `<>`, `!=`, `LIKE`) and `INSERT INTO t (cols) VALUES (values)`.
//! A value in any other place (a function argument, `IN (...)`) has no column and is
//! left as it is.

use std::ops::Range;

use super::{marker, Redaction};

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// A `'...'` literal or a number.
    Literal,
    /// `$N`.
    Param(usize),
    Punct(String),
}

fn tokens(sql: &str) -> Vec<(Tok, Range<usize>)> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let tok = if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c == b'\'' {
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            Tok::Literal
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += 1;
            }
            i = (i + 1).min(b.len());
            Tok::Ident(sql[start + 1..i.saturating_sub(1).max(start + 1)].to_owned())
        } else if c == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            Tok::Param(sql[start + 1..i].parse().unwrap_or(0))
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            Tok::Literal
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
                i += 1;
            }
            Tok::Ident(sql[start..i].to_owned())
        } else {
            i += 1;
            while i < b.len() && b"<>=!".contains(&b[i]) && b"<>=!".contains(&c) {
                i += 1;
            }
            Tok::Punct(sql[start..i].to_owned())
        };
        out.push((tok, start..i));
    }
    out
}

/// Each value token (literal or `$N`) with the column it is compared with or inserted into.
fn columns(toks: &[(Tok, Range<usize>)]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let is_value = |t: &Tok| matches!(t, Tok::Literal | Tok::Param(_));
    for i in 0..toks.len() {
        // col OP value
        if i >= 2 && is_value(&toks[i].0) {
            let op = match &toks[i - 1].0 {
                Tok::Punct(p) => matches!(p.as_str(), "=" | "<>" | "!="),
                Tok::Ident(k) => k.eq_ignore_ascii_case("like") || k.eq_ignore_ascii_case("ilike"),
                _ => false,
            };
            if let (true, Tok::Ident(col)) = (op, &toks[i - 2].0) {
                out.push((i, col.clone()));
            }
        }
        // INSERT INTO t (c1, c2) VALUES (v1, v2), (..)
        if matches!(&toks[i].0, Tok::Ident(k) if k.eq_ignore_ascii_case("values")) {
            let Some(cols) = paren_list_before(toks, i) else {
                continue;
            };
            let mut j = i + 1;
            while matches!(toks.get(j), Some((Tok::Punct(p), _)) if p == "(") {
                let mut n = 0;
                j += 1;
                while let Some((t, _)) = toks.get(j) {
                    match t {
                        Tok::Punct(p) if p == ")" => break,
                        Tok::Punct(p) if p == "," => n += 1,
                        t if is_value(t) => {
                            if let Some(c) = cols.get(n) {
                                out.push((j, c.clone()));
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                j += 1;
                if matches!(toks.get(j), Some((Tok::Punct(p), _)) if p == ",") {
                    j += 1;
                }
            }
        }
    }
    out
}

/// The identifiers of the `(a, b, c)` that ends right before token `at`.
fn paren_list_before(toks: &[(Tok, Range<usize>)], at: usize) -> Option<Vec<String>> {
    if !matches!(toks.get(at.checked_sub(1)?), Some((Tok::Punct(p), _)) if p == ")") {
        return None;
    }
    let mut cols = Vec::new();
    let mut j = at - 2;
    loop {
        match &toks[j].0 {
            Tok::Ident(c) => cols.push(c.clone()),
            Tok::Punct(p) if p == "," => {}
            Tok::Punct(p) if p == "(" => break,
            _ => return None,
        }
        j = j.checked_sub(1)?;
    }
    cols.reverse();
    Some(cols)
}

/// Column of each `$N` (index N-1), when known.
pub fn param_columns(sql: &str) -> Vec<Option<String>> {
    let toks = tokens(sql);
    let mut out: Vec<Option<String>> = Vec::new();
    for (i, col) in columns(&toks) {
        if let Tok::Param(n) = toks[i].0 {
            if (1..=65535).contains(&n) {
                if out.len() < n {
                    out.resize(n, None);
                }
                out[n - 1].get_or_insert(col);
            }
        }
    }
    out
}

/// `sql` with literals of matching columns replaced by `'<redacted: RULE>'`.
pub fn redact_literals(r: &Redaction, sql: &str, removed: &mut Vec<String>) -> String {
    let toks = tokens(sql);
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut cols = columns(&toks);
    cols.sort_by_key(|c| c.0);
    cols.dedup_by_key(|c| c.0);
    for (i, col) in cols {
        let (Tok::Literal, span) = &toks[i] else {
            continue;
        };
        let Some(rule) = r.rule_for(&col) else {
            continue;
        };
        let raw = &sql[span.clone()];
        removed.push(raw.trim_matches('\'').replace("''", "'"));
        out.push_str(&sql[copied..span.start]);
        out.push_str(&format!("'{}'", marker(rule)));
        copied = span.end;
    }
    out.push_str(&sql[copied..]);
    out
}
