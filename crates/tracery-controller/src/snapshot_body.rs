//! The stored form of a snapshot: the agent's `tracery.v1.Snapshot` protobuf, base64 in a
//! small JSON object (the store's body column is JSON).
//!
//! Protobuf rather than a JSON rendering because it round-trips exactly: NaN and infinite
//! floats, 128-bit integers, optional fields and unknown future fields all come back as the
//! agent sent them, and the controller needs no copy of the agent's JSON format (it must
//! not depend on the agent crate). Renderers (the CLI) turn the message into JSON.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use prost::Message;
use serde_json::{json, Value as Json};
use tracery_proto::v1;

/// `encoding` of bodies written by this version.
const ENCODING: &str = "tracery.v1.Snapshot+protobuf+base64";

/// Why a stored body does not decode.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("stored snapshot body is not {ENCODING:?}")]
    Encoding,
    #[error("stored snapshot body is not valid base64")]
    Base64(#[source] base64::DecodeError),
    #[error("stored snapshot body is not a tracery.v1.Snapshot")]
    Protobuf(#[source] prost::DecodeError),
}

/// The body to store for `snapshot` (its `id` is not stored: the store assigns it).
pub(crate) fn encode(snapshot: &v1::Snapshot) -> Json {
    let mut snapshot = snapshot.clone();
    snapshot.id = 0;
    json!({ "encoding": ENCODING, "data": STANDARD.encode(snapshot.encode_to_vec()) })
}

/// The snapshot a body holds, exactly as the agent sent it.
pub(crate) fn decode(body: &Json) -> Result<v1::Snapshot, BodyError> {
    if body.get("encoding").and_then(Json::as_str) != Some(ENCODING) {
        return Err(BodyError::Encoding);
    }
    let data = body
        .get("data")
        .and_then(Json::as_str)
        .ok_or(BodyError::Encoding)?;
    let bytes = STANDARD.decode(data).map_err(BodyError::Base64)?;
    v1::Snapshot::decode(bytes.as_slice()).map_err(BodyError::Protobuf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_float_round_trips_bit_for_bit() {
        let snapshot = v1::Snapshot {
            breakpoint_id: 3,
            variables: vec![v1::Variable {
                name: "ratio".into(),
                kind: v1::VarKind::Local.into(),
                type_name: "double".into(),
                value: Some(v1::Value {
                    kind: Some(v1::value::Kind::Float(f64::NAN)),
                }),
                frame: None,
            }],
            ..Default::default()
        };
        let back = decode(&encode(&snapshot)).unwrap();
        assert_eq!(back.encode_to_vec(), snapshot.encode_to_vec());
    }

    #[test]
    fn a_foreign_body_is_refused() {
        assert!(matches!(decode(&json!({"x": 1})), Err(BodyError::Encoding)));
    }
}
