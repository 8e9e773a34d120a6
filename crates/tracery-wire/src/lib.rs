//! Decodes the start of a held message by the protocol it speaks, so `trace view` can show
//! what a frozen request was about to send: the SQL and bound parameters of a PostgreSQL
//! query, a Redis command, an HTTP request or response.
//!
//! The agent sees only the first bytes of each held message (the kernel copies a bounded
//! preview), so every decoder accepts a cut message: it decodes the whole messages it
//! has, and the text of a cut SQL statement, and says the rest is missing.

mod http;
mod postgres;
mod redis;

use tracery_model::wire::{DecodedMessage, WireContent};

/// Bytes shown by the hex and text preview of a message of no known protocol.
pub const RAW_PREVIEW: usize = 32;

/// Decodes `bytes`, the first bytes of a message of `total_len` bytes; `None` when there
/// are no bytes.
pub fn decode(bytes: &[u8], total_len: u64) -> Option<DecodedMessage> {
    if bytes.is_empty() {
        return None;
    }
    let cut = (bytes.len() as u64) < total_len;
    let (content, partial) = postgres::decode(bytes)
        .map(|(m, p)| (WireContent::Postgres(m), p))
        .or_else(|| redis::decode(bytes).map(|(c, p)| (WireContent::Redis(c), p)))
        .or_else(|| http::decode(bytes).map(|(h, p)| (WireContent::Http(h), p)))
        .unwrap_or_else(|| (raw(bytes), false));
    Some(DecodedMessage {
        content,
        truncated: cut || partial,
    })
}

fn raw(bytes: &[u8]) -> WireContent {
    let head = &bytes[..bytes.len().min(RAW_PREVIEW)];
    WireContent::Raw {
        hex: head.iter().map(|b| format!("{b:02x}")).collect(),
        text: printable(head),
    }
}

/// Bytes as text with control bytes shown as dots.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            0x20..=0x7e => *b as char,
            _ => '.',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_of_no_known_protocol_get_a_hex_and_text_preview() {
        let d = decode(b"\x16\x03\x01\x02\x00hello", 100).unwrap();
        assert_eq!(
            d.content,
            WireContent::Raw {
                hex: "160301020068656c6c6f".into(),
                text: ".....hello".into()
            }
        );
        assert!(d.truncated);
        assert_eq!(decode(b"", 0), None);
    }
}
