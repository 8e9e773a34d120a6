//! Redis commands as clients send them: RESP arrays of bulk strings, pipelined or not.

use redis_protocol::resp2::{decode::decode as resp2, types::OwnedFrame};

/// Longest argument shown; a cache value can be large.
const ARG_MAX: usize = 200;

/// The whole commands in `bytes`, and whether a cut one followed; `None` if the bytes
/// are not RESP commands.
pub fn decode(bytes: &[u8]) -> Option<(Vec<Vec<String>>, bool)> {
    if bytes.first() != Some(&b'*') {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match resp2(rest) {
            Ok(Some((OwnedFrame::Array(args), used))) => {
                out.push(args.iter().map(arg).collect::<Option<Vec<_>>>()?);
                rest = &rest[used..];
            }
            // Cut by the preview: the whole commands before it still count.
            Ok(None) if !out.is_empty() => return Some((out, true)),
            Ok(None) => return cut_command(rest).map(|c| (vec![c], true)),
            _ => return None,
        }
    }
    Some((out, false))
}

fn arg(f: &OwnedFrame) -> Option<String> {
    match f {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => Some(shown(b)),
        OwnedFrame::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

fn shown(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(ARG_MAX)]).into_owned();
    if b.len() > ARG_MAX {
        format!("{s}…")
    } else {
        s
    }
}

/// The arguments of a command the preview cut, as far as they go.
fn cut_command(b: &[u8]) -> Option<Vec<String>> {
    let text = std::str::from_utf8(b).ok()?;
    let mut lines = text.split("\r\n").skip(1);
    let mut args = Vec::new();
    while let (Some(len), Some(value)) = (lines.next(), lines.next()) {
        len.strip_prefix('$')?.parse::<usize>().ok()?;
        args.push(value.to_string());
    }
    (!args.is_empty()).then_some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
        }
        v
    }

    #[test]
    fn a_pipelined_transaction_shows_each_command() {
        let b = [
            cmd(&["MULTI"]),
            cmd(&["HINCRBY", "customer:ada", "orders", "1"]),
            cmd(&["EXEC"]),
        ]
        .concat();
        let (cmds, cut) = decode(&b).unwrap();
        assert!(!cut);
        assert_eq!(cmds[1], ["HINCRBY", "customer:ada", "orders", "1"]);
        assert_eq!(cmds.len(), 3);
    }

    #[test]
    fn a_cut_command_shows_its_arguments_so_far() {
        let b = [cmd(&["GET", "a"]), cmd(&["SET", "k", "value"])].concat();
        let (cmds, cut) = decode(&b[..b.len() - 4]).unwrap();
        assert!(cut);
        assert_eq!(cmds, [vec!["GET".to_string(), "a".to_string()]]);
        let one = cmd(&["SET", "key", "value"]);
        let (cmds, cut) = decode(&one[..one.len() - 8]).unwrap();
        assert!(cut);
        assert_eq!(cmds, [vec!["SET".to_string(), "key".to_string()]]);
    }

    #[test]
    fn other_bytes_are_not_taken_for_redis() {
        assert_eq!(decode(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(decode(b"*x\r\n"), None);
    }
}
