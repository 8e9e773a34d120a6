//! Decoded held messages (`tracery_model::wire`) to and from `tracery.v1.DecodedMessage`.

use tracery_model::wire::{DecodedMessage, HttpMessage, PgMessage, WireContent};

use super::ConvertError;
use crate::v1;

impl From<DecodedMessage> for v1::DecodedMessage {
    fn from(d: DecodedMessage) -> Self {
        use v1::decoded_message::Content;
        let content = match d.content {
            WireContent::Postgres(ms) => Content::Postgres(v1::PostgresMessages {
                messages: ms.into_iter().map(Into::into).collect(),
            }),
            WireContent::Redis(cmds) => Content::Redis(v1::RedisCommands {
                commands: cmds
                    .into_iter()
                    .map(|args| v1::RedisCommand { args })
                    .collect(),
            }),
            WireContent::Http(h) => Content::Http(v1::HttpMessage {
                method: h.method,
                path: h.path,
                status: u32::from(h.status),
                headers: h
                    .headers
                    .into_iter()
                    .map(|(name, value)| v1::HttpHeader { name, value })
                    .collect(),
                body: h.body,
            }),
            WireContent::Raw { hex, text } => Content::Raw(v1::RawPreview { hex, text }),
        };
        v1::DecodedMessage {
            content: Some(content),
            truncated: d.truncated,
        }
    }
}

impl From<PgMessage> for v1::PostgresMessage {
    fn from(m: PgMessage) -> Self {
        v1::PostgresMessage {
            kind: m.kind,
            statement: m.statement,
            sql: m.sql,
            params: m
                .params
                .into_iter()
                .map(|p| v1::BoundParam {
                    null: p.is_none(),
                    value: p.unwrap_or_default(),
                })
                .collect(),
        }
    }
}

impl TryFrom<v1::DecodedMessage> for DecodedMessage {
    type Error = ConvertError;

    fn try_from(d: v1::DecodedMessage) -> Result<Self, ConvertError> {
        use v1::decoded_message::Content;
        let content = match d.content.ok_or(ConvertError::Missing {
            field: "DecodedMessage.content",
        })? {
            Content::Postgres(p) => WireContent::Postgres(
                p.messages
                    .into_iter()
                    .map(|m| PgMessage {
                        kind: m.kind,
                        statement: m.statement,
                        sql: m.sql,
                        params: m
                            .params
                            .into_iter()
                            .map(|p| (!p.null).then_some(p.value))
                            .collect(),
                    })
                    .collect(),
            ),
            Content::Redis(r) => {
                WireContent::Redis(r.commands.into_iter().map(|c| c.args).collect())
            }
            Content::Http(h) => WireContent::Http(HttpMessage {
                method: h.method,
                path: h.path,
                status: u16::try_from(h.status).map_err(|_| ConvertError::Invalid {
                    field: "HttpMessage.status",
                    value: h.status.to_string(),
                    reason: "an HTTP status is below 1000",
                })?,
                headers: h.headers.into_iter().map(|h| (h.name, h.value)).collect(),
                body: h.body,
            }),
            Content::Raw(r) => WireContent::Raw {
                hex: r.hex,
                text: r.text,
            },
        };
        Ok(DecodedMessage {
            content,
            truncated: d.truncated,
        })
    }
}
