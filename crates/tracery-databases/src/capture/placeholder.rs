//! `{path}` placeholders: a captured variable or a field path into one.

/// Whether `text` is a variable path: `name`, then any of `.field`, `->field`, `[index]`.
pub fn is_path(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = match ident_end(bytes, 0) {
        Some(end) => end,
        None => return false,
    };
    while i < bytes.len() {
        i = match bytes[i] {
            b'.' => match ident_end(bytes, i + 1) {
                Some(end) => end,
                None => return false,
            },
            b'-' if bytes.get(i + 1) == Some(&b'>') => match ident_end(bytes, i + 2) {
                Some(end) => end,
                None => return false,
            },
            b'[' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits == 0 || bytes.get(i + 1 + digits) != Some(&b']') {
                    return false;
                }
                i + digits + 2
            }
            _ => return false,
        };
    }
    true
}

/// The variable a path starts from: `order` of `order.customer`, `req` of `req->user.id`.
pub fn root_variable(path: &str) -> &str {
    let end = path.find(['.', '-', '[']).unwrap_or(path.len());
    &path[..end]
}

fn ident_end(bytes: &[u8], start: usize) -> Option<usize> {
    let first = *bytes.get(start)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let len = bytes[start..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    Some(start + len)
}

/// If `text[open]` is `{` and a path and `}` follow (spaces around the path allowed),
/// returns the trimmed path and the index just past `}`.
pub(crate) fn placeholder_at(text: &str, open: usize) -> Option<(&str, usize)> {
    let rest = text.get(open + 1..)?;
    let close = rest.find(['}', '{', '\n'])?;
    if rest.as_bytes()[close] != b'}' {
        return None;
    }
    let path = rest[..close].trim();
    is_path(path).then_some((path, open + 1 + close + 1))
}

/// The distinct paths of a template, in first-use order; `slots` index into it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PathTable {
    pub(crate) paths: Vec<String>,
}

impl PathTable {
    /// The slot of `path`, adding it on first use.
    pub(crate) fn slot(&mut self, path: &str) -> usize {
        match self.paths.iter().position(|p| p == path) {
            Some(i) => i,
            None => {
                self.paths.push(path.to_owned());
                self.paths.len() - 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in [
            "x",
            "order.customer",
            "req->user.id",
            "items[0]",
            "a_b.c[12]->d",
        ] {
            assert!(is_path(ok), "{ok}");
        }
        for bad in [
            "", "1x", "a.", "a->", "a[]", "a[x]", "a b", "\"a\"", "a:b", "a[1",
        ] {
            assert!(!is_path(bad), "{bad}");
        }
        assert_eq!(root_variable("req->user.id"), "req");
        assert_eq!(root_variable("items[0]"), "items");
        assert_eq!(root_variable("x"), "x");
    }

    #[test]
    fn finds_placeholders() {
        let text = "a = { order.id } and {}";
        assert_eq!(placeholder_at(text, 4), Some(("order.id", 16)));
        assert_eq!(placeholder_at(text, 21), None);
    }
}
