//! `Value`, `Variable` and `VarKind` ↔ `tracery_model`.

use tracery_model::{Value, VarKind, Variable};

use super::ConvertError;
use crate::v1;
use crate::v1::value::{self as pv, Kind};

impl From<Value> for v1::Value {
    fn from(value: Value) -> Self {
        let kind = match value {
            // 64-bit ints travel as varints; only wider ones need the decimal string.
            Value::Int(v) => {
                i64::try_from(v).map_or_else(|_| Kind::Int128(v.to_string()), Kind::Int)
            }
            Value::UInt(v) => {
                u64::try_from(v).map_or_else(|_| Kind::Uint128(v.to_string()), Kind::Uint)
            }
            Value::Float(f) => Kind::Float(f),
            Value::Bool(b) => Kind::Bool(b),
            Value::Char(c) => Kind::Char(u32::from(c)),
            Value::Str { text, truncated } => Kind::Str(pv::Str { text, truncated }),
            Value::Struct { name, fields } => Kind::Struct(pv::Struct {
                name,
                fields: fields_to_proto(fields),
            }),
            Value::Array { items, total } => Kind::Array(pv::Array {
                items: items.into_iter().map(Into::into).collect(),
                total,
            }),
            Value::Pointer { address, target } => Kind::Pointer(Box::new(pv::Pointer {
                address,
                target: target.map(|t| Box::new((*t).into())),
            })),
            Value::Null => Kind::Null(pv::Empty {}),
            Value::Enum {
                name,
                variant,
                fields,
            } => Kind::Enum(pv::Enum {
                name,
                variant,
                fields: fields_to_proto(fields),
            }),
            Value::Interface { type_name, value } => Kind::Interface(Box::new(pv::Interface {
                type_name,
                value: value.map(|v| Box::new((*v).into())),
            })),
            Value::Unit => Kind::Unit(pv::Empty {}),
            Value::OptimizedOut => Kind::OptimizedOut(pv::Empty {}),
            Value::Unavailable { reason } => Kind::Unavailable(pv::Unavailable { reason }),
            Value::Redacted { rule } => Kind::Redacted(pv::Redacted { rule }),
        };
        v1::Value { kind: Some(kind) }
    }
}

impl TryFrom<v1::Value> for Value {
    type Error = ConvertError;

    fn try_from(value: v1::Value) -> Result<Self, ConvertError> {
        let kind = value.kind.ok_or(ConvertError::missing("Value.kind"))?;
        Ok(match kind {
            Kind::Int(v) => Value::Int(v.into()),
            Kind::Uint(v) => Value::UInt(v.into()),
            Kind::Int128(s) => Value::Int(s.parse().map_err(|_| {
                ConvertError::invalid("Value.int128", format!("{s:?}"), "expected a decimal i128")
            })?),
            Kind::Uint128(s) => Value::UInt(s.parse().map_err(|_| {
                ConvertError::invalid("Value.uint128", format!("{s:?}"), "expected a decimal u128")
            })?),
            Kind::Float(f) => Value::Float(f),
            Kind::Bool(b) => Value::Bool(b),
            Kind::Char(c) => Value::Char(char::from_u32(c).ok_or_else(|| {
                ConvertError::invalid("Value.char", c, "expected a Unicode scalar value")
            })?),
            Kind::Str(s) => Value::Str {
                text: s.text,
                truncated: s.truncated,
            },
            Kind::Struct(s) => Value::Struct {
                name: s.name,
                fields: fields_from_proto(s.fields)?,
            },
            Kind::Array(a) => Value::Array {
                items: a
                    .items
                    .into_iter()
                    .map(Value::try_from)
                    .collect::<Result<_, _>>()?,
                total: a.total,
            },
            Kind::Pointer(p) => Value::Pointer {
                address: p.address,
                target: boxed(p.target)?,
            },
            Kind::Null(pv::Empty {}) => Value::Null,
            Kind::Enum(e) => Value::Enum {
                name: e.name,
                variant: e.variant,
                fields: fields_from_proto(e.fields)?,
            },
            Kind::Interface(i) => Value::Interface {
                type_name: i.type_name,
                value: boxed(i.value)?,
            },
            Kind::Unit(pv::Empty {}) => Value::Unit,
            Kind::OptimizedOut(pv::Empty {}) => Value::OptimizedOut,
            Kind::Unavailable(u) => Value::Unavailable { reason: u.reason },
            Kind::Redacted(r) => Value::Redacted { rule: r.rule },
        })
    }
}

/// An optional nested value (pointer target, interface value): unset stays `None`.
fn boxed(value: Option<Box<v1::Value>>) -> Result<Option<Box<Value>>, ConvertError> {
    value.map(|v| Value::try_from(*v).map(Box::new)).transpose()
}

fn fields_to_proto(fields: Vec<(String, Value)>) -> Vec<v1::Field> {
    fields
        .into_iter()
        .map(|(name, value)| v1::Field {
            name,
            value: Some(value.into()),
        })
        .collect()
}

fn fields_from_proto(fields: Vec<v1::Field>) -> Result<Vec<(String, Value)>, ConvertError> {
    fields
        .into_iter()
        .map(|f| {
            let value = f.value.ok_or(ConvertError::missing("Field.value"))?;
            Ok((f.name, value.try_into()?))
        })
        .collect()
}

impl From<VarKind> for v1::VarKind {
    fn from(kind: VarKind) -> Self {
        match kind {
            VarKind::Arg => v1::VarKind::Arg,
            VarKind::Local => v1::VarKind::Local,
        }
    }
}

impl TryFrom<v1::VarKind> for VarKind {
    type Error = ConvertError;

    fn try_from(kind: v1::VarKind) -> Result<Self, ConvertError> {
        match kind {
            v1::VarKind::Arg => Ok(VarKind::Arg),
            v1::VarKind::Local => Ok(VarKind::Local),
            v1::VarKind::Unspecified => Err(ConvertError::missing("Variable.kind")),
        }
    }
}

impl From<Variable> for v1::Variable {
    fn from(var: Variable) -> Self {
        v1::Variable {
            name: var.name,
            kind: v1::VarKind::from(var.kind).into(),
            type_name: var.type_name,
            value: Some(var.value.into()),
            frame: var.frame,
        }
    }
}

impl TryFrom<v1::Variable> for Variable {
    type Error = ConvertError;

    fn try_from(var: v1::Variable) -> Result<Self, ConvertError> {
        // `var.kind()` would silently turn an unknown number into the default; refuse it.
        let kind = v1::VarKind::try_from(var.kind).map_err(|_| {
            ConvertError::invalid(
                "Variable.kind",
                var.kind,
                "expected VAR_KIND_ARG or VAR_KIND_LOCAL",
            )
        })?;
        Ok(Variable {
            name: var.name,
            kind: kind.try_into()?,
            type_name: var.type_name,
            value: var
                .value
                .ok_or(ConvertError::missing("Variable.value"))?
                .try_into()?,
            frame: var.frame,
        })
    }
}
