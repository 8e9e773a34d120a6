//! Round trips domain → proto → wire bytes → proto → domain, and the errors a malformed
//! message gives.

use prost::Message;
use tracery_model::{SourceLanguage, Value, VarKind, Variable};
use tracery_proto::{v1, ConvertError};

/// Converts to proto, encodes, decodes, converts back.
fn round_trip(value: Value) -> Value {
    let bytes = v1::Value::from(value).encode_to_vec();
    let decoded = v1::Value::decode(bytes.as_slice()).expect("decode");
    Value::try_from(decoded).expect("convert back")
}

fn assert_round_trip(value: Value) {
    assert_eq!(round_trip(value.clone()), value);
}

fn text(s: &str) -> Value {
    Value::Str {
        text: s.into(),
        truncated: false,
    }
}

#[test]
fn scalars() {
    for v in [
        Value::Int(0),
        Value::Int(-7),
        Value::Int(i64::MIN.into()),
        Value::Int(i64::MAX.into()),
        Value::UInt(0),
        Value::UInt(u64::MAX.into()),
        Value::Float(19.5),
        Value::Float(-0.0),
        Value::Float(f64::INFINITY),
        Value::Float(f64::NEG_INFINITY),
        Value::Bool(true),
        Value::Bool(false),
        Value::Char('a'),
        Value::Char('\u{10FFFF}'),
        Value::Char('é'),
    ] {
        assert_round_trip(v);
    }
}

#[test]
fn ints_beyond_64_bits_use_the_decimal_fields() {
    for v in [
        i128::MIN,
        i128::MAX,
        i128::from(i64::MIN) - 1,
        i128::from(i64::MAX) + 1,
    ] {
        let proto = v1::Value::from(Value::Int(v));
        assert_eq!(proto.kind, Some(v1::value::Kind::Int128(v.to_string())));
        assert_round_trip(Value::Int(v));
    }
    for v in [u128::MAX, u128::from(u64::MAX) + 1] {
        let proto = v1::Value::from(Value::UInt(v));
        assert_eq!(proto.kind, Some(v1::value::Kind::Uint128(v.to_string())));
        assert_round_trip(Value::UInt(v));
    }
    // 64-bit values stay varints.
    assert_eq!(
        v1::Value::from(Value::Int(-1)).kind,
        Some(v1::value::Kind::Int(-1))
    );
    assert_eq!(
        v1::Value::from(Value::UInt(u64::MAX.into())).kind,
        Some(v1::value::Kind::Uint(u64::MAX))
    );
}

#[test]
fn small_values_in_the_wide_fields_are_accepted() {
    let proto = v1::Value {
        kind: Some(v1::value::Kind::Int128("-5".into())),
    };
    assert_eq!(Value::try_from(proto), Ok(Value::Int(-5)));
    let proto = v1::Value {
        kind: Some(v1::value::Kind::Uint128("5".into())),
    };
    assert_eq!(Value::try_from(proto), Ok(Value::UInt(5)));
}

#[test]
fn nan_keeps_its_bits() {
    let nan = f64::from_bits(0x7ff8_0000_dead_beef);
    match round_trip(Value::Float(nan)) {
        Value::Float(f) => assert_eq!(f.to_bits(), nan.to_bits()),
        other => panic!("expected a float, got {other:?}"),
    }
}

#[test]
fn strings_and_data_less_variants() {
    for v in [
        text("Lisbon"),
        Value::Str {
            text: "a long prefix".into(),
            truncated: true,
        },
        text(""),
        Value::Null,
        Value::Unit,
        Value::OptimizedOut,
        Value::unavailable("capture budget exhausted"),
    ] {
        assert_round_trip(v);
    }
}

#[test]
fn compound_values() {
    assert_round_trip(Value::Struct {
        name: "struct address".into(),
        fields: vec![
            ("city".into(), text("Lisbon")),
            ("zip".into(), Value::Int(1100)),
        ],
    });
    assert_round_trip(Value::Struct {
        name: "Empty".into(),
        fields: vec![],
    });
    assert_round_trip(Value::Array {
        items: vec![Value::UInt(1), Value::UInt(2)],
        total: Some(10),
    });
    assert_round_trip(Value::Array {
        items: vec![],
        total: None,
    });
    assert_round_trip(Value::Pointer {
        address: 0x1000,
        target: Some(Box::new(Value::Int(5))),
    });
    assert_round_trip(Value::Pointer {
        address: 0x10,
        target: None,
    });
    assert_round_trip(Value::Enum {
        name: "orders::Status".into(),
        variant: "Pending".into(),
        fields: vec![],
    });
    assert_round_trip(Value::Enum {
        name: "orders::Status".into(),
        variant: "Paid".into(),
        fields: vec![("amount".into(), Value::UInt(1250))],
    });
    assert_round_trip(Value::Interface {
        type_name: "*main.Order".into(),
        value: None,
    });
    assert_round_trip(Value::Interface {
        type_name: "int".into(),
        value: Some(Box::new(Value::Int(3))),
    });
}

#[test]
fn deeply_nested_value() {
    // Option<&Order{ items: [Item{..}], status: Paid{amount}, owner: interface{...} }>
    let item = |sku: &str, qty: u128| Value::Struct {
        name: "orders::Item".into(),
        fields: vec![("sku".into(), text(sku)), ("qty".into(), Value::UInt(qty))],
    };
    let order = Value::Struct {
        name: "orders::Order".into(),
        fields: vec![
            ("id".into(), Value::UInt(u128::MAX)),
            (
                "items".into(),
                Value::Array {
                    items: vec![item("A-1", 2), item("B-7", 1), Value::OptimizedOut],
                    total: Some(40),
                },
            ),
            (
                "status".into(),
                Value::Enum {
                    name: "orders::Status".into(),
                    variant: "Paid".into(),
                    fields: vec![("__0".into(), Value::Float(f64::MIN_POSITIVE))],
                },
            ),
            (
                "owner".into(),
                Value::Interface {
                    type_name: "*main.User".into(),
                    value: Some(Box::new(Value::Pointer {
                        address: 0xc000_0100,
                        target: Some(Box::new(Value::Struct {
                            name: "main.User".into(),
                            fields: vec![
                                ("name".into(), text("ana")),
                                ("tag".into(), Value::Char('★')),
                                ("secret".into(), Value::unavailable("redacted")),
                            ],
                        })),
                    })),
                },
            ),
            ("unit".into(), Value::Unit),
            ("next".into(), Value::Null),
            ("balance".into(), Value::Int(i128::MIN)),
        ],
    };
    let v = Value::Enum {
        name: "core::option::Option<&orders::Order>".into(),
        variant: "Some".into(),
        fields: vec![(
            "__0".into(),
            Value::Pointer {
                address: 0x7fff_0000,
                target: Some(Box::new(order)),
            },
        )],
    };
    assert_round_trip(v);
}

#[test]
fn variables_and_kinds() {
    for kind in [VarKind::Arg, VarKind::Local] {
        let proto = v1::VarKind::from(kind);
        assert_eq!(VarKind::try_from(proto), Ok(kind));
    }
    assert_eq!(v1::VarKind::from(VarKind::Arg), v1::VarKind::Arg);
    assert_eq!(v1::VarKind::from(VarKind::Local), v1::VarKind::Local);

    for var in [
        Variable {
            name: "qty".into(),
            kind: VarKind::Arg,
            type_name: "u32".into(),
            value: Value::UInt(3),
            frame: None,
        },
        Variable {
            name: "total".into(),
            kind: VarKind::Local,
            type_name: "i128".into(),
            value: Value::Int(i128::MAX),
            frame: Some("orders::price".into()),
        },
    ] {
        let bytes = v1::Variable::from(var.clone()).encode_to_vec();
        let decoded = v1::Variable::decode(bytes.as_slice()).unwrap();
        assert_eq!(Variable::try_from(decoded), Ok(var));
    }
}

#[test]
fn languages() {
    for lang in [
        SourceLanguage::C,
        SourceLanguage::Cpp,
        SourceLanguage::Rust,
        SourceLanguage::Go,
    ] {
        assert_eq!(SourceLanguage::try_from(v1::Language::from(lang)), Ok(lang));
    }
    assert_eq!(
        SourceLanguage::try_from(v1::Language::Unspecified),
        Err(ConvertError::Missing {
            field: "Snapshot.language"
        })
    );
}

#[test]
fn missing_value_kind() {
    assert_eq!(
        Value::try_from(v1::Value::default()),
        Err(ConvertError::Missing {
            field: "Value.kind"
        })
    );
}

#[test]
fn missing_kind_deep_inside_is_found() {
    let mut proto = v1::Value::from(Value::Struct {
        name: "S".into(),
        fields: vec![(
            "p".into(),
            Value::Pointer {
                address: 1,
                target: Some(Box::new(Value::Array {
                    items: vec![Value::Int(1), Value::Int(2)],
                    total: None,
                })),
            },
        )],
    });
    // Blank the second array item.
    let Some(v1::value::Kind::Struct(s)) = &mut proto.kind else {
        unreachable!()
    };
    let Some(v1::value::Kind::Pointer(p)) = &mut s.fields[0].value.as_mut().unwrap().kind else {
        unreachable!()
    };
    let Some(v1::value::Kind::Array(a)) = &mut p.target.as_mut().unwrap().kind else {
        unreachable!()
    };
    a.items[1] = v1::Value::default();
    assert_eq!(
        Value::try_from(proto),
        Err(ConvertError::Missing {
            field: "Value.kind"
        })
    );
}

#[test]
fn missing_field_value() {
    let proto = v1::Value {
        kind: Some(v1::value::Kind::Enum(v1::value::Enum {
            name: "E".into(),
            variant: "V".into(),
            fields: vec![v1::Field {
                name: "x".into(),
                value: None,
            }],
        })),
    };
    assert_eq!(
        Value::try_from(proto),
        Err(ConvertError::Missing {
            field: "Field.value"
        })
    );
}

#[test]
fn invalid_scalars() {
    let surrogate = v1::Value {
        kind: Some(v1::value::Kind::Char(0xD800)),
    };
    let err = Value::try_from(surrogate).unwrap_err();
    assert!(matches!(
        err,
        ConvertError::Invalid {
            field: "Value.char",
            ..
        }
    ));
    assert!(err.to_string().contains("55296"), "{err}");

    for (kind, field) in [
        (v1::value::Kind::Int128("12x".into()), "Value.int128"),
        (
            v1::value::Kind::Int128("170141183460469231731687303715884105728".into()),
            "Value.int128",
        ),
        (v1::value::Kind::Uint128("-1".into()), "Value.uint128"),
        (v1::value::Kind::Uint128(String::new()), "Value.uint128"),
    ] {
        let err = Value::try_from(v1::Value { kind: Some(kind) }).unwrap_err();
        assert!(
            matches!(err, ConvertError::Invalid { field: f, .. } if f == field),
            "{err:?}"
        );
    }
}

#[test]
fn invalid_variables() {
    let good = v1::Variable::from(Variable {
        name: "x".into(),
        kind: VarKind::Local,
        type_name: "int".into(),
        value: Value::Int(1),
        frame: None,
    });

    let unspecified = v1::Variable {
        kind: v1::VarKind::Unspecified.into(),
        ..good.clone()
    };
    assert_eq!(
        Variable::try_from(unspecified),
        Err(ConvertError::Missing {
            field: "Variable.kind"
        })
    );

    let unknown = v1::Variable {
        kind: 42,
        ..good.clone()
    };
    let err = Variable::try_from(unknown).unwrap_err();
    assert!(
        matches!(&err, ConvertError::Invalid { field: "Variable.kind", value, .. } if value == "42"),
        "{err:?}"
    );

    let no_value = v1::Variable {
        value: None,
        ..good.clone()
    };
    assert_eq!(
        Variable::try_from(no_value),
        Err(ConvertError::Missing {
            field: "Variable.value"
        })
    );

    let bad_value = v1::Variable {
        value: Some(v1::Value::default()),
        ..good
    };
    assert_eq!(
        Variable::try_from(bad_value),
        Err(ConvertError::Missing {
            field: "Value.kind"
        })
    );
}

#[test]
fn error_messages_name_the_field_and_the_fix() {
    let err = ConvertError::Missing {
        field: "Variable.value",
    };
    let msg = err.to_string();
    assert!(msg.contains("tracery.v1.Variable.value"), "{msg}");
    assert!(msg.contains("same Tracery version"), "{msg}");
}
