//! The `--when` grammar: comparisons of a variable path with a literal, under `!`, `&&`,
//! `||` and parentheses (`!` binds tightest, then `&&`, then `||`).

use std::fmt;

use tracery_common::CmpOp;

use super::SyntaxError;

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// The inner expression does not hold.
    Not(Box<Expr>),
    /// One comparison.
    Cmp(Comparison),
}

/// `path OP literal`: a variable (and fields, through pointers) against a constant.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The variable name, then field names (`["order", "ship", "zip"]`).
    pub path: Vec<String>,
    /// How the variable compares with the literal (written `literal OP path`, it is flipped).
    pub op: CmpOp,
    /// The constant.
    pub literal: Literal,
    /// Byte offset of the path in the source text.
    pub pos: usize,
}

/// A constant in a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// Decimal or `0x` hexadecimal, possibly negative.
    Int(i128),
    /// A number with a fraction or exponent.
    Float(f64),
    /// A double-quoted string, escapes resolved.
    Str(String),
    /// `true` or `false`.
    Bool(bool),
    /// `null`: a null pointer or Rust `None`.
    Null,
}

impl Expr {
    /// The comparisons joined by the top-level `&&`s, left to right (the whole expression
    /// when it is not a conjunction).
    pub fn conjuncts(&self) -> Vec<&Expr> {
        match self {
            Expr::And(a, b) => {
                let mut v = a.conjuncts();
                v.extend(b.conjuncts());
                v
            }
            other => vec![other],
        }
    }

    /// The conjunction of `parts`; `None` when there are none.
    pub fn all(parts: impl IntoIterator<Item = Expr>) -> Option<Expr> {
        parts
            .into_iter()
            .reduce(|a, b| Expr::And(Box::new(a), Box::new(b)))
    }
}

fn op_str(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}

/// `a OP b` as `b OP' a`.
fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        same => same,
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Int(v) => write!(f, "{v}"),
            Literal::Float(v) => write!(f, "{v:?}"),
            Literal::Str(s) => write!(f, "{s:?}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Null => f.write_str("null"),
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.path.join("."),
            op_str(self.op),
            self.literal
        )
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Fully parenthesised below the top, so the text reads back as the same tree.
        match self {
            Expr::Cmp(c) => write!(f, "{c}"),
            Expr::Not(e) => match **e {
                Expr::Cmp(_) | Expr::Not(_) => write!(f, "!{e}"),
                _ => write!(f, "!({e})"),
            },
            Expr::And(a, b) => write!(f, "{} && {}", Paren(a), Paren(b)),
            Expr::Or(a, b) => write!(f, "{} || {}", Paren(a), Paren(b)),
        }
    }
}

struct Paren<'a>(&'a Expr);

impl fmt::Display for Paren<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Expr::And(..) | Expr::Or(..) => write!(f, "({})", self.0),
            e => write!(f, "{e}"),
        }
    }
}

/// Parses a `--when` expression.
///
/// Errors carry the byte position where the text stops making sense and what was expected
/// there; their `Display` draws a caret under it.
pub fn parse(src: &str) -> Result<Expr, SyntaxError> {
    let tokens = lex(src)?;
    let mut p = Parser { src, tokens, at: 0 };
    if p.peek().tok == Tok::End {
        let pos = p.peek().pos;
        return Err(p.error(pos, "expected a comparison such as `qty > 10`"));
    }
    let e = p.or()?;
    let t = p.peek();
    if t.tok != Tok::End {
        let what = if t.tok == Tok::RParen {
            "unmatched `)`".to_string()
        } else {
            format!("expected `&&`, `||` or the end after `{}`", p.prev_text())
        };
        return Err(p.error(t.pos, what));
    }
    Ok(e)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Lit(Literal),
    Cmp(CmpOp),
    And,
    Or,
    Bang,
    LParen,
    RParen,
    Dot,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    pos: usize,
    end: usize,
}

fn syntax(src: &str, pos: usize, expected: impl Into<String>) -> SyntaxError {
    SyntaxError {
        source_text: src.to_string(),
        pos,
        expected: expected.into(),
    }
}

fn lex(src: &str) -> Result<Vec<Token>, SyntaxError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let two = b.get(i + 1).copied();
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b'.' => {
                i += 1;
                Tok::Dot
            }
            b'&' if two == Some(b'&') => {
                i += 2;
                Tok::And
            }
            b'|' if two == Some(b'|') => {
                i += 2;
                Tok::Or
            }
            b'&' | b'|' => {
                let c = c as char;
                return Err(syntax(src, i, format!("expected `{c}{c}`")));
            }
            b'=' if two == Some(b'=') => {
                i += 2;
                Tok::Cmp(CmpOp::Eq)
            }
            b'=' => return Err(syntax(src, i, "expected `==` (comparison), not `=`")),
            b'!' if two == Some(b'=') => {
                i += 2;
                Tok::Cmp(CmpOp::Ne)
            }
            b'!' => {
                i += 1;
                Tok::Bang
            }
            b'<' | b'>' => {
                let eq = two == Some(b'=');
                i += 1 + usize::from(eq);
                Tok::Cmp(match (c, eq) {
                    (b'<', false) => CmpOp::Lt,
                    (b'<', true) => CmpOp::Le,
                    (_, false) => CmpOp::Gt,
                    (_, true) => CmpOp::Ge,
                })
            }
            b'"' => {
                let (s, end) = string(src, i)?;
                i = end;
                Tok::Lit(Literal::Str(s))
            }
            b'-' | b'0'..=b'9' => {
                let (lit, end) = number(src, i)?;
                i = end;
                Tok::Lit(lit)
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                match &src[start..i] {
                    "true" => Tok::Lit(Literal::Bool(true)),
                    "false" => Tok::Lit(Literal::Bool(false)),
                    "null" => Tok::Lit(Literal::Null),
                    name => Tok::Ident(name.to_string()),
                }
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(syntax(src, i, format!("unexpected character `{ch}`")));
            }
        };
        out.push(Token {
            tok,
            pos: start,
            end: i,
        });
    }
    out.push(Token {
        tok: Tok::End,
        pos: src.len(),
        end: src.len(),
    });
    Ok(out)
}

/// A double-quoted string starting at `start`; returns it and the offset past the quote.
fn string(src: &str, start: usize) -> Result<(String, usize), SyntaxError> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        let at = start + 1 + k;
        match c {
            '"' => return Ok((out, at + 1)),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0' => out.push('\0'),
                    'u' => {
                        let rest = &src[at + 2..];
                        let code = rest
                            .strip_prefix('{')
                            .and_then(|r| r.split_once('}'))
                            .and_then(|(hex, _)| u32::from_str_radix(hex, 16).ok())
                            .and_then(char::from_u32);
                        let Some(ch) = code else {
                            return Err(syntax(
                                src,
                                at,
                                "expected a Unicode escape such as `\\u{e9}`",
                            ));
                        };
                        out.push(ch);
                        // Skip `{hex}`.
                        for (_, c) in chars.by_ref() {
                            if c == '}' {
                                break;
                            }
                        }
                    }
                    other => {
                        return Err(syntax(
                            src,
                            at,
                            format!(
                                "unknown escape `\\{other}`; use \\\" \\\\ \\n \\t \\r \\0 or \\u{{..}}"
                            ),
                        ))
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(syntax(
        src,
        src.len(),
        format!("expected a closing `\"` for the string opened at byte {start}"),
    ))
}

/// A number starting at `start` (an optional `-`, then decimal, `0x` hex or a float).
fn number(src: &str, start: usize) -> Result<(Literal, usize), SyntaxError> {
    let b = src.as_bytes();
    let mut i = start;
    let neg = b[i] == b'-';
    if neg {
        i += 1;
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return Err(syntax(src, start, "expected a number after `-`"));
        }
    }
    let digits_start = i;
    let word_end = |mut j: usize| {
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'.') {
            j += 1;
        }
        j
    };
    let malformed = |end: usize| {
        syntax(
            src,
            start,
            format!("malformed number `{}`", &src[start..end]),
        )
    };
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
        let end = word_end(i + 2);
        let v = u128::from_str_radix(&src[i + 2..end], 16).map_err(|_| malformed(end))?;
        let v = i128::try_from(v).map_err(|_| malformed(end))?;
        return Ok((Literal::Int(if neg { -v } else { v }), end));
    }
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut float = false;
    if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        float = true;
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            float = true;
            i = j;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    // `12abc`, `1.2.3` and `1.` are one malformed word, not a number and a name.
    if i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
        return Err(malformed(word_end(i)));
    }
    let text = &src[start..i];
    let lit = if float {
        let v: f64 = text.parse().map_err(|_| malformed(i))?;
        // `1e999` reads as infinity, which no literal can write back (the condition is
        // sent and stored as text).
        if !v.is_finite() {
            return Err(syntax(
                src,
                start,
                format!("number `{text}` is out of range"),
            ));
        }
        Literal::Float(v)
    } else {
        let v: i128 = src[digits_start..i].parse().map_err(|_| malformed(i))?;
        Literal::Int(if neg { -v } else { v })
    };
    Ok((lit, i))
}

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token>,
    at: usize,
}

/// One side of a comparison.
enum Operand {
    Path(Vec<String>, usize),
    Lit(Literal),
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        t
    }

    /// The source text of the last token consumed.
    fn prev_text(&self) -> &str {
        match self.at.checked_sub(1).and_then(|i| self.tokens.get(i)) {
            Some(t) => &self.src[t.pos..t.end],
            None => "",
        }
    }

    fn error(&self, pos: usize, expected: impl Into<String>) -> SyntaxError {
        syntax(self.src, pos, expected)
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut e = self.and()?;
        while self.peek().tok == Tok::Or {
            self.next();
            let rhs = self.and()?;
            e = Expr::Or(Box::new(e), Box::new(rhs));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut e = self.unary()?;
        while self.peek().tok == Tok::And {
            self.next();
            let rhs = self.unary()?;
            e = Expr::And(Box::new(e), Box::new(rhs));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Bang => {
                self.next();
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Tok::LParen => {
                self.next();
                let e = self.or()?;
                let close = self.peek().clone();
                if close.tok != Tok::RParen {
                    return Err(self.error(
                        close.pos,
                        format!(
                            "expected `)` to close the `(` at byte {}, or `&&` or `||`",
                            t.pos
                        ),
                    ));
                }
                self.next();
                Ok(e)
            }
            Tok::End | Tok::And | Tok::Or | Tok::RParen | Tok::Cmp(_) | Tok::Dot => {
                let what = match self.at.checked_sub(1).map(|i| &self.tokens[i].tok) {
                    Some(Tok::And | Tok::Or | Tok::Bang | Tok::LParen) => {
                        format!("expected a comparison after `{}`", self.prev_text())
                    }
                    _ => "expected a comparison such as `qty > 10`".to_string(),
                };
                Err(self.error(t.pos, what))
            }
            Tok::Ident(_) | Tok::Lit(_) => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Expr, SyntaxError> {
        let first_pos = self.peek().pos;
        let lhs = self.operand()?;
        let op_tok = self.peek().clone();
        let Tok::Cmp(op) = op_tok.tok else {
            let what = match &lhs {
                Operand::Path(p, _) => format!(
                    "expected a comparison operator (==, !=, <, <=, >, >=) after `{}`",
                    p.join(".")
                ),
                Operand::Lit(_) => format!(
                    "expected a comparison operator (==, !=, <, <=, >, >=) after `{}`",
                    self.prev_text()
                ),
            };
            return Err(self.error(op_tok.pos, what));
        };
        self.next();
        let op_text = &self.src[op_tok.pos..op_tok.end];
        let rhs_pos = self.peek().pos;
        let rhs = match self.peek().tok {
            Tok::Ident(_) | Tok::Lit(_) => self.operand()?,
            _ => {
                return Err(self.error(rhs_pos, format!("expected a value after `{op_text}`")));
            }
        };
        let cmp = match (lhs, rhs) {
            (Operand::Path(path, pos), Operand::Lit(literal)) => Comparison {
                path,
                op,
                literal,
                pos,
            },
            (Operand::Lit(literal), Operand::Path(path, pos)) => Comparison {
                path,
                op: flip(op),
                literal,
                pos,
            },
            (Operand::Path(..), Operand::Path(..)) => {
                return Err(self.error(
                    rhs_pos,
                    format!(
                        "expected a value after `{op_text}`: a variable compares with a constant, not with another variable"
                    ),
                ));
            }
            (Operand::Lit(_), Operand::Lit(_)) => {
                return Err(self.error(
                    first_pos,
                    "expected a variable: one side of a comparison must name a variable",
                ));
            }
        };
        Ok(Expr::Cmp(cmp))
    }

    fn operand(&mut self) -> Result<Operand, SyntaxError> {
        let t = self.next();
        match t.tok {
            Tok::Lit(l) => Ok(Operand::Lit(l)),
            Tok::Ident(first) => {
                let mut path = vec![first];
                while self.peek().tok == Tok::Dot {
                    self.next();
                    let f = self.next();
                    match f.tok {
                        Tok::Ident(name) => path.push(name),
                        // `true`, `false` and `null` are fine as field names after a dot.
                        Tok::Lit(Literal::Bool(_) | Literal::Null) => {
                            path.push(self.src[f.pos..f.end].to_string())
                        }
                        _ => {
                            return Err(self.error(
                                f.pos,
                                format!("expected a field name after `{}.`", path.join(".")),
                            ))
                        }
                    }
                }
                Ok(Operand::Path(path, t.pos))
            }
            _ => Err(self.error(t.pos, "expected a variable or a value")),
        }
    }
}

#[cfg(test)]
mod tests;
