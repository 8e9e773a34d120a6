//! HTTP/1.x requests and responses: the start line, the headers and the body's start.

use tracery_model::wire::HttpMessage;

/// Most headers read from one message.
const MAX_HEADERS: usize = 64;
/// Longest body start shown.
const BODY_MAX: usize = 512;

/// The message's head and body start, and whether the head was cut; `None` if the bytes
/// are not HTTP/1.x.
pub fn decode(bytes: &[u8]) -> Option<(HttpMessage, bool)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    if bytes.starts_with(b"HTTP/") {
        let mut res = httparse::Response::new(&mut headers);
        let status = res.parse(bytes).ok()?;
        let msg = HttpMessage {
            status: res.code?,
            headers: pairs(res.headers),
            ..HttpMessage::default()
        };
        return Some(with_body(msg, bytes, status));
    }
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(bytes).ok()?;
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return None;
    };
    let msg = HttpMessage {
        method: method.into(),
        path: path.into(),
        headers: pairs(req.headers),
        ..HttpMessage::default()
    };
    Some(with_body(msg, bytes, status))
}

fn pairs(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|h| !h.name.is_empty())
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

fn with_body(
    mut msg: HttpMessage,
    bytes: &[u8],
    status: httparse::Status<usize>,
) -> (HttpMessage, bool) {
    match status {
        httparse::Status::Complete(head) => {
            let body = &bytes[head..];
            msg.body = String::from_utf8_lossy(&body[..body.len().min(BODY_MAX)]).into_owned();
            (msg, false)
        }
        // The preview ends in the head: headers past it are not known.
        httparse::Status::Partial => (msg, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_shows_method_path_headers_and_body() {
        let b = b"POST /pay HTTP/1.1\r\nHost: payments\r\ntraceparent: 00-ab-cd-01\r\n\r\n{\"order_id\":7}";
        let (h, cut) = decode(b).unwrap();
        assert!(!cut);
        assert_eq!((h.method.as_str(), h.path.as_str()), ("POST", "/pay"));
        assert_eq!(h.headers[1], ("traceparent".into(), "00-ab-cd-01".into()));
        assert_eq!(h.body, "{\"order_id\":7}");
    }

    #[test]
    fn a_response_and_a_cut_head() {
        let (h, _) = decode(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!(h.status, 201);
        assert_eq!(h.body, "{}");
        let (h, cut) = decode(b"GET /orders/7 HTTP/1.1\r\nHost: ord").unwrap();
        assert!(cut);
        assert_eq!(h.path, "/orders/7");
    }

    #[test]
    fn other_bytes_are_not_taken_for_http() {
        assert_eq!(decode(b"\x00\x01binary"), None);
    }
}
