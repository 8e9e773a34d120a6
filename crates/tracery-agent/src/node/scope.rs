//! Which names are in scope at a line of a JavaScript source, read from its text.
//!
//! V8 shows a frame's scopes only to a paused debugger, and a capture must never pause, so
//! the agent reads the declarations around the line itself: parameters and locals of the
//! enclosing function, and the variables of the functions around it (closures). This is a
//! scanner, not a parser: it may list a name that is not in scope there, which costs
//! nothing, because the capture reads each name inside `try` and skips what V8 cannot
//! resolve. Module-level names are left out: they are the module's globals, not the
//! request's state.

/// How a name is bound where the breakpoint is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// A parameter of the enclosing function.
    Arg,
    /// A local of the enclosing function (or of a block inside it).
    Local,
    /// A variable of an outer function (a closure variable): that function's name.
    Closure(String),
}

/// A name to capture and how it is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeName {
    /// The identifier.
    pub name: String,
    /// Parameter, local or closure variable.
    pub binding: Binding,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
    /// `=>`.
    Arrow,
    /// A string, number, template or regex: never a name.
    Other,
}

/// A block `{ .. }` of the source, 1-based lines.
#[derive(Debug, Default)]
struct Block {
    open: u32,
    close: u32,
    /// `Some(name)` for a function body (`""` when anonymous).
    function: Option<String>,
    params: Vec<String>,
    /// Names declared directly in the block, with the line of the declaration; hoisted
    /// function declarations carry line 0.
    decls: Vec<(String, u32)>,
    parent: Option<usize>,
}

const KEYWORDS: &[&str] = &[
    "if",
    "for",
    "while",
    "switch",
    "catch",
    "with",
    "return",
    "typeof",
    "new",
    "delete",
    "void",
    "in",
    "of",
    "instanceof",
    "await",
    "yield",
    "else",
    "do",
    "try",
    "finally",
    "case",
    "default",
    "break",
    "continue",
    "throw",
    "this",
    "super",
    "null",
    "true",
    "false",
    "undefined",
    "function",
    "class",
    "var",
    "let",
    "const",
    "async",
    "import",
    "export",
    "static",
    "get",
    "set",
    "extends",
];

/// The names to capture at `line` (1-based) of `source`, innermost first: parameters and
/// locals declared up to the line, then the closure variables of each enclosing function.
pub fn names_at(source: &str, line: u32) -> Vec<ScopeName> {
    let toks = tokenize(source);
    let blocks = blocks(&toks);
    let Some(inner) = blocks
        .iter()
        .enumerate()
        .filter(|(_, b)| b.open <= line && line <= b.close)
        .max_by_key(|(_, b)| b.open)
        .map(|(i, _)| i)
    else {
        return Vec::new();
    };
    let mut out: Vec<ScopeName> = Vec::new();
    // False once the walk left the innermost function: names above are closure variables.
    let mut own_function = true;
    let mut cur = Some(inner);
    while let Some(i) = cur {
        if i == 0 {
            // The module's own names: its globals, not the request's state.
            break;
        }
        let b = &blocks[i];
        let binding = |local: Binding| {
            if own_function {
                return local;
            }
            let f = owner(&blocks, i);
            Binding::Closure(if f.is_empty() {
                "(anonymous)".into()
            } else {
                f
            })
        };
        for (name, at) in &b.decls {
            // The breakpoint runs before its line: a declaration there is not in effect yet.
            if *at < line {
                push(&mut out, name, binding(Binding::Local));
            }
        }
        for p in &b.params {
            push(&mut out, p, binding(Binding::Arg));
        }
        if b.function.is_some() {
            own_function = false;
        }
        cur = b.parent;
    }
    out
}

/// The name of the function whose body holds block `i`.
fn owner(blocks: &[Block], mut i: usize) -> String {
    loop {
        if let Some(f) = &blocks[i].function {
            return f.clone();
        }
        match blocks[i].parent {
            Some(p) => i = p,
            None => return String::new(),
        }
    }
}

fn push(out: &mut Vec<ScopeName>, name: &str, binding: Binding) {
    // The innermost declaration shadows the others.
    if !out.iter().any(|n| n.name == name) {
        out.push(ScopeName {
            name: name.to_owned(),
            binding,
        });
    }
}

/// Tokens with their 1-based lines; comments, strings, templates and regexes are skipped.
fn tokenize(src: &str) -> Vec<(Tok, u32)> {
    let b = src.as_bytes();
    let mut out: Vec<(Tok, u32)> = Vec::new();
    let (mut i, mut line) = (0usize, 1u32);
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    line += u32::from(b[i] == b'\n');
                    i += 1;
                }
                i += 2;
            }
            b'"' | b'\'' | b'`' => {
                let start = line;
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    line += u32::from(b.get(i) == Some(&b'\n'));
                    i += 1;
                }
                i += 1;
                out.push((Tok::Other, start));
            }
            b'/' if regex_allowed(out.last().map(|(t, _)| t)) => {
                i += 1;
                let mut class = false;
                while i < b.len() && b[i] != b'\n' && (class || b[i] != b'/') {
                    match b[i] {
                        b'\\' => i += 1,
                        b'[' => class = true,
                        b']' => class = false,
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
                out.push((Tok::Other, line));
            }
            b'=' if b.get(i + 1) == Some(&b'>') => {
                out.push((Tok::Arrow, line));
                i += 2;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                out.push((Tok::Ident(src[start..i].to_owned()), line));
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_')
                {
                    i += 1;
                }
                out.push((Tok::Other, line));
            }
            c if c.is_ascii_whitespace() => i += 1,
            c => {
                out.push((Tok::Punct(c as char), line));
                i += 1;
            }
        }
    }
    out
}

/// True when a `/` after `prev` starts a regex rather than a division.
fn regex_allowed(prev: Option<&Tok>) -> bool {
    match prev {
        None | Some(Tok::Arrow) => true,
        Some(Tok::Punct(c)) => !matches!(c, ')' | ']' | '}'),
        Some(Tok::Ident(w)) => KEYWORDS.contains(&w.as_str()) && w != "this",
        Some(Tok::Other) => false,
    }
}

fn ident(t: Option<&(Tok, u32)>) -> Option<&str> {
    match t {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

/// Every `{ .. }` block with its declarations.
fn blocks(toks: &[(Tok, u32)]) -> Vec<Block> {
    let mut blocks = vec![Block {
        open: 0,
        close: u32::MAX,
        ..Block::default()
    }];
    let mut stack = vec![0usize];
    // Parameters waiting for the function body that follows them.
    let mut pending: Option<(String, Vec<String>)> = None;
    let mut i = 0;
    while i < toks.len() {
        let (tok, line) = &toks[i];
        let top = *stack.last().expect("the top level never closes");
        match tok {
            Tok::Punct('{') => {
                let (function, params) = match pending.take() {
                    Some((f, p)) => (Some(f), p),
                    None => (None, Vec::new()),
                };
                blocks.push(Block {
                    open: *line,
                    close: u32::MAX,
                    function,
                    params,
                    decls: Vec::new(),
                    parent: Some(top),
                });
                stack.push(blocks.len() - 1);
            }
            Tok::Punct('}') if stack.len() > 1 => {
                blocks[top].close = *line;
                stack.pop();
            }
            Tok::Ident(w) if w == "var" || w == "let" || w == "const" => {
                i = declarators(toks, i + 1, |name, l| blocks[top].decls.push((name, l)));
                continue;
            }
            Tok::Ident(w) if w == "function" => {
                let mut j = i + 1;
                if matches!(toks.get(j), Some((Tok::Punct('*'), _))) {
                    j += 1;
                }
                let name = ident(toks.get(j)).map(str::to_owned);
                if let Some(n) = &name {
                    // A declaration (a statement of its own, not an expression): hoisted.
                    if is_statement_start(toks, i) {
                        blocks[top].decls.push((n.clone(), 0));
                    }
                    j += 1;
                }
                if matches!(toks.get(j), Some((Tok::Punct('('), _))) {
                    let (params, end) = params(toks, j);
                    pending = Some((name.unwrap_or_else(|| assigned_name(toks, i)), params));
                    i = end;
                    continue;
                }
            }
            Tok::Ident(w) if w == "class" => {
                if let Some(n) = ident(toks.get(i + 1)) {
                    if n != "extends" {
                        blocks[top].decls.push((n.to_owned(), *line));
                    }
                }
            }
            Tok::Ident(w) if w == "catch" => {
                if matches!(toks.get(i + 1), Some((Tok::Punct('('), _))) {
                    // A catch block is not a function: its parameter is a local.
                    let (params, end) = params(toks, i + 1);
                    pending_catch(&mut blocks, top, params, *line);
                    i = end;
                    continue;
                }
            }
            Tok::Punct('(') => {
                // `(a, b) => {` or a method `name(a) {`: parameters before a body.
                let (params, end) = params(toks, i);
                let before = ident(toks.get(i.wrapping_sub(1)));
                let arrow = matches!(toks.get(end), Some((Tok::Arrow, _)));
                let method = before
                    .is_some_and(|w| !KEYWORDS.contains(&w) || w == "get" || w == "set")
                    && matches!(toks.get(end), Some((Tok::Punct('{'), _)));
                if arrow && matches!(toks.get(end + 1), Some((Tok::Punct('{'), _))) {
                    pending = Some((assigned_name(toks, i), params));
                    i = end + 1;
                    continue;
                }
                if method {
                    pending = Some((before.unwrap_or_default().to_owned(), params));
                    i = end;
                    continue;
                }
            }
            Tok::Arrow => {
                // `x => {`: one bare parameter.
                if let (Some(p), Some((Tok::Punct('{'), _))) =
                    (ident(toks.get(i.wrapping_sub(1))), toks.get(i + 1))
                {
                    pending = Some((assigned_name(toks, i - 1), vec![p.to_owned()]));
                }
            }
            _ => {}
        }
        i += 1;
    }
    blocks
}

/// True when `toks[at]` starts a statement (`function f` there declares `f`).
fn is_statement_start(toks: &[(Tok, u32)], at: usize) -> bool {
    match at.checked_sub(1).map(|j| (&toks[j].0, j)) {
        None => true,
        Some((Tok::Punct(';' | '{' | '}'), _)) => true,
        Some((Tok::Ident(w), j)) if w == "async" || w == "default" || w == "export" => {
            is_statement_start(toks, j)
        }
        _ => false,
    }
}

/// A catch parameter is declared in the catch block, which opens next.
fn pending_catch(blocks: &mut [Block], top: usize, params: Vec<String>, line: u32) {
    // Recorded on the enclosing block with the catch's line: visible from there on, which
    // over-approximates (the capture skips what is not in scope).
    blocks[top]
        .decls
        .extend(params.into_iter().map(|p| (p, line)));
}

/// The name a function expression gets from `const name = function` / `name = (..) =>`.
fn assigned_name(toks: &[(Tok, u32)], at: usize) -> String {
    let mut j = at;
    while j > 0 {
        j -= 1;
        match &toks[j].0 {
            Tok::Ident(w) if w == "async" => continue,
            Tok::Punct('=' | ':') => {
                return ident(toks.get(j.wrapping_sub(1)))
                    .unwrap_or_default()
                    .to_owned()
            }
            _ => break,
        }
    }
    String::new()
}

/// Identifiers bound by the parameter list opening at `toks[open]` (`(`), and the index
/// after its `)`.
fn params(toks: &[(Tok, u32)], open: usize) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut depth = 0i32;
    let mut skipping_default = false;
    let mut i = open;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return (names, i + 1);
                }
            }
            Tok::Punct(',') if depth >= 1 => skipping_default = false,
            Tok::Punct('=') => skipping_default = true,
            // `{ key: name }` binds `name`, not `key`.
            Tok::Ident(w)
                if !skipping_default
                    && !KEYWORDS.contains(&w.as_str())
                    && !matches!(toks.get(i + 1), Some((Tok::Punct(':'), _))) =>
            {
                names.push(w.clone());
            }
            _ => {}
        }
        i += 1;
    }
    (names, i)
}

/// Reads `a = 1, { b, c } = o, d` after `let`, calling `bind` for each name; returns the
/// index of the first token after the declaration.
fn declarators(toks: &[(Tok, u32)], mut i: usize, mut bind: impl FnMut(String, u32)) -> usize {
    loop {
        match toks.get(i) {
            Some((Tok::Ident(name), line)) if !KEYWORDS.contains(&name.as_str()) => {
                bind(name.clone(), *line);
                i += 1;
            }
            Some((Tok::Punct('{' | '['), line)) => {
                let line = *line;
                let (names, end) = params(toks, i);
                for n in names {
                    bind(n, line);
                }
                i = end;
            }
            _ => return i,
        }
        // An initializer runs to the next `,` at this depth, or to the statement's end.
        if !matches!(toks.get(i), Some((Tok::Punct('='), _))) {
            if matches!(toks.get(i), Some((Tok::Punct(','), _))) {
                i += 1;
                continue;
            }
            return i;
        }
        let start_line = toks[i].1;
        let mut depth = 0i32;
        i += 1;
        loop {
            match toks.get(i) {
                None => return i,
                // A function in the initializer: the main scan reads its parameters and body.
                Some((Tok::Ident(w), _)) if depth == 0 && (w == "function" || w == "class") => {
                    return i
                }
                Some((Tok::Ident(_), _))
                    if depth == 0 && matches!(toks.get(i + 1), Some((Tok::Arrow, _))) =>
                {
                    return i
                }
                Some((Tok::Punct('('), _))
                    if depth == 0
                        && matches!(toks.get(params(toks, i).1), Some((Tok::Arrow, _))) =>
                {
                    return i
                }
                Some((Tok::Punct('(' | '[' | '{'), _)) => depth += 1,
                Some((Tok::Punct(')' | ']' | '}'), _)) => {
                    if depth == 0 {
                        return i;
                    }
                    depth -= 1;
                }
                Some((Tok::Punct(';'), _)) if depth == 0 => return i,
                Some((Tok::Punct(','), _)) if depth == 0 => {
                    i += 1;
                    break;
                }
                Some((Tok::Ident(w), l))
                    if depth == 0
                        && *l > start_line
                        && matches!(
                            w.as_str(),
                            "let"
                                | "const"
                                | "var"
                                | "return"
                                | "if"
                                | "for"
                                | "while"
                                | "function"
                                | "class"
                                | "throw"
                                | "try"
                        ) =>
                {
                    return i;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: &str, line: u32) -> Vec<(String, Binding)> {
        names_at(src, line)
            .into_iter()
            .map(|n| (n.name, n.binding))
            .collect()
    }

    #[test]
    fn locals_params_and_closures_of_the_fixture_handler() {
        let src = include_str!("../../../../tests/fixtures/node/server.js");
        let line = src
            .lines()
            .position(|l| l.contains("@probe:node_discount"))
            .expect("marker") as u32
            + 1;
        let got = names(src, line);
        let expect = [
            ("customer", Binding::Local),
            ("total", Binding::Local),
            ("order", Binding::Arg),
            ("items", Binding::Arg),
            ("stock", Binding::Closure("makePricer".into())),
            ("discountRate", Binding::Closure("makePricer".into())),
        ];
        assert_eq!(
            got,
            expect
                .iter()
                .map(|(n, b)| (n.to_string(), b.clone()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn later_declarations_destructuring_and_arrows() {
        let src = "const top = 1;\n\
                   const handler = async ({ id, user: who }, [a, b] = []) => {\n\
                   \x20 let x = f(1, 2), { y } = o;\n\
                   \x20 const s = \"{ not a block\"; // }\n\
                   \x20 use(x);\n\
                   \x20 const later = 2;\n\
                   };\n";
        assert_eq!(
            names(src, 5),
            vec![
                ("x".into(), Binding::Local),
                ("y".into(), Binding::Local),
                ("s".into(), Binding::Local),
                ("id".into(), Binding::Arg),
                ("who".into(), Binding::Arg),
                ("a".into(), Binding::Arg),
                ("b".into(), Binding::Arg),
            ]
        );
    }
}
