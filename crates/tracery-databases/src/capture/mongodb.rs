//! MongoDB capture queries: `coll.find(filter[, projection])` and `coll.aggregate([...])`,
//! written as (extended) JSON, with `{path}` placeholders standing for whole BSON values.

use mongodb::bson::{Bson, Document};

use super::{placeholder::placeholder_at, placeholder::PathTable, CaptureError};
use crate::param::Param;

/// Stands for placeholder `n` inside the parsed template; a NUL keeps it from ever
/// equalling a string a user wrote.
const SLOT_MARK: &str = "\u{0}tracery-slot:";

/// The operation of a MongoDB capture query.
#[derive(Debug, Clone, PartialEq)]
pub enum MongoOperation {
    /// `find(filter)` or `find(filter, projection)`.
    Find {
        /// The filter document.
        filter: Document,
        /// The projection document, if given.
        projection: Option<Document>,
    },
    /// `aggregate([stages])`.
    Aggregate {
        /// The pipeline stages.
        pipeline: Vec<Document>,
    },
}

/// A validated MongoDB query. Its documents hold slot marks until bound.
#[derive(Debug, Clone, PartialEq)]
pub struct MongoQuery {
    /// The collection read.
    pub collection: String,
    /// What is run on it.
    pub operation: MongoOperation,
    pub(crate) paths: PathTable,
}

impl MongoQuery {
    /// The operation with each placeholder replaced by its value (`values[slot]`).
    pub fn bind(&self, values: &[Bson]) -> MongoOperation {
        let bind_doc = |doc: &Document| match bind_value(Bson::Document(doc.clone()), values) {
            Bson::Document(doc) => doc,
            _ => Document::new(),
        };
        match &self.operation {
            MongoOperation::Find { filter, projection } => MongoOperation::Find {
                filter: bind_doc(filter),
                projection: projection.as_ref().map(bind_doc),
            },
            MongoOperation::Aggregate { pipeline } => MongoOperation::Aggregate {
                pipeline: pipeline.iter().map(bind_doc).collect(),
            },
        }
    }
}

/// The BSON value of a parameter. An unsigned value past `i64::MAX` becomes a double.
pub fn param_to_bson(param: &Param) -> Bson {
    match param {
        Param::Null => Bson::Null,
        Param::Bool(b) => Bson::Boolean(*b),
        Param::Int(i) => Bson::Int64(*i),
        Param::UInt(u) => i64::try_from(*u).map_or(Bson::Double(*u as f64), Bson::Int64),
        Param::Float(f) => Bson::Double(*f),
        Param::Text(s) => Bson::String(s.clone()),
        Param::Bytes(b) => Bson::Binary(mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic,
            bytes: b.clone(),
        }),
    }
}

fn bind_value(value: Bson, values: &[Bson]) -> Bson {
    match value {
        Bson::String(s) => match slot_of(&s) {
            Some(slot) => values.get(slot).cloned().unwrap_or(Bson::Null),
            None => Bson::String(s),
        },
        Bson::Document(doc) => Bson::Document(
            doc.into_iter()
                .map(|(k, v)| (k, bind_value(v, values)))
                .collect(),
        ),
        Bson::Array(items) => {
            Bson::Array(items.into_iter().map(|v| bind_value(v, values)).collect())
        }
        other => other,
    }
}

fn slot_of(text: &str) -> Option<usize> {
    text.strip_prefix(SLOT_MARK)?.parse().ok()
}

/// Parses `text` (without the `name:` prefix).
pub(crate) fn parse(text: &str) -> Result<MongoQuery, CaptureError> {
    let bad = |reason: &str| CaptureError::MongoSyntax {
        query: text.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = text.trim();
    let open = trimmed
        .find('(')
        .ok_or_else(|| bad("write collection.find({...}) or collection.aggregate([...])"))?;
    let args = trimmed[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| bad("the call must end with `)`"))?;
    let (collection, method) = trimmed[..open]
        .trim()
        .rsplit_once('.')
        .ok_or_else(|| bad("write collection.find({...}) or collection.aggregate([...])"))?;
    if collection.is_empty() {
        return Err(bad("the collection name is empty"));
    }
    let (json, paths) = substitute(args);
    let value: serde_json::Value = serde_json::from_str(&format!("[{json}]")).map_err(|e| {
        bad(&format!(
            "the arguments are not JSON ({e}); quote keys with \""
        ))
    })?;
    let args = match Bson::try_from(value) {
        Ok(Bson::Array(args)) => args,
        Ok(_) => return Err(bad("the arguments are not a list")),
        Err(e) => return Err(bad(&format!("the arguments are not extended JSON ({e})"))),
    };
    let operation = match (method, args.as_slice()) {
        ("find", [Bson::Document(filter)]) => MongoOperation::Find {
            filter: filter.clone(),
            projection: None,
        },
        ("find", [Bson::Document(filter), Bson::Document(projection)]) => MongoOperation::Find {
            filter: filter.clone(),
            projection: Some(projection.clone()),
        },
        ("find", _) => {
            return Err(bad(
                "find takes a filter document and an optional projection document",
            ))
        }
        ("aggregate", [Bson::Array(stages)]) => {
            let pipeline = stages
                .iter()
                .map(|stage| match stage {
                    Bson::Document(doc) => Ok(doc.clone()),
                    _ => Err(bad("each aggregate stage must be a document")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(stage) = writing_stage(&Bson::Array(stages.clone())) {
                return Err(CaptureError::Writes {
                    query: text.to_owned(),
                    reason: format!("its pipeline has a {stage} stage, which writes"),
                });
            }
            MongoOperation::Aggregate { pipeline }
        }
        ("aggregate", _) => return Err(bad("aggregate takes one list of stage documents")),
        (other, _) => {
            return Err(CaptureError::MongoMethodNotAllowed {
                method: other.to_owned(),
            })
        }
    };
    Ok(MongoQuery {
        collection: collection.to_owned(),
        operation,
        paths,
    })
}

/// `$out` or `$merge` anywhere in a pipeline (also inside `$facet` or `$lookup`).
fn writing_stage(value: &Bson) -> Option<&'static str> {
    match value {
        Bson::Document(doc) => doc.iter().find_map(|(key, v)| match key.as_str() {
            "$out" => Some("$out"),
            "$merge" => Some("$merge"),
            _ => writing_stage(v),
        }),
        Bson::Array(items) => items.iter().find_map(writing_stage),
        _ => None,
    }
}

/// Replaces each `{path}` outside JSON strings with a slot mark string.
fn substitute(json: &str) -> (String, PathTable) {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let mut paths = PathTable::default();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let mut end = i + 1;
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                let end = (end + 1).min(bytes.len());
                out.push_str(&json[i..end]);
                i = end;
            }
            b'{' => match placeholder_at(json, i) {
                Some((path, end)) => {
                    let slot = paths.slot(path);
                    out.push_str(&format!("\"\\u0000tracery-slot:{slot}\""));
                    i = end;
                }
                None => {
                    out.push('{');
                    i += 1;
                }
            },
            _ => {
                let c = json[i..].chars().next().unwrap_or_default();
                out.push(c);
                i += c.len_utf8().max(1);
            }
        }
    }
    (out, paths)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, oid::ObjectId};

    use super::*;

    #[test]
    fn find_with_placeholders_binds_bson_values() {
        let q = parse(
            r#"orders.find({"customer": {order.customer}, "total": {"$gt": {min}}, "note": "{x}"}, {"_id": 0})"#,
        )
        .unwrap();
        assert_eq!(q.collection, "orders");
        assert_eq!(q.paths.paths, ["order.customer", "min"]);
        let bound = q.bind(&[
            param_to_bson(&Param::Text("alice".into())),
            param_to_bson(&Param::Int(5)),
        ]);
        assert_eq!(
            bound,
            MongoOperation::Find {
                filter: doc! {"customer": "alice", "total": {"$gt": 5_i64}, "note": "{x}"},
                projection: Some(doc! {"_id": 0}),
            }
        );
    }

    #[test]
    fn aggregate_and_extended_json() {
        let q = parse(
            r#"shop.orders.aggregate([{"$match": {"_id": {"$oid": "64b7f0c2a1b2c3d4e5f60718"}, "n": {items[0]}}}, {"$limit": 5}])"#,
        )
        .unwrap();
        assert_eq!(q.collection, "shop.orders");
        let bound = q.bind(&[param_to_bson(&Param::UInt(u64::MAX))]);
        let oid = ObjectId::parse_str("64b7f0c2a1b2c3d4e5f60718").unwrap();
        assert_eq!(
            bound,
            MongoOperation::Aggregate {
                pipeline: vec![
                    doc! {"$match": {"_id": oid, "n": u64::MAX as f64}},
                    doc! {"$limit": 5},
                ]
            }
        );
    }

    #[test]
    fn bytes_and_null_bind_as_bson() {
        assert_eq!(param_to_bson(&Param::Null), Bson::Null);
        assert_eq!(param_to_bson(&Param::Bool(true)), Bson::Boolean(true));
        assert_eq!(param_to_bson(&Param::Float(1.5)), Bson::Double(1.5));
        match param_to_bson(&Param::Bytes(vec![1, 2])) {
            Bson::Binary(b) => assert_eq!(b.bytes, [1, 2]),
            other => panic!("{other:?}"),
        }
    }
}
