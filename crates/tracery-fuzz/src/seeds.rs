//! Starting inputs for each target: valid messages, so that mutations start deep inside
//! each parser rather than at its first check.

use std::{path::Path, process::Command};

use prost::Message;
use tracery_model::{Value, VarKind, Variable};
use tracery_proto::v1;

/// Real binaries: the C fixture (`tests/fixtures/c/orders.c`) compiled by `gcc -g` in the
/// ways the tests build it and a few more (DWARF 4, compressed sections), into a fresh
/// temporary directory. Empty when gcc is missing. Not committed: built binaries go stale.
pub fn elf() -> Vec<Vec<u8>> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/c/orders.c");
    let dir = std::env::temp_dir().join(format!("tracery-fuzz-seeds-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return Vec::new();
    }
    let variants: &[&[&str]] = &[
        &["-g", "-O0"],
        &["-g", "-O2"],
        &["-g", "-O0", "-no-pie", "-fno-pie"],
        &["-g", "-O1", "-gdwarf-4"],
        &["-g", "-O2", "-Wl,--compress-debug-sections=zlib"],
        &["-g1", "-Os", "-s"],
    ];
    let mut out = Vec::new();
    for (i, flags) in variants.iter().enumerate() {
        let binary = dir.join(format!("orders-{i}"));
        let built = Command::new("gcc")
            .args(*flags)
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            .status()
            .is_ok_and(|s| s.success());
        if let (true, Ok(bytes)) = (built, std::fs::read(&binary)) {
            out.push(bytes);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// `--when` conditions using every operator and literal kind.
pub fn condition() -> Vec<Vec<u8>> {
    [
        "qty > 10",
        "order.ship.zip == 12345 && paid == true",
        "!(price <= 2.5e3) || note != null",
        "customer == \"ada \\\"lovelace\\\"\\n\" && id >= -0x7f",
        "10 < qty && (a.b.c != false || x == 'c')",
        "f == \"abc\" || g.p.x == \"y\" || h == null || j >= 3 || k < 2.5",
        "a == -170141183460469231731687303715884105728",
        "b == 0xffffffffffffffffffffffffffffffff",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// HTTP requests carrying each trace header kind, behind the filter and split bytes.
pub fn trace_header() -> Vec<Vec<u8>> {
    let requests = [
        "GET /orders/7 HTTP/1.1\r\nHost: orders\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
        "POST /pay HTTP/1.1\r\nX-Tenant: 7\r\nContent-Length: 5\r\nb3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n\r\nhelloGET / HTTP/1.1\r\nX-B3-TraceId: 463ac35c9f6413ad48485a3953bb6124\r\nX-B3-SpanId: a2fb4a1d1a96d312\r\n\r\n",
        "PUT /x HTTP/1.0\r\nuber-trace-id: 5af7183fb1d4cf5f:6b221d5bc9e6496c:0:1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "x-tenant=7",
        // Redis replies and commands carrying a job's context (RESP mode).
        "$78\r\n{\"uber-trace-id\":\"4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1\",\"order\":7}\r\n",
        "*2\r\n$4\r\njobs\r\n$81\r\n{\"id\": 42, \"traceparent\": \"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"}\r\n",
        "*4\r\n$12\r\nx-b3-traceid\r\n$32\r\n463ac35c9f6413ad48485a3953bb6124\r\n$11\r\nx-b3-spanid\r\n$16\r\na2fb4a1d1a96d312\r\n",
        "*3\r\n$5\r\nLPUSH\r\n$4\r\njobs\r\n$54\r\n{\\\"b3\\\":\\\"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\\\"}\r\n",
    ];
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut v = vec![i as u8, (7 * i) as u8];
            v.extend_from_slice(r.as_bytes());
            v
        })
        .collect()
}

/// One PostgreSQL frontend message: tag, length (itself included), body.
fn pg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Held messages of each protocol, whole and cut.
pub fn wire() -> Vec<Vec<u8>> {
    let mut parse = b"s1\0SELECT * FROM orders WHERE id = $1 AND note = $2\0".to_vec();
    parse.extend_from_slice(&[0, 2, 0, 0, 0, 23, 0, 0, 0, 25]);
    let mut bind = b"\0s1\0".to_vec();
    bind.extend_from_slice(&[
        0, 1, 0, 1, 0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0, 2, b'h', b'i',
    ]);
    bind.extend_from_slice(&[0, 0]);
    let mut extended = pg(b'P', &parse);
    extended.extend(pg(b'B', &bind));
    extended.extend(pg(b'E', b"\0\0\0\0\0"));
    extended.extend(pg(b'S', b""));
    let mut startup = Vec::new();
    let params = b"\0\x03\0\0user\0app\0database\0orders\0\0";
    startup.extend_from_slice(&(params.len() as u32 + 4).to_be_bytes());
    startup.extend_from_slice(params);
    vec![
        pg(b'Q', b"INSERT INTO orders (id, qty) VALUES (7, 3)\0"),
        extended.clone(),
        extended[..extended.len() / 2].to_vec(),
        startup,
        b"*3\r\n$3\r\nSET\r\n$5\r\norder\r\n$2\r\n{}\r\n".to_vec(),
        b"*2\r\n$4\r\nHGET\r\n$3\r\nkey\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
        b"%1\r\n+a\r\n:1\r\n".to_vec(),
        b"POST /pay HTTP/1.1\r\nHost: payments\r\nContent-Length: 11\r\n\r\n{\"id\": 7}\n\x01"
            .to_vec(),
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nok".to_vec(),
        b"\x16\x03\x01\x02\x00\x01".to_vec(),
    ]
}

/// Each message type the proto target converts, prefixed by its kind byte.
pub fn proto() -> Vec<Vec<u8>> {
    let var = |name: &str, value: Value| Variable {
        name: name.to_string(),
        kind: VarKind::Arg,
        type_name: "struct order".to_string(),
        value,
        frame: Some("apply_discount".to_string()),
    };
    let value = Value::Struct {
        name: "order".to_string(),
        fields: vec![
            ("id".to_string(), Value::Int(7)),
            ("price".to_string(), Value::Float(2.5)),
            (
                "note".to_string(),
                Value::Pointer {
                    address: 0x5555_0000,
                    target: Some(Box::new(Value::Str {
                        text: "gift".to_string(),
                        truncated: true,
                    })),
                },
            ),
            (
                "items".to_string(),
                Value::Array {
                    items: vec![Value::UInt(1), Value::Null, Value::OptimizedOut],
                    total: Some(4),
                },
            ),
        ],
    };
    let variable = var("order", value.clone());
    let snapshot = v1::Snapshot {
        breakpoint_id: 3,
        pid: 10,
        tid: 11,
        time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }),
        location: Some(v1::Location {
            function: "process_order".to_string(),
            file: "orders.c".to_string(),
            line: 27,
            address: 0x1139,
        }),
        variables: vec![v1::Variable::from(variable.clone())],
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_string()),
        ..Default::default()
    };
    let mut out = vec![
        (0u8, snapshot.encode_to_vec()),
        (1, v1::Value::from(value).encode_to_vec()),
        (2, v1::Variable::from(variable).encode_to_vec()),
        (
            5,
            v1::HoldTrace {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
                deadline: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
            }
            .encode_to_vec(),
        ),
    ];
    for message in wire() {
        if let Some(m) = tracery_wire::decode(&message, message.len() as u64) {
            out.push((3, v1::DecodedMessage::from(m).encode_to_vec()));
        }
    }
    out.into_iter()
        .map(|(kind, bytes)| {
            let mut v = vec![kind];
            v.extend(bytes);
            v
        })
        .collect()
}
