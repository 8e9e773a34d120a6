//! PostgreSQL frontend messages (protocol 3): simple `Query`, and the extended protocol's
//! `Parse`/`Bind`/`Execute`/`Sync` with the SQL text and the bound parameters.

use bytes::BytesMut;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage};
use tracery_model::wire::PgMessage;

/// Tags a client sends after start-up that this decoder recognises: a held message is
/// taken for PostgreSQL only if every message in it starts with one of these and a
/// plausible length.
const TAGS: &[u8] = b"QPBEDSCHX";
/// Longer than any statement a preview could hold: a bigger length means these bytes are
/// not PostgreSQL.
const MAX_LEN: u32 = 1 << 26;

/// The messages in `bytes`, and whether the last one was cut; `None` if the bytes are not
/// a PostgreSQL client's.
pub fn decode(bytes: &[u8]) -> Option<(Vec<PgMessage>, bool)> {
    // Past start-up: a held message is never a connection's first.
    let mut ctx = DecodeContext::default();
    ctx.awaiting_frontend_ssl = false;
    ctx.awaiting_frontend_startup = false;
    let mut out = Vec::new();
    // Parameter types of the last `Parse`, by statement name: they say how to read the
    // binary parameters of the `Bind` that follows it.
    let mut types: Option<(String, Vec<u32>)> = None;
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 5 && !out.is_empty() && TAGS.contains(&rest[0]) {
            // The preview ends inside the next message's header.
            return Some((out, true));
        }
        let (tag, len) = header(rest)?;
        let whole = len as usize + 1;
        if whole > rest.len() {
            // Cut by the preview: a statement's text is still worth showing.
            out.extend(cut_statement(tag, &rest[5..]));
            return Some((out, true));
        }
        if !fits(tag, &rest[5..whole]) {
            return None;
        }
        let mut buf = BytesMut::from(&rest[..whole]);
        let msg = PgWireFrontendMessage::decode(&mut buf, &ctx).ok()??;
        out.push(message(msg, &mut types));
        rest = &rest[whole..];
    }
    (!out.is_empty()).then_some((out, false))
}

/// A message's tag and length, if they look like a frontend message's.
fn header(b: &[u8]) -> Option<(u8, u32)> {
    let tag = *b.first()?;
    if !TAGS.contains(&tag) {
        return None;
    }
    if b.len() < 5 {
        // A tag and part of a length: too little to tell.
        return None;
    }
    let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
    (4..=MAX_LEN).contains(&len).then_some((tag, len))
}

/// Whether pgwire can decode `body` as a `tag` message without reading past it.
///
/// pgwire 0.42 trusts the counts inside `Parse`, `Bind`, `Execute`, `Describe` and `Close`
/// bodies and panics (`Buf::get_u32` past the end) when they claim more than the message
/// holds; a held process may send anything. This walks the same fields the same way:
/// a C string with no NUL is skipped without consuming, as pgwire's `get_cstring` does.
fn fits(tag: u8, body: &[u8]) -> bool {
    let mut b = Walk(body);
    match tag {
        b'P' => {
            b.cstring();
            b.cstring();
            b.count().is_some_and(|n| b.take(4 * n))
        }
        b'B' => {
            b.cstring();
            b.cstring();
            if !b.count().is_some_and(|n| b.take(2 * n)) {
                return false;
            }
            let Some(params) = b.count() else {
                return false;
            };
            for _ in 0..params {
                let Some(len) = b.i32() else {
                    return false;
                };
                if len >= 0 && !b.take(len as usize) {
                    return false;
                }
            }
            b.count().is_some_and(|n| b.take(2 * n))
        }
        b'E' => {
            b.cstring();
            b.take(4)
        }
        b'D' | b'C' => b.take(1),
        _ => true,
    }
}

/// A cursor over a message body that never reads past it.
struct Walk<'a>(&'a [u8]);

impl Walk<'_> {
    fn take(&mut self, n: usize) -> bool {
        match self.0.get(n..) {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }

    fn cstring(&mut self) {
        if let Some(nul) = self.0.iter().position(|&c| c == 0) {
            self.0 = &self.0[nul + 1..];
        }
    }

    fn count(&mut self) -> Option<usize> {
        let n = u16::from_be_bytes(self.0.get(..2)?.try_into().ok()?);
        self.0 = &self.0[2..];
        Some(usize::from(n))
    }

    fn i32(&mut self) -> Option<i32> {
        let n = i32::from_be_bytes(self.0.get(..4)?.try_into().ok()?);
        self.0 = &self.0[4..];
        Some(n)
    }
}

fn message(msg: PgWireFrontendMessage, types: &mut Option<(String, Vec<u32>)>) -> PgMessage {
    use PgWireFrontendMessage as F;
    let named = |kind: &str| PgMessage {
        kind: kind.into(),
        ..PgMessage::default()
    };
    match msg {
        F::Query(q) => PgMessage {
            kind: "Query".into(),
            sql: q.query,
            ..PgMessage::default()
        },
        F::Parse(p) => {
            let statement = p.name.unwrap_or_default();
            *types = Some((statement.clone(), p.type_oids));
            PgMessage {
                kind: "Parse".into(),
                statement,
                sql: p.query,
                ..PgMessage::default()
            }
        }
        F::Bind(b) => {
            let statement = b.statement_name.unwrap_or_default();
            let oids = types
                .as_ref()
                .filter(|(name, _)| *name == statement)
                .map(|(_, oids)| oids.as_slice())
                .unwrap_or_default();
            let params = b
                .parameters
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let p = p.as_ref()?;
                    let format = match b.parameter_format_codes.as_slice() {
                        [] => 0,
                        [all] => *all,
                        each => each.get(i).copied().unwrap_or(0),
                    };
                    Some(param(p, format, oids.get(i).copied().unwrap_or(0)))
                })
                .collect();
            PgMessage {
                kind: "Bind".into(),
                statement,
                params,
                ..PgMessage::default()
            }
        }
        F::Execute(_) => named("Execute"),
        F::Describe(_) => named("Describe"),
        F::Close(_) => named("Close"),
        F::Sync(_) => named("Sync"),
        F::Flush(_) => named("Flush"),
        F::Terminate(_) => named("Terminate"),
        other => named(&format!("{other:?}")),
    }
}

/// A `Query` or `Parse` whose end the preview cut: the SQL text seen so far.
fn cut_statement(tag: u8, body: &[u8]) -> Option<PgMessage> {
    let (kind, statement, sql) = match tag {
        b'Q' => ("Query", String::new(), body),
        b'P' => {
            let end = body.iter().position(|b| *b == 0)?;
            (
                "Parse",
                String::from_utf8_lossy(&body[..end]).into_owned(),
                &body[end + 1..],
            )
        }
        _ => return None,
    };
    let sql = sql.split(|b| *b == 0).next().unwrap_or_default();
    Some(PgMessage {
        kind: kind.into(),
        statement,
        sql: format!("{}…", String::from_utf8_lossy(sql)),
        params: Vec::new(),
    })
}

/// Type OIDs (pg_type.dat) of the binary forms read here.
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const NAME: u32 = 19;
    pub const UUID: u32 = 2950;
    pub const JSON: u32 = 114;
    pub const JSONB: u32 = 3802;
}

/// One bound parameter as text: text-format parameters as sent, binary ones by their type
/// when the `Parse` named it, else as `\x` hex.
fn param(p: &[u8], format: i16, type_oid: u32) -> String {
    if format == 0 {
        return String::from_utf8_lossy(p).into_owned();
    }
    let fixed = |n: usize| (p.len() == n).then_some(p);
    let text = match type_oid {
        oid::BOOL => fixed(1).map(|b| (if b[0] != 0 { "true" } else { "false" }).into()),
        oid::INT2 => fixed(2).map(|b| i16::from_be_bytes([b[0], b[1]]).to_string()),
        oid::INT4 => fixed(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string()),
        oid::INT8 => {
            fixed(8).and_then(|b| Some(i64::from_be_bytes(b.try_into().ok()?).to_string()))
        }
        oid::FLOAT4 => fixed(4).map(|b| f32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string()),
        oid::FLOAT8 => {
            fixed(8).and_then(|b| Some(f64::from_be_bytes(b.try_into().ok()?).to_string()))
        }
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON => {
            std::str::from_utf8(p).ok().map(str::to_string)
        }
        // jsonb's binary form is a version byte, then the text.
        oid::JSONB => p
            .split_first()
            .filter(|(v, _)| **v == 1)
            .and_then(|(_, t)| std::str::from_utf8(t).ok())
            .map(str::to_string),
        oid::UUID => fixed(16).map(uuid),
        oid::BYTEA => None,
        _ => None,
    };
    text.unwrap_or_else(|| {
        format!(
            "\\x{}",
            p.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    })
}

fn uuid(b: &[u8]) -> String {
    let h: String = b.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend(((body.len() + 4) as u32).to_be_bytes());
        v.extend(body);
        v
    }

    fn cstr(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// Found by the fuzzer: pgwire panicked reading the parameter types a `Parse` claims
    /// beyond its end, and the same for `Bind`'s counts and `Execute`'s row limit.
    #[test]
    fn counts_past_the_message_end_are_not_decoded() {
        let mut parse = cstr("s1");
        parse.extend(cstr("SELECT 1"));
        parse.extend(3u16.to_be_bytes());
        parse.extend(23u32.to_be_bytes());
        let mut bind = cstr("");
        bind.extend(cstr("s1"));
        bind.extend([0, 0, 0, 1]);
        bind.extend(100i32.to_be_bytes());
        bind.extend(b"short");
        let crash =
            b"P\0\0\0Bs1\0SELECT * FROM orders WHPOST /pay HERE id TTP= $1 /1.1\r\nHost:A p";
        for bytes in [
            msg(b'P', &parse),
            msg(b'B', &bind),
            msg(b'E', &cstr("")),
            msg(b'D', b""),
            crash.to_vec(),
        ] {
            assert_eq!(decode(&bytes), None, "{bytes:?}");
        }
    }

    /// Parse + Bind + Describe + Execute + Sync as tokio-postgres' `query_typed` sends
    /// them: an unnamed statement with its types, binary parameters.
    fn insert() -> Vec<u8> {
        let mut parse = cstr("");
        parse.extend(cstr(
            "INSERT INTO orders (customer, qty, total) VALUES ($1, $2, $3)",
        ));
        parse.extend(3i16.to_be_bytes());
        for oid in [oid::TEXT, oid::INT4, oid::INT8] {
            parse.extend(oid.to_be_bytes());
        }
        let mut bind = cstr("");
        bind.extend(cstr(""));
        bind.extend(1i16.to_be_bytes());
        bind.extend(1i16.to_be_bytes());
        bind.extend(3i16.to_be_bytes());
        for p in [
            &b"alice"[..],
            &7i32.to_be_bytes(),
            &(-1250i64).to_be_bytes(),
        ] {
            bind.extend((p.len() as i32).to_be_bytes());
            bind.extend(p);
        }
        bind.extend(0i16.to_be_bytes());
        let mut execute = cstr("");
        execute.extend(0i32.to_be_bytes());
        let mut describe = vec![b'P'];
        describe.extend(cstr(""));
        [
            msg(b'P', &parse),
            msg(b'B', &bind),
            msg(b'D', &describe),
            msg(b'E', &execute),
            msg(b'S', &[]),
        ]
        .concat()
    }

    #[test]
    fn an_extended_insert_shows_its_sql_and_typed_binary_parameters() {
        let (ms, cut) = decode(&insert()).unwrap();
        assert!(!cut);
        let kinds: Vec<&str> = ms.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, ["Parse", "Bind", "Describe", "Execute", "Sync"]);
        assert!(ms[0].sql.starts_with("INSERT INTO orders"));
        assert_eq!(
            ms[1].params,
            [Some("alice".into()), Some("7".into()), Some("-1250".into())]
        );
    }

    #[test]
    fn a_cut_message_keeps_the_whole_ones_before_it_and_the_sql_seen() {
        let all = insert();
        // Into the Bind: the Parse is whole.
        let (ms, cut) = decode(&all[..100]).unwrap();
        assert!(cut);
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].kind, "Parse");
        // Into the Parse's SQL: its start is shown, marked as cut.
        let (ms, cut) = decode(&all[..30]).unwrap();
        assert!(cut);
        assert_eq!(ms[0].sql, "INSERT INTO orders (cust…");
    }

    #[test]
    fn a_simple_query_and_text_parameters_of_a_named_statement() {
        let q = msg(b'Q', &cstr("SELECT 1"));
        let (ms, _) = decode(&q).unwrap();
        assert_eq!(ms[0].sql, "SELECT 1");

        // A Bind of a statement prepared earlier on the connection: no types here, so
        // binary parameters show as hex, text ones as sent.
        let mut bind = cstr("");
        bind.extend(cstr("sqlx_s_3"));
        bind.extend(2i16.to_be_bytes());
        bind.extend(0i16.to_be_bytes());
        bind.extend(1i16.to_be_bytes());
        bind.extend(3i16.to_be_bytes());
        for p in [&b"bob"[..], &[0, 0, 0, 9][..]] {
            bind.extend((p.len() as i32).to_be_bytes());
            bind.extend(p);
        }
        bind.extend((-1i32).to_be_bytes());
        bind.extend(0i16.to_be_bytes());
        let (ms, _) = decode(&msg(b'B', &bind)).unwrap();
        assert_eq!(ms[0].statement, "sqlx_s_3");
        assert_eq!(
            ms[0].params,
            [Some("bob".into()), Some("\\x00000009".into()), None]
        );
    }

    #[test]
    fn bytes_that_only_start_like_postgresql_are_not_taken_for_it() {
        // HTTP starts with 'P' (POST) but its "length" is absurd.
        assert_eq!(decode(b"POST /pay HTTP/1.1\r\n"), None);
        // A known tag with a length below the minimum.
        assert_eq!(decode(&[b'S', 0, 0, 0, 2]), None);
        // Garbage after a whole message.
        assert_eq!(
            decode(&[msg(b'S', &[]), b"zz\0\0\0\0".to_vec()].concat()),
            None
        );
    }
}
