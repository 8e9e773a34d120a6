//! Source maps (v3) of a script: a TypeScript `FILE:LINE` → the line of the JavaScript V8
//! runs. Only the `mappings` search by original line is needed, so the VLQ decoding is
//! here (a few lines) rather than a full source-map library.

use base64::Engine;

use super::cdp::Script;

/// The original source matching `file` in `script`'s source map, and the first generated
/// line (1-based) that maps to `line` of it.
pub fn generated_line(pid: u32, script: &Script, file: &str, line: u32) -> Option<(String, u32)> {
    let script_path = script.url.strip_prefix("file://")?;
    let map_url = script.source_map_url.as_deref()?;
    let (text, map_dir) = if let Some(data) = map_url.strip_prefix("data:") {
        let b64 = data.split_once("base64,")?.1;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        (String::from_utf8(bytes).ok()?, parent(script_path))
    } else {
        let path = map_url.strip_prefix("file://").map_or_else(
            || format!("{}/{map_url}", parent(script_path)),
            str::to_owned,
        );
        // Read through the process's root: in a container, its files are there.
        let text = std::fs::read_to_string(format!("/proc/{pid}/root{path}")).ok()?;
        (text, parent(&path))
    };
    let map: serde_json::Value = serde_json::from_str(&text).ok()?;
    let root = map["sourceRoot"].as_str().unwrap_or("");
    let file = file.trim_start_matches("./");
    let (index, source) = map["sources"]
        .as_array()?
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i, normalize(&map_dir, root, s.as_str()?))))
        .find(|(_, s)| s == file || s.ends_with(&format!("/{file}")))?;
    let generated = first_generated_line(map["mappings"].as_str()?, index, line.checked_sub(1)?)?;
    Some((source, generated + 1))
}

fn parent(path: &str) -> String {
    path.rsplit_once('/')
        .map_or(String::new(), |(d, _)| d.to_owned())
}

/// `dir/root/source` with `.` and `..` resolved.
fn normalize(dir: &str, root: &str, source: &str) -> String {
    let source = source.strip_prefix("file://").unwrap_or(source);
    let joined = if source.starts_with('/') {
        source.to_owned()
    } else if root.is_empty() {
        format!("{dir}/{source}")
    } else {
        format!("{dir}/{root}/{source}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The first generated line (0-based) with a segment mapping to `line` (0-based) of source
/// `source`.
fn first_generated_line(mappings: &str, source: usize, line: u32) -> Option<u32> {
    let (mut src, mut src_line, mut src_col, mut name) = (0i64, 0i64, 0i64, 0i64);
    for (gen_line, segments) in mappings.split(';').enumerate() {
        for seg in segments.split(',').filter(|s| !s.is_empty()) {
            let f = vlq(seg)?;
            if f.len() >= 4 {
                src += f[1];
                src_line += f[2];
                src_col += f[3];
                if f.len() >= 5 {
                    name += f[4];
                }
                if src == source as i64 && src_line == i64::from(line) {
                    return u32::try_from(gen_line).ok();
                }
            }
        }
    }
    let _ = (src_col, name);
    None
}

/// The base64 VLQ numbers of one segment.
fn vlq(seg: &str) -> Option<Vec<i64>> {
    let mut out = Vec::new();
    let (mut value, mut shift) = (0i64, 0u32);
    for c in seg.bytes() {
        let digit = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as i64;
        value += (digit & 31) << shift;
        if digit & 32 != 0 {
            shift += 5;
            if shift > 60 {
                return None;
            }
        } else {
            out.push(if value & 1 == 1 {
                -(value >> 1)
            } else {
                value >> 1
            });
            value = 0;
            shift = 0;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlq_and_line_search() {
        assert_eq!(vlq("AAAA"), Some(vec![0, 0, 0, 0]));
        assert_eq!(vlq("AACA"), Some(vec![0, 0, 1, 0]));
        assert_eq!(vlq("D"), Some(vec![-1]));
        assert_eq!(vlq("gB"), Some(vec![16]));
        // Generated line 0 ← source line 0; line 1 empty; line 2 ← source line 3.
        assert_eq!(first_generated_line("AAAA;;AAGA", 0, 3), Some(2));
        assert_eq!(first_generated_line("AAAA;;AAGA", 0, 1), None);
        assert_eq!(
            normalize("/srv/dist", "", "../src/app.ts"),
            "/srv/src/app.ts"
        );
    }
}
