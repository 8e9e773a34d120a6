//! Redis capture commands: read-only commands only, each `{path}` one whole argument part.

use super::{placeholder::placeholder_at, placeholder::PathTable, CaptureError};

/// Commands that never write, block or change connection state. `SORT` (it can `STORE`)
/// and `GETEX`/`GETDEL` are absent on purpose.
pub const READ_ONLY_COMMANDS: &[&str] = &[
    "GET",
    "MGET",
    "STRLEN",
    "GETRANGE",
    "GETBIT",
    "BITCOUNT",
    "BITPOS",
    "EXISTS",
    "TYPE",
    "TTL",
    "PTTL",
    "EXPIRETIME",
    "PEXPIRETIME",
    "HGET",
    "HMGET",
    "HGETALL",
    "HKEYS",
    "HVALS",
    "HLEN",
    "HEXISTS",
    "HSTRLEN",
    "LRANGE",
    "LLEN",
    "LINDEX",
    "LPOS",
    "SMEMBERS",
    "SISMEMBER",
    "SMISMEMBER",
    "SCARD",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZRANGEBYLEX",
    "ZREVRANGE",
    "ZREVRANGEBYSCORE",
    "ZREVRANGEBYLEX",
    "ZSCORE",
    "ZMSCORE",
    "ZRANK",
    "ZREVRANK",
    "ZCARD",
    "ZCOUNT",
    "ZLEXCOUNT",
    "XRANGE",
    "XREVRANGE",
    "XLEN",
    "SORT_RO",
    "DBSIZE",
];

/// One argument: literal text and placeholders, joined into exactly one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgPart {
    /// Text as written.
    Literal(String),
    /// The value of the path in this slot of [`RedisCommand::placeholders`].
    Slot(usize),
}

/// A validated read-only Redis command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisCommand {
    /// The command name, upper-case.
    pub name: String,
    /// Each argument, as parts to join.
    pub args: Vec<Vec<ArgPart>>,
    pub(crate) paths: PathTable,
}

/// Parses `text` (without the `name:` prefix): words split on spaces, `"..."` or `'...'`
/// quote a word with spaces, `{{` and `}}` are literal braces (for cluster hash tags).
pub(crate) fn parse(text: &str) -> Result<RedisCommand, CaptureError> {
    let words = split_words(text)?;
    let Some((name, args)) = words.split_first() else {
        return Err(CaptureError::Empty);
    };
    let name = name.to_ascii_uppercase();
    if !READ_ONLY_COMMANDS.contains(&name.as_str()) {
        return Err(CaptureError::RedisCommandNotAllowed {
            command: name,
            allowed: READ_ONLY_COMMANDS.join(", "),
        });
    }
    let mut paths = PathTable::default();
    let args = args
        .iter()
        .map(|word| arg_parts(text, word, &mut paths))
        .collect::<Result<_, _>>()?;
    Ok(RedisCommand { name, args, paths })
}

fn arg_parts(query: &str, word: &str, paths: &mut PathTable) -> Result<Vec<ArgPart>, CaptureError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    while i < word.len() {
        let rest = &word[i..];
        if rest.starts_with("{{") || rest.starts_with("}}") {
            literal.push_str(&rest[..1]);
            i += 2;
        } else if rest.starts_with('{') {
            let Some((path, end)) = placeholder_at(word, i) else {
                return Err(CaptureError::BadPlaceholder {
                    query: query.to_owned(),
                    near: rest.chars().take(40).collect(),
                });
            };
            if !literal.is_empty() {
                parts.push(ArgPart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(ArgPart::Slot(paths.slot(path)));
            i = end;
        } else {
            let c = rest.chars().next().unwrap_or_default();
            literal.push(c);
            i += c.len_utf8();
        }
    }
    if !literal.is_empty() || parts.is_empty() {
        parts.push(ArgPart::Literal(literal));
    }
    Ok(parts)
}

fn split_words(text: &str) -> Result<Vec<String>, CaptureError> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    Some(q) if q == c => break,
                    Some('\\') if c == '"' => word.extend(chars.next()),
                    Some(other) => word.push(other),
                    None => {
                        return Err(CaptureError::UnclosedQuote {
                            query: text.to_owned(),
                        })
                    }
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_whole_arguments() {
        let c = parse("hgetall cart:{order.customer}:v{v}  \"a b {{tag}}\" {x}").unwrap();
        assert_eq!(c.name, "HGETALL");
        assert_eq!(
            c.args,
            vec![
                vec![
                    ArgPart::Literal("cart:".into()),
                    ArgPart::Slot(0),
                    ArgPart::Literal(":v".into()),
                    ArgPart::Slot(1),
                ],
                vec![ArgPart::Literal("a b {tag}".into())],
                vec![ArgPart::Slot(2)],
            ]
        );
        assert_eq!(c.paths.paths, ["order.customer", "v", "x"]);
    }
}
