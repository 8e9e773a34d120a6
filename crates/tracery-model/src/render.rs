//! Language-aware display of types and values, separate from the value tree.
//!
//! Each source language implements [`Language`]: how it names types built from parts
//! (`struct order *`, `&str`, `[]int`) and how it writes values (`{id = 42}`,
//! `Order { id: 42 }`, `main.Order{ID: 42}`). Layout (one line or an indented tree) is
//! shared and lives here.

mod c;
mod cpp;
mod go;
mod javascript;
mod python;
mod rust;

use crate::value::{Value, VarKind, Variable};

/// Width under which a value stays on one line.
const WIDTH: usize = 100;

/// The language of a compilation unit (`DW_AT_language`), which picks a [`Language`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceLanguage {
    /// C, and anything unknown.
    C,
    /// C++.
    Cpp,
    /// Rust.
    Rust,
    /// Go.
    Go,
    /// JavaScript (Node.js, through the inspector; no DWARF).
    JavaScript,
    /// Python (CPython, read from the interpreter's frames; no DWARF).
    Python,
}

impl SourceLanguage {
    /// Maps `DW_AT_language`; anything unknown is shown like C.
    #[cfg(feature = "dwarf")]
    pub fn from_dwarf(lang: Option<gimli::DwLang>) -> Self {
        match lang {
            Some(gimli::DW_LANG_Rust) => SourceLanguage::Rust,
            Some(gimli::DW_LANG_Go) => SourceLanguage::Go,
            Some(
                gimli::DW_LANG_C_plus_plus
                | gimli::DW_LANG_C_plus_plus_03
                | gimli::DW_LANG_C_plus_plus_11
                | gimli::DW_LANG_C_plus_plus_14,
            ) => SourceLanguage::Cpp,
            _ => SourceLanguage::C,
        }
    }

    /// The language's name in JSON output: `c`, `cpp`, `rust`, `go`, `javascript` or `python`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceLanguage::C => "c",
            SourceLanguage::Cpp => "cpp",
            SourceLanguage::Rust => "rust",
            SourceLanguage::Go => "go",
            SourceLanguage::JavaScript => "javascript",
            SourceLanguage::Python => "python",
        }
    }

    /// The renderer for this language.
    pub fn language(self) -> &'static dyn Language {
        match self {
            SourceLanguage::C => &c::C { cpp: false },
            SourceLanguage::Cpp => &c::C { cpp: true },
            SourceLanguage::Rust => &rust::Rust,
            SourceLanguage::Go => &go::Go,
            SourceLanguage::JavaScript => &javascript::JavaScript,
            SourceLanguage::Python => &python::Python,
        }
    }
}

/// A type to name from its parts, for types DWARF leaves unnamed.
#[derive(Clone, Copy, Debug)]
pub enum TypeForm<'a> {
    /// No type (`void`, `()`).
    Void,
    /// A struct, union, class or enum; `name` is `None` when anonymous.
    Tagged {
        keyword: &'static str,
        name: Option<&'a str>,
    },
    /// A pointer or reference to `target`.
    Pointer { target: &'a str, reference: bool },
    /// `const` or `volatile` `target`.
    Qualified {
        qualifier: &'static str,
        target: &'a str,
    },
    /// An array of `elem` with one count per dimension.
    Array {
        elem: &'a str,
        dims: &'a [Option<u64>],
    },
    /// A function type: return type (`None` for void) and parameter types.
    Function {
        ret: Option<&'a str>,
        params: &'a [String],
    },
}

/// A value laid out for people: leaves and bracketed groups that break into lines when long.
#[derive(Clone, Debug, PartialEq)]
pub enum Doc {
    /// Text that never breaks.
    Leaf(String),
    /// Parts written one after the other (`0x10 -> {..}`).
    Concat(Vec<Doc>),
    /// `open item, item close`; each item may carry a label (`id = `, `id: `).
    Group {
        open: String,
        items: Vec<(Option<String>, Doc)>,
        close: String,
        /// Spaces inside the brackets when on one line (`Order { id: 1 }`).
        padded: bool,
    },
}

/// How one source language names types and writes values.
pub trait Language: Send + Sync {
    /// The language's name.
    fn name(&self) -> &'static str;
    /// The name of a type DWARF describes by parts.
    fn type_name(&self, form: TypeForm<'_>) -> String;
    /// The value as this language writes it.
    fn render(&self, value: &Value) -> Doc;
    /// What a variable's `frame` is in this language, for the heading of its group.
    fn frame_label(&self) -> &'static str {
        "inlined"
    }
}

impl Doc {
    /// A leaf.
    pub fn leaf(s: impl Into<String>) -> Self {
        Doc::Leaf(s.into())
    }

    /// The one-line form.
    pub fn flat(&self) -> String {
        match self {
            Doc::Leaf(s) => s.clone(),
            Doc::Concat(parts) => parts.iter().map(Doc::flat).collect(),
            Doc::Group {
                open,
                items,
                close,
                padded,
            } => {
                if items.is_empty() {
                    return format!("{open}{close}");
                }
                let inner: Vec<String> = items
                    .iter()
                    .map(|(l, d)| format!("{}{}", l.as_deref().unwrap_or(""), d.flat()))
                    .collect();
                let pad = if *padded { " " } else { "" };
                format!("{open}{pad}{}{pad}{close}", inner.join(", "))
            }
        }
    }

    /// Lays the document out at `indent`, breaking groups that do not fit in [`WIDTH`].
    pub fn layout(&self, indent: usize, out: &mut String) {
        let flat = self.flat();
        if indent + flat.len() <= WIDTH || !flat.contains(['{', '[', '(']) {
            out.push_str(&flat);
            return;
        }
        match self {
            Doc::Leaf(s) => out.push_str(s),
            Doc::Concat(parts) => {
                for p in parts {
                    p.layout(indent, out);
                }
            }
            Doc::Group {
                open, items, close, ..
            } => {
                out.push_str(open);
                out.push('\n');
                for (label, d) in items {
                    out.push_str(&" ".repeat(indent + 2));
                    if let Some(l) = label {
                        out.push_str(l);
                    }
                    d.layout(indent + 2, out);
                    out.push_str(",\n");
                }
                out.push_str(&" ".repeat(indent));
                out.push_str(close);
            }
        }
    }
}

/// A readable tree of the variables of one hit: the probed function's variables first,
/// then each inlined frame's under its name.
pub fn render_text(vars: &[Variable], lang: &dyn Language) -> String {
    let mut out = String::new();
    let mut frames: Vec<Option<&str>> = Vec::new();
    for v in vars {
        if !frames.contains(&v.frame.as_deref()) {
            frames.push(v.frame.as_deref());
        }
    }
    for frame in frames {
        let indent = if let Some(f) = frame {
            out.push_str(&format!("{} {f}:\n", lang.frame_label()));
            2
        } else {
            0
        };
        for v in vars.iter().filter(|v| v.frame.as_deref() == frame) {
            let kind = match v.kind {
                VarKind::Arg => "arg",
                VarKind::Local => "local",
            };
            let head = format!(
                "{}{kind} {}: {} = ",
                " ".repeat(indent),
                v.name,
                v.type_name
            );
            out.push_str(&head);
            lang.render(&v.value).layout(indent, &mut out);
            out.push('\n');
        }
    }
    out
}

/// A string literal with Rust-style escapes, marked when truncated.
pub(crate) fn quote(text: &str, truncated: bool) -> String {
    let mut s = format!("{text:?}");
    if truncated {
        s.push_str("...");
    }
    s
}

/// A string in single quotes with `\\`, `'` and newlines escaped, as Python's `repr` and
/// Node's `util.inspect` write it; `...` after a cut one.
pub(crate) fn single_quoted(text: &str, truncated: bool) -> Doc {
    let mut s = format!(
        "'{}'",
        text.replace('\\', "\\\\")
            .replace('\'', "\\'")
            .replace('\n', "\\n")
    );
    if truncated {
        s.push_str("...");
    }
    Doc::leaf(s)
}

/// Values every language shows alike: scalars, strings, and values that are not there.
pub(crate) fn leaf(v: &Value) -> Option<Doc> {
    let text = match v {
        Value::Int(v) => v.to_string(),
        Value::UInt(v) => v.to_string(),
        Value::Float(f) => float(*f),
        Value::Bool(b) => b.to_string(),
        Value::Char(c) => format!("{c:?}"),
        Value::Str { text, truncated } => quote(text, *truncated),
        _ => return missing(v).map(Doc::Leaf),
    };
    Some(Doc::Leaf(text))
}

/// The text shown for values that are not there.
pub(crate) fn missing(v: &Value) -> Option<String> {
    match v {
        Value::OptimizedOut => Some("<optimized out>".into()),
        Value::Unavailable { reason } => Some(format!("<unavailable: {reason}>")),
        Value::Redacted { rule } => Some(format!("<redacted: {rule}>")),
        _ => None,
    }
}

/// Shortest exact decimal form of a float (`19.5`, `1e300`).
pub(crate) fn float(f: f64) -> String {
    if f.is_finite() && f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// An array's items, with `...` when only some were captured.
pub(crate) fn items(
    lang: &dyn Language,
    items: &[Value],
    total: Option<u64>,
) -> Vec<(Option<String>, Doc)> {
    let mut out: Vec<(Option<String>, Doc)> =
        items.iter().map(|v| (None, lang.render(v))).collect();
    if let Some(t) = total {
        if t > items.len() as u64 {
            out.push((None, Doc::leaf(format!("... ({t} total)"))));
        }
    }
    out
}

/// The entries of a map or set: `key{sep}value` items (keys flattened to one line), then
/// `... (N of M shown)` when a cap cut it.
pub(crate) fn collection_items(
    lang: &dyn Language,
    c: crate::value::Collection<'_>,
    sep: &str,
) -> Vec<(Option<String>, Doc)> {
    let mut out: Vec<(Option<String>, Doc)> = c
        .items
        .iter()
        .map(|e| match e {
            Value::Struct { fields, .. } if !c.set && fields.len() == 2 => (
                Some(format!("{}{sep}", lang.render(&fields[0].1).flat())),
                lang.render(&fields[1].1),
            ),
            other => (None, lang.render(other)),
        })
        .collect();
    if let Some(t) = c.total {
        if t > c.items.len() as u64 {
            out.push((
                None,
                Doc::leaf(format!("... ({} of {t} shown)", c.items.len())),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Value {
        Value::Struct {
            name: "struct order".into(),
            fields: vec![
                ("id".into(), Value::Int(42)),
                ("price".into(), Value::Float(19.5)),
                (
                    "ship".into(),
                    Value::Struct {
                        name: "struct address".into(),
                        fields: vec![
                            (
                                "city".into(),
                                Value::Str {
                                    text: "Lisbon".into(),
                                    truncated: false,
                                },
                            ),
                            ("zip".into(), Value::Int(1100)),
                        ],
                    },
                ),
                (
                    "items".into(),
                    Value::Array {
                        items: vec![Value::Int(1), Value::Int(2)],
                        total: None,
                    },
                ),
                ("note".into(), Value::OptimizedOut),
            ],
        }
    }

    #[test]
    fn c_values_read_like_gdb() {
        let c = SourceLanguage::C.language();
        assert_eq!(
            c.render(&order()).flat(),
            r#"{id = 42, price = 19.5, ship = {city = "Lisbon", zip = 1100}, items = {1, 2}, note = <optimized out>}"#
        );
        let p = Value::Pointer {
            address: 0x10,
            target: Some(Box::new(Value::Int(1))),
        };
        assert_eq!(c.render(&p).flat(), "0x10 -> 1");
        assert_eq!(c.render(&Value::Null).flat(), "NULL");
    }

    #[test]
    fn rust_and_go_values() {
        let r = SourceLanguage::Rust.language();
        let some = Value::Enum {
            name: "core::option::Option<u32>".into(),
            variant: "Some".into(),
            fields: vec![("__0".into(), Value::UInt(5))],
        };
        assert_eq!(r.render(&some).flat(), "Some(5)");
        let paid = Value::Enum {
            name: "orders::Status".into(),
            variant: "Paid".into(),
            fields: vec![("amount".into(), Value::UInt(1250))],
        };
        assert_eq!(r.render(&paid).flat(), "Status::Paid { amount: 1250 }");
        let tuple = Value::Struct {
            name: "(i32, bool)".into(),
            fields: vec![
                ("__0".into(), Value::Int(-7)),
                ("__1".into(), Value::Bool(true)),
            ],
        };
        assert_eq!(r.render(&tuple).flat(), "(-7, true)");
        let g = SourceLanguage::Go.language();
        let o = Value::Struct {
            name: "main.Order".into(),
            fields: vec![("ID".into(), Value::Int(42))],
        };
        assert_eq!(g.render(&o).flat(), "main.Order{ID: 42}");
        assert_eq!(g.render(&Value::Null).flat(), "nil");
    }

    #[test]
    fn long_values_break_into_an_indented_tree() {
        let vars = vec![Variable {
            name: "by_value".into(),
            kind: VarKind::Arg,
            type_name: "struct order".into(),
            value: Value::Struct {
                name: "struct order".into(),
                fields: (0..12)
                    .map(|i| (format!("field_{i}"), Value::Int(i)))
                    .collect(),
            },
            frame: None,
        }];
        let text = render_text(&vars, SourceLanguage::C.language());
        assert!(
            text.starts_with("arg by_value: struct order = {\n  field_0 = 0,\n"),
            "{text}"
        );
        assert!(text.ends_with("  field_11 = 11,\n}\n"), "{text}");
    }
}
