//! A raw HTTP/1.1 client for the trace-header tests. It sends a request in pieces the test
//! chooses, with pauses between them, so a header or a body reaches the server split across
//! TCP segments and read syscalls.

use std::{
    io::{Read, Write},
    net::TcpStream,
    thread,
    time::Duration,
};

/// How long a response may take; a probe stopped at a breakpoint does not stop the server.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(20);

/// One HTTP/1.1 request, written out by [`Request::to_bytes`].
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// A request with a `Host` header and nothing else.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_string(),
            path: path.to_string(),
            headers: vec![("Host".into(), "tracery-test".into())],
            body: Vec::new(),
        }
    }

    /// Adds a header, exactly as spelled (names are not normalized).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body; [`Request::to_bytes`] adds its `Content-Length`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The bytes on the wire: request line, headers in order, `Content-Length` last when
    /// there is a body, blank line, body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// The offset of the first `needle` in `bytes`. Panics if there is none.
pub fn offset_of(bytes: &[u8], needle: &str) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap_or_else(|| {
            panic!(
                "{needle:?} is not in the request {:?}",
                String::from_utf8_lossy(bytes)
            )
        })
}

/// `bytes` cut at each offset in `cuts` (ascending, within `bytes`).
pub fn split_at<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts {
        assert!(
            start <= cut && cut <= bytes.len(),
            "cuts {cuts:?} must ascend within {} bytes",
            bytes.len()
        );
        pieces.push(&bytes[start..cut]);
        start = cut;
    }
    pieces.push(&bytes[start..]);
    pieces
}

/// A response: status code, headers and body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One client connection with `TCP_NODELAY`: every `send` leaves as its own segment.
pub struct Connection {
    stream: TcpStream,
    addr: String,
    /// Bytes read past the previous response.
    pending: Vec<u8>,
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`).
    pub fn open(addr: &str) -> Self {
        let stream =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(RESPONSE_TIMEOUT)))
            .unwrap_or_else(|e| panic!("cannot set socket options on {addr}: {e}"));
        Self {
            stream,
            addr: addr.to_string(),
            pending: Vec::new(),
        }
    }

    /// This end of the connection.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.stream
            .local_addr()
            .expect("a connected socket has a local address")
    }

    /// Sends `bytes` with one `write`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .unwrap_or_else(|e| panic!("cannot send to {}: {e}", self.addr));
    }

    /// Sends each piece with its own `write`, pausing `pause` between pieces so that the
    /// server reads them one at a time.
    pub fn send_pieces(&mut self, pieces: &[&[u8]], pause: Duration) {
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                thread::sleep(pause);
            }
            self.send(piece);
        }
    }

    /// Sends `request` whole and reads its response.
    pub fn request(&mut self, request: &Request) -> Response {
        self.send(&request.to_bytes());
        self.read_response()
    }

    /// Reads one response (`Content-Length` or chunked body). Panics on a timeout or if
    /// the server closes the connection first.
    pub fn read_response(&mut self) -> Response {
        let head_end = loop {
            if let Some(at) = find(&self.pending, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill();
        };
        let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?} from {}", self.addr));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        self.pending.drain(..head_end);
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = response.header("content-length") {
            let len: usize = len
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length {len:?} from {}", self.addr));
            response.body = self.take(len);
        } else if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line = self.take_line();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size {line:?} from {}", self.addr));
                if size == 0 {
                    // Trailers, then the blank line.
                    while !self.take_line().is_empty() {}
                    break;
                }
                let chunk = self.take(size);
                response.body.extend_from_slice(&chunk);
                self.take_line();
            }
        }
        response
    }

    /// The next `len` bytes.
    fn take(&mut self, len: usize) -> Vec<u8> {
        while self.pending.len() < len {
            self.fill();
        }
        self.pending.drain(..len).collect()
    }

    /// The next line, without its CRLF.
    fn take_line(&mut self) -> String {
        loop {
            if let Some(at) = find(&self.pending, b"\r\n") {
                let line = String::from_utf8_lossy(&self.pending[..at]).into_owned();
                self.pending.drain(..at + 2);
                return line;
            }
            self.fill();
        }
    }

    fn fill(&mut self) {
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => panic!(
                "{} closed the connection mid-response; got {:?}",
                self.addr,
                String::from_utf8_lossy(&self.pending)
            ),
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no response from {} ({e})", self.addr),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_written_in_order_with_its_length() {
        let bytes = Request::new("POST", "/pay")
            .header("TraceParent", "x")
            .body("{}")
            .to_bytes();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "POST /pay HTTP/1.1\r\nHost: tracery-test\r\nTraceParent: x\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn cuts_split_without_losing_bytes() {
        let pieces = split_at(b"abcdef", &[1, 1, 4]);
        assert_eq!(pieces, [&b"a"[..], b"", b"bcd", b"ef"]);
        assert_eq!(offset_of(b"abcdef", "cd"), 2);
    }
}
