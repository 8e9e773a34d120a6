//! Span and log attributes of snapshots and database reads: the code location, ids, the
//! captured variables flattened to scalar leaves, and the database semantic conventions.

use opentelemetry::{KeyValue, Value};
use tracery_proto::v1::{self, value::Kind};

/// Variables flattened into attributes of one snapshot at most; the rest is counted in
/// `tracery.var.truncated`. Collectors and UIs cap attributes too (Jaeger shows them all,
/// and a 10 000-element array would drown the span).
pub const MAX_VARIABLE_ATTRIBUTES: usize = 64;
/// How deep nested structs are followed when flattening.
const MAX_VARIABLE_DEPTH: usize = 8;

/// The code location, ids and flattened variables of a snapshot.
pub(super) fn snapshot_attributes(s: &v1::Snapshot) -> Vec<KeyValue> {
    let loc = s.location.clone().unwrap_or_default();
    let mut attrs = vec![
        KeyValue::new("code.function.name", loc.function),
        KeyValue::new("code.file.path", loc.file),
        KeyValue::new("code.line.number", i64::from(loc.line)),
        KeyValue::new("tracery.breakpoint.id", s.breakpoint_id as i64),
        KeyValue::new("tracery.snapshot.id", s.id as i64),
        KeyValue::new("thread.id", i64::from(s.tid)),
    ];
    let mut flat = Flattened::default();
    for var in &s.variables {
        let name = match &var.frame {
            Some(frame) => format!("{frame}.{}", var.name),
            None => var.name.clone(),
        };
        flat.value(&name, var.value.as_ref(), 0);
    }
    attrs.extend(flat.attrs);
    if flat.truncated > 0 {
        attrs.push(KeyValue::new(
            "tracery.var.truncated",
            flat.truncated as i64,
        ));
    }
    attrs
}

/// Scalar leaves of variables as `tracery.var.PATH` attributes, up to the cap.
#[derive(Default)]
struct Flattened {
    attrs: Vec<KeyValue>,
    /// Leaves left out by the cap or the depth limit.
    truncated: usize,
}

impl Flattened {
    fn leaf(&mut self, path: &str, value: impl Into<Value>) {
        if self.attrs.len() >= MAX_VARIABLE_ATTRIBUTES {
            self.truncated += 1;
        } else {
            self.attrs
                .push(KeyValue::new(format!("tracery.var.{path}"), value.into()));
        }
    }

    fn value(&mut self, path: &str, value: Option<&v1::Value>, depth: usize) {
        if depth > MAX_VARIABLE_DEPTH {
            self.truncated += 1;
            return;
        }
        let Some(kind) = value.and_then(|v| v.kind.as_ref()) else {
            return;
        };
        match kind {
            Kind::Int(i) => self.leaf(path, *i),
            Kind::Uint(u) => match i64::try_from(*u) {
                Ok(i) => self.leaf(path, i),
                // OTLP integers are signed 64-bit: larger values go as text.
                Err(_) => self.leaf(path, u.to_string()),
            },
            Kind::Int128(t) | Kind::Uint128(t) => self.leaf(path, t.clone()),
            Kind::Float(f) => self.leaf(path, *f),
            Kind::Bool(b) => self.leaf(path, *b),
            Kind::Char(c) => self.leaf(
                path,
                char::from_u32(*c).map_or_else(|| format!("U+{c:04X}"), String::from),
            ),
            Kind::Str(s) => self.leaf(path, s.text.clone()),
            Kind::Null(_) => self.leaf(path, "null"),
            Kind::Unit(_) => self.leaf(path, "()"),
            Kind::OptimizedOut(_) => self.leaf(path, "<optimized out>"),
            Kind::Unavailable(u) => self.leaf(path, format!("<unavailable: {}>", u.reason)),
            // Redacted on the node; it stays a placeholder here too.
            Kind::Redacted(r) => self.leaf(path, format!("<redacted: {}>", r.rule)),
            Kind::Struct(s) => {
                for f in &s.fields {
                    self.value(&format!("{path}.{}", f.name), f.value.as_ref(), depth + 1);
                }
            }
            Kind::Array(a) => {
                for (i, item) in a.items.iter().enumerate() {
                    self.value(&format!("{path}.{i}"), Some(item), depth + 1);
                }
            }
            Kind::Pointer(p) => match &p.target {
                Some(target) => self.value(path, Some(target), depth + 1),
                None => self.leaf(path, format!("{:#x}", p.address)),
            },
            Kind::Enum(e) => {
                if e.fields.is_empty() {
                    self.leaf(path, e.variant.clone());
                } else {
                    for f in &e.fields {
                        let p = format!("{path}.{}.{}", e.variant, f.name);
                        self.value(&p, f.value.as_ref(), depth + 1);
                    }
                }
            }
            Kind::Interface(i) => self.value(path, i.value.as_deref(), depth + 1),
        }
    }
}

/// `db.system.name` of a configured database kind.
fn db_system(kind: &str) -> &str {
    match kind {
        "postgres" => "postgresql",
        other => other,
    }
}

pub(super) fn database_attributes(read: &v1::DatabaseRead) -> Vec<KeyValue> {
    let system = db_system(&read.kind).to_owned();
    let mut attrs = vec![
        KeyValue::new("db.system", system.clone()),
        KeyValue::new("db.system.name", system),
        KeyValue::new("db.namespace", read.database.clone()),
        KeyValue::new("db.query.text", read.query.clone()),
        KeyValue::new("db.response.returned_rows", read.rows_json.len() as i64),
    ];
    if read.truncated {
        attrs.push(KeyValue::new("tracery.db.truncated", true));
    }
    for p in &read.params {
        attrs.push(KeyValue::new(
            format!("db.query.parameter.{}", p.path),
            p.value_json.clone(),
        ));
    }
    if let Some(e) = &read.error {
        attrs.push(KeyValue::new("error.type", "tracery.db.read_failed"));
        attrs.push(KeyValue::new("tracery.db.error", e.clone()));
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> v1::Value {
        v1::Value {
            kind: Some(Kind::Int(i)),
        }
    }

    fn field(name: &str, value: v1::Value) -> v1::Field {
        v1::Field {
            name: name.into(),
            value: Some(value),
        }
    }

    fn snapshot(variables: Vec<v1::Variable>) -> v1::Snapshot {
        v1::Snapshot {
            id: 12,
            breakpoint_id: 3,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            variables,
            ..Default::default()
        }
    }

    fn var(name: &str, value: v1::Value) -> v1::Variable {
        v1::Variable {
            name: name.into(),
            value: Some(value),
            ..Default::default()
        }
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn variables_flatten_to_scalar_leaves_and_redacted_values_stay_redacted() {
        let order = v1::Value {
            kind: Some(Kind::Struct(v1::value::Struct {
                name: "order".into(),
                fields: vec![
                    field("qty", int(3)),
                    field(
                        "card",
                        v1::Value {
                            kind: Some(Kind::Redacted(v1::value::Redacted {
                                rule: "card".into(),
                            })),
                        },
                    ),
                ],
            })),
        };
        let attrs = snapshot_attributes(&snapshot(vec![var("order", order)]));
        assert_eq!(attr(&attrs, "tracery.var.order.qty"), Some(&Value::I64(3)));
        assert_eq!(
            attr(&attrs, "tracery.var.order.card"),
            Some(&Value::from("<redacted: card>"))
        );
        assert_eq!(attr(&attrs, "tracery.snapshot.id"), Some(&Value::I64(12)));
        assert!(attr(&attrs, "tracery.var.truncated").is_none());
    }

    #[test]
    fn variables_beyond_the_cap_are_counted() {
        let items = (0..100).map(int).collect();
        let array = v1::Value {
            kind: Some(Kind::Array(v1::value::Array { items, total: None })),
        };
        let attrs = snapshot_attributes(&snapshot(vec![var("xs", array)]));
        let vars = attrs
            .iter()
            .filter(|kv| kv.key.as_str().starts_with("tracery.var.xs."))
            .count();
        assert_eq!(vars, MAX_VARIABLE_ATTRIBUTES);
        assert_eq!(
            attr(&attrs, "tracery.var.truncated"),
            Some(&Value::I64(100 - MAX_VARIABLE_ATTRIBUTES as i64))
        );
    }
}
