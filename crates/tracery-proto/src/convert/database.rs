//! `DatabaseRead` ↔ `tracery_model::DatabaseRead`: rows and values travel as JSON text.

use std::time::SystemTime;

use serde_json::Value as Json;
use tracery_model::DatabaseRead;

use super::ConvertError;
use crate::v1;

impl From<DatabaseRead> for v1::DatabaseRead {
    fn from(r: DatabaseRead) -> Self {
        v1::DatabaseRead {
            database: r.database,
            kind: r.kind,
            query: r.query,
            params: r
                .params
                .into_iter()
                .map(|(path, value)| v1::DatabaseParam {
                    path,
                    value_json: value.to_string(),
                })
                .collect(),
            rows_json: r.rows.iter().map(Json::to_string).collect(),
            truncated: r.truncated,
            read_at: Some(r.read_at.into()),
            consistency_json: r.consistency.to_string(),
            error: r.error,
        }
    }
}

impl TryFrom<v1::DatabaseRead> for DatabaseRead {
    type Error = ConvertError;

    fn try_from(r: v1::DatabaseRead) -> Result<Self, ConvertError> {
        let json = |field: &'static str, text: &str| {
            serde_json::from_str::<Json>(text)
                .map_err(|_| ConvertError::invalid(field, text, "not JSON text"))
        };
        let read_at = r
            .read_at
            .ok_or(ConvertError::missing("DatabaseRead.read_at"))?;
        let read_at = SystemTime::try_from(read_at).map_err(|e| {
            ConvertError::invalid("DatabaseRead.read_at", e, "not a representable time")
        })?;
        Ok(DatabaseRead {
            database: r.database,
            kind: r.kind,
            query: r.query,
            params: r
                .params
                .into_iter()
                .map(|p| Ok((p.path, json("DatabaseParam.value_json", &p.value_json)?)))
                .collect::<Result<_, ConvertError>>()?,
            rows: r
                .rows_json
                .iter()
                .map(|row| json("DatabaseRead.rows_json", row))
                .collect::<Result<_, _>>()?,
            truncated: r.truncated,
            read_at,
            consistency: if r.consistency_json.is_empty() {
                Json::Null
            } else {
                json("DatabaseRead.consistency_json", &r.consistency_json)?
            },
            error: r.error,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// Found by the fuzzer: a row holding an integer too large for `u64` is read as the
    /// nearest `f64`; without `float_roundtrip` writing that float and reading it back gave
    /// a different one, so every hop changed the row.
    #[test]
    fn a_row_survives_repeated_round_trips() {
        let proto = v1::DatabaseRead {
            rows_json: vec![
                "666666600000000000000000000000000000000184108962600008394753".to_string(),
                "[0.1, 1e300, -2.2250738585072014e-308, 123456789012345678901234567890]"
                    .to_string(),
            ],
            read_at: Some(prost_types::Timestamp::default()),
            ..Default::default()
        };
        let first = DatabaseRead::try_from(proto).unwrap();
        let again = DatabaseRead::try_from(v1::DatabaseRead::from(first.clone())).unwrap();
        assert_eq!(again, first);
        assert_eq!(again.read_at, UNIX_EPOCH + Duration::ZERO);
    }
}
