//! The held-message decoders (PostgreSQL frontend, Redis RESP, HTTP/1.x): any bytes decode
//! to something, and a longer prefix of the same message never makes the decoder panic.

/// One input: the first bytes of a held message. The total length is the input's own, or
/// twice it (a cut preview), by the last byte's low bit.
pub fn run(data: &[u8]) {
    let total = if data.last().is_some_and(|b| b & 1 == 1) {
        2 * data.len() as u64
    } else {
        data.len() as u64
    };
    let decoded = tracery_wire::decode(data, total);
    assert_eq!(decoded.is_none(), data.is_empty());
    if let Some(m) = &decoded {
        if total > data.len() as u64 {
            assert!(m.truncated, "a cut preview is not marked truncated");
        }
        // What the agent sends on: the proto conversion must take it.
        let _ = tracery_proto::v1::DecodedMessage::from(m.clone());
    }
    // Every shorter preview of the same message, as a smaller kernel copy would give.
    for cut in [1, data.len() / 2, data.len().saturating_sub(1)] {
        if cut < data.len() {
            let _ = tracery_wire::decode(&data[..cut], data.len() as u64);
        }
    }
}
