//! A placeholder's path (`order.customer`, `req->user.id`, `items[0]`) resolved against a
//! hit's captured variables, to the value bound to the capture query.

use tracery_databases::Param;
use tracery_proto::v1::{self, value::Kind};

/// Most pointers and wrappers followed between two path segments: a bound on the walk,
/// since a value tree is finite but may be deep.
const MAX_STEPS: usize = 64;

/// Why a path has no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("`{path}`: no variable `{root}` was captured at this hit")]
    NoVariable { path: String, root: String },
    #[error("`{path}`: `{segment}` is not a field of {what}")]
    NoField {
        path: String,
        segment: String,
        what: String,
    },
    #[error("`{path}`: index {index} is past the {len} captured items")]
    NoIndex {
        path: String,
        index: usize,
        len: usize,
    },
    #[error("`{path}` is {what}, not a value a query can take")]
    NotScalar { path: String, what: String },
    #[error("`{path}` was not captured: {reason}")]
    Unavailable { path: String, reason: String },
    #[error("`{path}` was redacted on the node (rule `{rule}`), so its value is not here to bind; query by another variable, or drop the rule from [redaction] in tracery.toml")]
    Redacted { path: String, rule: String },
}

/// One step of a path.
#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Field(&'a str),
    Index(usize),
}

/// Splits `order.items[0]->id` into its root (`order`) and the steps after it. The
/// capture query's parser has already checked the syntax, so this only splits.
fn split(path: &str) -> (&str, Vec<Segment<'_>>) {
    let root_end = path.find(['.', '-', '[']).unwrap_or(path.len());
    let (root, mut rest) = path.split_at(root_end);
    let mut segments = Vec::new();
    while !rest.is_empty() {
        let (segment, after) = if let Some(r) = rest.strip_prefix("->").or(rest.strip_prefix('.')) {
            let end = r.find(['.', '-', '[']).unwrap_or(r.len());
            (Segment::Field(&r[..end]), &r[end..])
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            let index = r[..end].parse().unwrap_or(usize::MAX);
            (Segment::Index(index), r.get(end + 1..).unwrap_or(""))
        } else {
            break;
        };
        segments.push(segment);
        rest = after;
    }
    (root, segments)
}

/// The value of `path` among `variables` (the innermost frame's variable wins when an
/// inlined frame shadows a name, as in the snapshot's own order).
pub fn resolve(variables: &[v1::Variable], path: &str) -> Result<Param, ResolveError> {
    let (root, segments) = split(path);
    let var =
        variables
            .iter()
            .find(|v| v.name == root)
            .ok_or_else(|| ResolveError::NoVariable {
                path: path.into(),
                root: root.into(),
            })?;
    let mut value = var.value.as_ref();
    for segment in &segments {
        let current = through_wrappers(value, path)?;
        value = match (segment, current.and_then(|v| v.kind.as_ref())) {
            (Segment::Field(name), Some(Kind::Struct(s))) => field(&s.fields, name),
            (Segment::Field(name), Some(Kind::Enum(e))) => field(&e.fields, name),
            (Segment::Index(i), Some(Kind::Array(a))) => {
                Some(a.items.get(*i).ok_or(ResolveError::NoIndex {
                    path: path.into(),
                    index: *i,
                    len: a.items.len(),
                })?)
            }
            (segment, kind) => {
                return Err(ResolveError::NoField {
                    path: path.into(),
                    segment: match segment {
                        Segment::Field(f) => (*f).to_string(),
                        Segment::Index(i) => format!("[{i}]"),
                    },
                    what: describe(kind),
                })
            }
        }
        .ok_or_else(|| ResolveError::NoField {
            path: path.into(),
            segment: match segment {
                Segment::Field(f) => (*f).to_string(),
                Segment::Index(i) => format!("[{i}]"),
            },
            what: describe(current.and_then(|v| v.kind.as_ref())),
        })
        .map(Some)?;
    }
    scalar(through_wrappers(value, path)?, path)
}

fn field<'a>(fields: &'a [v1::Field], name: &str) -> Option<&'a v1::Value> {
    fields
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.value.as_ref())
}

/// Follows pointers, interfaces and one-field enum variants (`Some(x)`, `Box`) to the
/// value they hold, as a C `->`, a Go interface or a Rust `Option` reads in source.
fn through_wrappers<'a>(
    mut value: Option<&'a v1::Value>,
    path: &str,
) -> Result<Option<&'a v1::Value>, ResolveError> {
    for _ in 0..MAX_STEPS {
        value = match value.and_then(|v| v.kind.as_ref()) {
            Some(Kind::Pointer(p)) => p.target.as_deref(),
            Some(Kind::Interface(i)) => i.value.as_deref(),
            Some(Kind::Enum(e)) if e.fields.len() == 1 && e.fields[0].name == "0" => {
                e.fields[0].value.as_ref()
            }
            Some(Kind::Unavailable(u)) => {
                return Err(ResolveError::Unavailable {
                    path: path.into(),
                    reason: u.reason.clone(),
                })
            }
            Some(Kind::Redacted(r)) => {
                return Err(ResolveError::Redacted {
                    path: path.into(),
                    rule: r.rule.clone(),
                })
            }
            Some(Kind::OptimizedOut(_)) => {
                return Err(ResolveError::Unavailable {
                    path: path.into(),
                    reason: "optimized out".into(),
                })
            }
            _ => return Ok(value),
        };
    }
    Ok(value)
}

fn scalar(value: Option<&v1::Value>, path: &str) -> Result<Param, ResolveError> {
    let not_scalar = |what: &str| ResolveError::NotScalar {
        path: path.into(),
        what: what.into(),
    };
    Ok(match value.and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::Null(_)) | Some(Kind::Unit(_)) => Param::Null,
        Some(Kind::Int(i)) => Param::Int(*i),
        Some(Kind::Uint(u)) => i64::try_from(*u).map_or(Param::UInt(*u), Param::Int),
        Some(Kind::Int128(s)) | Some(Kind::Uint128(s)) => Param::Text(s.clone()),
        Some(Kind::Float(f)) => Param::Float(*f),
        Some(Kind::Bool(b)) => Param::Bool(*b),
        Some(Kind::Char(c)) => Param::Text(char::from_u32(*c).unwrap_or('\u{fffd}').to_string()),
        Some(Kind::Str(s)) if s.truncated => {
            return Err(ResolveError::Unavailable {
                path: path.into(),
                reason: "the string was cut by the capture's length cap; binding a prefix would read the wrong rows".into(),
            })
        }
        Some(Kind::Str(s)) => Param::Text(s.text.clone()),
        Some(Kind::Enum(e)) if e.fields.is_empty() => Param::Text(e.variant.clone()),
        kind => return Err(not_scalar(&describe(kind))),
    })
}

fn describe(kind: Option<&Kind>) -> String {
    match kind {
        None => "nothing".into(),
        Some(Kind::Struct(s)) => format!("a struct {}", s.name),
        Some(Kind::Enum(e)) => format!("an enum {}::{}", e.name, e.variant),
        Some(Kind::Array(_)) => "an array".into(),
        Some(Kind::Pointer(_)) => "a pointer".into(),
        Some(Kind::Interface(i)) => format!("an interface ({})", i.type_name),
        Some(Kind::Str(_)) => "a string".into(),
        Some(_) => "a scalar".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: Kind) -> v1::Value {
        v1::Value { kind: Some(kind) }
    }
    fn s(text: &str) -> v1::Value {
        v(Kind::Str(v1::value::Str {
            text: text.into(),
            truncated: false,
        }))
    }
    fn fields(fs: &[(&str, v1::Value)]) -> Vec<v1::Field> {
        fs.iter()
            .map(|(n, val)| v1::Field {
                name: (*n).into(),
                value: Some(val.clone()),
            })
            .collect()
    }
    fn var(name: &str, value: v1::Value) -> v1::Variable {
        v1::Variable {
            name: name.into(),
            value: Some(value),
            ..Default::default()
        }
    }

    fn order() -> Vec<v1::Variable> {
        let user = v(Kind::Struct(v1::value::Struct {
            name: "user".into(),
            fields: fields(&[("id", v(Kind::Int(7))), ("name", s("ana"))]),
        }));
        let req = v(Kind::Pointer(Box::new(v1::value::Pointer {
            address: 0x1000,
            target: Some(Box::new(v(Kind::Struct(v1::value::Struct {
                name: "request".into(),
                fields: fields(&[("user", user)]),
            })))),
        })));
        let items = v(Kind::Array(v1::value::Array {
            items: vec![v(Kind::Uint(3)), v(Kind::Uint(u64::MAX))],
            total: None,
        }));
        let coupon = v(Kind::Enum(v1::value::Enum {
            name: "Option<String>".into(),
            variant: "Some".into(),
            fields: fields(&[("0", s("TENOFF"))]),
        }));
        vec![
            var("req", req),
            var("items", items),
            var("qty", v(Kind::Int(3))),
            var("coupon", coupon),
            var("gone", v(Kind::OptimizedOut(v1::value::Empty {}))),
            var(
                "password",
                v(Kind::Redacted(v1::value::Redacted {
                    rule: "password".into(),
                })),
            ),
        ]
    }

    #[test]
    fn paths_resolve_through_pointers_fields_indexes_and_options() {
        let vars = order();
        assert_eq!(resolve(&vars, "qty"), Ok(Param::Int(3)));
        assert_eq!(resolve(&vars, "req->user.id"), Ok(Param::Int(7)));
        assert_eq!(
            resolve(&vars, "req.user.name"),
            Ok(Param::Text("ana".into()))
        );
        assert_eq!(resolve(&vars, "items[0]"), Ok(Param::Int(3)));
        assert_eq!(resolve(&vars, "items[1]"), Ok(Param::UInt(u64::MAX)));
        assert_eq!(resolve(&vars, "coupon"), Ok(Param::Text("TENOFF".into())));
    }

    #[test]
    fn unresolvable_paths_say_why() {
        let vars = order();
        assert!(matches!(
            resolve(&vars, "nope.x"),
            Err(ResolveError::NoVariable { .. })
        ));
        assert!(matches!(
            resolve(&vars, "req->user.age"),
            Err(ResolveError::NoField { .. })
        ));
        assert!(matches!(
            resolve(&vars, "items[5]"),
            Err(ResolveError::NoIndex {
                index: 5,
                len: 2,
                ..
            })
        ));
        assert!(matches!(
            resolve(&vars, "req->user"),
            Err(ResolveError::NotScalar { .. })
        ));
        assert!(matches!(
            resolve(&vars, "gone"),
            Err(ResolveError::Unavailable { .. })
        ));
        // A redacted value is never bound, not even as a placeholder's text.
        let e = resolve(&vars, "password").unwrap_err();
        assert!(matches!(e, ResolveError::Redacted { ref rule, .. } if rule == "password"));
        assert!(e.to_string().contains("redacted on the node"), "{e}");
    }
}
