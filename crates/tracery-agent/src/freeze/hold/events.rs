//! Hold events from the kernel, turned into the held messages `trace list` shows.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, SystemTime},
};

use tracery_common::hold::{
    HoldEvent, HELD_BEHIND, HELD_NO_SLOT, HELD_REDIRECT_FAILED, HELD_SHARED,
};

use crate::{freeze::HeldMessage, freeze::TraceId, sys};

/// What one hold event says.
pub enum Observed {
    /// Boxed: with its decoded form, a held message is far larger than `Missed`.
    Held(Box<HeldMessage>),
    /// A message of a frozen trace that went out unheld, and why.
    Missed { trace: TraceId, why: &'static str },
}

/// Decodes one `HoldEvent` record.
pub fn decode(ev: &HoldEvent) -> Option<Observed> {
    let trace = TraceId::from_kernel(ev.trace_id)?;
    if ev.flags & (HELD_NO_SLOT | HELD_REDIRECT_FAILED) != 0 {
        let why = if ev.flags & HELD_NO_SLOT != 0 {
            "every hold slot is in use"
        } else {
            "the hold keeper is not running"
        };
        return Some(Observed::Missed { trace, why });
    }
    let preview = &ev.preview[..(ev.preview_len as usize).min(ev.preview.len())];
    let (first_line, decoded) = redacted_preview(preview, u64::from(ev.len));
    Some(Observed::Held(Box::new(HeldMessage {
        trace_id: trace,
        pid: (ev.pid_tgid >> 32) as u32,
        tid: ev.pid_tgid as u32,
        socket: cookie(ev),
        local: addr(ev.sock.family, &ev.sock.local_ip, ev.sock.local_port as u16),
        peer: addr(
            ev.sock.family,
            &ev.sock.remote_ip,
            remote_port(ev.sock.remote_port),
        ),
        bytes: u64::from(ev.len),
        first_line,
        decoded,
        behind: ev.flags & HELD_BEHIND != 0,
        shared: ev.flags & HELD_SHARED != 0,
        at: wall_time(ev.ktime_ns),
    })))
}

/// The preview's first line and decoded form, with secret-named values redacted
/// (`tracery_model::redact::message`) before they leave the node.
fn redacted_preview(
    preview: &[u8],
    len: u64,
) -> (String, Option<tracery_model::wire::DecodedMessage>) {
    let mut decoded = tracery_wire::decode(preview, len);
    let removed = decoded
        .as_mut()
        .map(|d| tracery_model::redact::active().message(d))
        .unwrap_or_default();
    let line = tracery_model::redact::message::scrub(&first_line(preview), &removed);
    let line = line.chars().take(HeldMessage::FIRST_LINE_MAX).collect();
    (line, decoded)
}

/// The socket's cookie (`SO_COOKIE`), read through a duplicate of the sender's known
/// descriptor; 0 when there is none (the socket is then named by its addresses).
fn cookie(ev: &HoldEvent) -> u64 {
    use std::os::fd::AsRawFd;
    if ev.fd < 0 {
        return 0;
    }
    crate::freeze::connections::sender_socket((ev.pid_tgid >> 32) as u32, ev.fd, &ev.sock)
        .and_then(|fd| sys::socket_cookie(fd.as_raw_fd()).ok())
        .unwrap_or(0)
}

/// `sk_msg_md.remote_port` holds the port in network byte order (shifted left 16 on
/// little-endian).
fn remote_port(raw: u32) -> u16 {
    let p = if raw > 0xffff { raw >> 16 } else { raw };
    u16::from_be(p as u16)
}

fn addr(family: u32, ip: &[u32; 4], port: u16) -> Option<SocketAddr> {
    let ip = match family as i32 {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::from(u32::from_be(ip[0]))),
        libc::AF_INET6 => {
            let mut b = [0u8; 16];
            for (i, w) in ip.iter().enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(b);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The message's first line, printable: an HTTP request line, or for a binary protocol
/// (PostgreSQL) its text with control bytes shown as dots.
pub fn first_line(bytes: &[u8]) -> String {
    let line = bytes
        .iter()
        .position(|b| *b == b'\n' || *b == b'\r')
        .map_or(bytes, |end| &bytes[..end]);
    line.iter()
        .take(HeldMessage::FIRST_LINE_MAX)
        .map(|b| match b {
            0x20..=0x7e => *b as char,
            _ => '.',
        })
        .collect()
}

/// A `bpf_ktime_get_ns` time as wall-clock time.
fn wall_time(ktime_ns: u64) -> SystemTime {
    let age = sys::monotonic_ns().saturating_sub(ktime_ns);
    SystemTime::now() - Duration::from_nanos(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_are_printable_and_bounded() {
        assert_eq!(
            first_line(b"POST /pay HTTP/1.1\r\nHost: x\r\n"),
            "POST /pay HTTP/1.1"
        );
        assert_eq!(first_line(b"Q\0\0\0\x1bSELECT 1\0"), "Q....SELECT 1.");
        assert_eq!(first_line(&[b'a'; 300]).len(), HeldMessage::FIRST_LINE_MAX);
    }

    #[test]
    fn held_previews_are_redacted_in_their_decoded_form_and_first_line() {
        let http = b"POST /login?token=t-1 HTTP/1.1\r\nAuthorization: Bearer b-2\r\n\r\n{\"password\":\"p-3\"}";
        let (line, decoded) = redacted_preview(http, http.len() as u64);
        assert_eq!(line, "POST /login?token=<redacted> HTTP/1.1");
        let text = decoded.unwrap().to_json().to_string();
        for secret in ["t-1", "b-2", "p-3"] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
        // PostgreSQL Parse + Bind in one write: no newline, so the raw first line runs
        // into the bound values.
        let mut pg = Vec::new();
        let mut msg = |tag: u8, body: &[u8]| {
            pg.push(tag);
            pg.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
            pg.extend_from_slice(body);
        };
        msg(
            b'P',
            b"\0UPDATE users SET password_hash = $1 WHERE id = $2\0\0\0",
        );
        let mut bind = b"\0\0\0\0\0\x02".to_vec();
        for v in [&b"hash-S3CRET"[..], b"7"] {
            bind.extend_from_slice(&(v.len() as i32).to_be_bytes());
            bind.extend_from_slice(v);
        }
        bind.extend_from_slice(b"\0\0");
        msg(b'B', &bind);
        let (line, decoded) = redacted_preview(&pg, pg.len() as u64);
        assert!(!line.contains("hash-S3"), "{line}");
        let text = decoded.unwrap().to_json().to_string();
        assert!(!text.contains("hash-S3CRET"), "{text}");
        assert!(text.contains("<redacted: password>"), "{text}");
    }

    #[test]
    fn addresses_decode_from_the_kernel_layout() {
        let ip = [u32::from_ne_bytes([10, 77, 1, 2]), 0, 0, 0];
        let a = addr(libc::AF_INET as u32, &ip, 5432).unwrap();
        assert_eq!(a.to_string(), "10.77.1.2:5432");
        assert_eq!(remote_port(u32::from(5432u16.to_be())), 5432);
    }
}
