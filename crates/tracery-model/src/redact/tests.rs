use serde_json::json;

use super::*;
use crate::render::SourceLanguage;
use crate::value::VarKind;
use crate::wire::{DecodedMessage, HttpMessage, PgMessage, WireContent};

fn config(rules: &[&str], defaults: Option<bool>) -> Redaction {
    Redaction::from_config(&RedactionConfig {
        rules: rules.iter().map(|r| r.to_string()).collect(),
        defaults,
    })
    .unwrap()
}

fn s(text: &str) -> Value {
    Value::Str {
        text: text.into(),
        truncated: false,
    }
}

#[test]
fn names_split_into_words_at_case_digits_and_punctuation() {
    assert_eq!(words("user_password"), ["user", "password"]);
    assert_eq!(words("AuthToken"), ["auth", "token"]);
    assert_eq!(words("X-API-Key"), ["x", "api", "key"]);
    assert_eq!(words("HTTPHeader"), ["http", "header"]);
    assert_eq!(words("cvv2"), ["cvv", "2"]);
    assert_eq!(
        words("payment.card.card_number"),
        ["payment", "card", "card", "number"]
    );
    assert_eq!(words("__0"), ["0"]);
}

#[test]
fn default_rules_match_whole_words_not_substrings() {
    let r = Redaction::default();
    let hit = |n: &str| r.rule_for(n);
    assert_eq!(hit("user_password"), Some("password"));
    assert_eq!(hit("PASSWORD"), Some("password"));
    assert_eq!(hit("passwordHash"), Some("password"));
    assert_eq!(hit("userpassword"), Some("password"));
    assert_eq!(hit("AuthToken"), Some("token"));
    assert_eq!(hit("x-auth-token"), Some("token"));
    assert_eq!(hit("csrftoken"), Some("token"));
    assert_eq!(hit("tokens"), Some("token"));
    assert_eq!(hit("x-api-key"), Some("api_key"));
    assert_eq!(hit("APIKey"), Some("api_key"));
    assert_eq!(hit("apiKey"), Some("api_key"));
    assert_eq!(hit("myapikey"), Some("api_key"));
    assert_eq!(hit("Authorization"), Some("authorization"));
    assert_eq!(hit("Set-Cookie"), Some("cookie"));
    assert_eq!(hit("cookies"), Some("cookie"));
    assert_eq!(hit("card_number"), Some("card_number"));
    assert_eq!(hit("CardNumber"), Some("card_number"));
    assert_eq!(hit("cardnumber"), Some("card_number"));
    assert_eq!(hit("card_numbers"), Some("card_number"));
    assert_eq!(hit("cvv2"), Some("cvv"));
    assert_eq!(hit("SSN"), Some("ssn"));
    assert_eq!(hit("client_secret"), Some("secret"));
    assert_eq!(hit("db_passwd"), Some("passwd"));
    // Words, not substrings.
    for clean in [
        "tokenizer_count",
        "tokenizer",
        "secretary",
        "card",
        "number",
        "api",
        "key",
        "keyboard",
        "passwordless",
        "customer",
        "id",
        "lessons",
    ] {
        assert_eq!(hit(clean), None, "{clean}");
    }
    assert_eq!(hit("card_id"), None);
    assert_eq!(hit("number_of_cards"), None);
    assert_eq!(hit("key_api"), None);
}

#[test]
fn custom_rules_add_to_the_defaults_or_replace_them() {
    let r = config(&["iban", "private_key"], None);
    assert_eq!(r.rule_for("customer_iban"), Some("iban"));
    assert_eq!(r.rule_for("PrivateKey"), Some("private_key"));
    assert_eq!(r.rule_for("password"), Some("password"));
    let only = config(&["iban"], Some(false));
    assert_eq!(only.rule_for("password"), None);
    assert_eq!(only.rule_for("IBAN"), Some("iban"));
    assert_eq!(config(&[], Some(false)).rule_for("token"), None);
    assert_eq!(config(&[], Some(true)), Redaction::default());
    assert_eq!(Redaction::none().rule_for("password"), None);
    let err = Redaction::from_config(&RedactionConfig {
        rules: vec!["--".into()],
        defaults: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("\"--\""), "{err}");
}

#[test]
fn the_config_section_parses_from_toml_shaped_json() {
    let c: RedactionConfig =
        serde_json::from_value(json!({"rules": ["iban"], "defaults": false})).unwrap();
    assert_eq!(c.rules, ["iban"]);
    assert_eq!(c.defaults, Some(false));
    assert!(serde_json::from_value::<RedactionConfig>(json!({"rule": []})).is_err());
}

#[test]
fn variables_and_nested_fields_are_redacted_at_any_depth() {
    let card = Value::Struct {
        name: "struct card".into(),
        fields: vec![
            ("card_number".into(), s("4111111111111111")),
            ("exp".into(), s("12/30")),
        ],
    };
    let payment = Value::Pointer {
        address: 0x10,
        target: Some(Box::new(Value::Struct {
            name: "struct payment".into(),
            fields: vec![("card".into(), card), ("amount".into(), Value::Int(12))],
        })),
    };
    let map = Value::Array {
        items: vec![
            Value::Struct {
                name: "entry".into(),
                fields: vec![("key".into(), s("X-Api-Key")), ("value".into(), s("k-123"))],
            },
            Value::Struct {
                name: "entry".into(),
                fields: vec![("key".into(), s("host")), ("value".into(), s("a"))],
            },
        ],
        total: None,
    };
    let mut vars = vec![
        Variable {
            name: "password".into(),
            kind: VarKind::Arg,
            type_name: "char *".into(),
            value: s("hunter2"),
            frame: None,
        },
        Variable {
            name: "payment".into(),
            kind: VarKind::Local,
            type_name: "struct payment *".into(),
            value: payment,
            frame: None,
        },
        Variable {
            name: "headers".into(),
            kind: VarKind::Local,
            type_name: "map".into(),
            value: map,
            frame: None,
        },
    ];
    Redaction::default().variables(&mut vars);
    assert_eq!(vars[0].value, Value::redacted("password"));
    assert_eq!(vars[0].value.to_json(), json!({"redacted": "password"}));
    let j = vars[1].value.to_json();
    assert_eq!(
        j["target"]["card"]["card_number"],
        json!({"redacted": "card_number"})
    );
    assert_eq!(j["target"]["card"]["exp"], "12/30");
    assert_eq!(j["target"]["amount"], 12);
    let m = vars[2].value.to_json();
    assert_eq!(m[0]["value"], json!({"redacted": "api_key"}));
    assert_eq!(m[1]["value"], "a");
    for lang in [SourceLanguage::C, SourceLanguage::Rust, SourceLanguage::Go] {
        let text = crate::render_text(&vars, lang.language());
        assert!(text.contains("<redacted: password>"), "{text}");
        assert!(text.contains("<redacted: card_number>"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("4111"),
            "{text}"
        );
    }
}

#[test]
fn json_rows_lose_matching_columns_keys_and_hash_fields() {
    let mut rows = json!([
        {"id": 1, "password_hash": "$2b$abc", "profile": {"apiKey": "k"}},
        {"field": "session_token", "value": "tok-1"},
        {"field": "stock", "value": "17"},
    ]);
    Redaction::default().json(&mut rows);
    assert_eq!(
        rows,
        json!([
            {"id": 1, "password_hash": {"redacted": "password"}, "profile": {"apiKey": {"redacted": "api_key"}}},
            {"field": "session_token", "value": {"redacted": "token"}},
            {"field": "stock", "value": "17"},
        ])
    );
}

fn http(headers: &[(&str, &str)], path: &str, body: &str) -> DecodedMessage {
    DecodedMessage {
        content: WireContent::Http(HttpMessage {
            method: "POST".into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
            ..HttpMessage::default()
        }),
        truncated: false,
    }
}

#[test]
fn http_previews_lose_secret_headers_query_and_json_members() {
    let mut m = http(
        &[
            ("Host", "pay"),
            ("Authorization", "Bearer s3cr3t-xyz"),
            ("Cookie", "sid=abc"),
        ],
        "/pay?order=7&access_token=qq1",
        r#"{"order": 7, "card": {"card_number": "4111111111111111", "cvv": 123}, "pin": "#,
    );
    let removed = Redaction::default().message(&mut m);
    let j = m.to_json();
    let text = j.to_string();
    for secret in ["s3cr3t-xyz", "sid=abc", "qq1", "4111111111111111", "123"] {
        assert!(!text.contains(secret), "{secret} in {text}");
        assert!(
            removed.iter().any(|r| r.contains(secret)),
            "{secret}: {removed:?}"
        );
    }
    assert_eq!(
        j["headers"][1],
        json!(["Authorization", "<redacted: authorization>"])
    );
    assert_eq!(j["path"], "/pay?order=7&access_token=<redacted: token>");
    assert!(text.contains(r#"\"order\": 7"#), "{text}");
    assert_eq!(
        message::scrub("POST /pay?order=7&access_token=qq1 HTTP/1.1", &removed),
        "POST /pay?order=7&access_token=<redacted> HTTP/1.1"
    );
    // A first line cut inside a secret loses the secret's start too.
    assert_eq!(
        message::scrub("Bind ... 411111", &["4111111111111111".into()]),
        "Bind ... <redacted>"
    );
}

#[test]
fn a_cut_json_body_is_redacted_up_to_its_end() {
    let mut removed = Vec::new();
    let out = message::json_text(
        &Redaction::default(),
        r#"{"a":1,"password":"hunt"#,
        &mut removed,
    );
    assert_eq!(out, r#"{"a":1,"password":"<redacted: password>""#);
    assert_eq!(removed, ["hunt"]);
}

#[test]
fn redis_commands_lose_values_after_secret_names_and_credentials() {
    let mut m = DecodedMessage {
        content: WireContent::Redis(vec![
            vec!["AUTH".into(), "default".into(), "pw-1".into()],
            vec![
                "HSET".into(),
                "user:1".into(),
                "name".into(),
                "ann".into(),
                "api_key".into(),
                "k-2".into(),
            ],
            vec!["SET".into(), "session:token:9".into(), "t-3".into()],
            vec![
                "SET".into(),
                "cart:1".into(),
                r#"{"token":"t-4","n":2}"#.into(),
            ],
            vec!["GET".into(), "cart:1".into()],
        ]),
        truncated: false,
    };
    Redaction::default().message(&mut m);
    let text = m.to_json().to_string();
    for secret in ["pw-1", "k-2", "t-3", "t-4"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    for kept in ["ann", "user:1", "cart:1", "\\\"n\\\":2"] {
        assert!(text.contains(kept), "{kept} not in {text}");
    }
}

#[test]
fn postgres_binds_and_literals_of_secret_columns_are_redacted() {
    let pg = |kind: &str, sql: &str, params: &[&str]| PgMessage {
        kind: kind.into(),
        sql: sql.into(),
        params: params.iter().map(|p| Some(p.to_string())).collect(),
        ..PgMessage::default()
    };
    let mut m = DecodedMessage {
        content: WireContent::Postgres(vec![
            pg(
                "Parse",
                "INSERT INTO users (name, password_hash, api_token) VALUES ($1, $2, $3)",
                &[],
            ),
            pg("Bind", "", &["ann", "hash-1", "tok-2"]),
            pg("Parse", "UPDATE users SET password = $2 WHERE id = $1", &[]),
            pg("Bind", "", &["7", "pw-3"]),
            pg(
                "Query",
                "SELECT * FROM users WHERE u.ssn = '123-45' AND name = 'bob'",
                &[],
            ),
            pg(
                "Query",
                "INSERT INTO t (id, secret) VALUES (1, 'it''s'), (2, 'sec-5')",
                &[],
            ),
        ]),
        truncated: false,
    };
    let removed = Redaction::default().message(&mut m);
    let text = m.to_json().to_string();
    for secret in [
        "hash-1", "tok-2", "pw-3", "123-45", "it's", "it''s", "sec-5",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    for kept in ["ann", "\"7\"", "'bob'", "(1, '<redacted: secret>')"] {
        assert!(text.contains(kept), "{kept} not in {text}");
    }
    assert!(removed.contains(&"it's".to_string()), "{removed:?}");
}
