//! Rust standard-library wrappers as their users read them: the value inside `Cell`,
//! `UnsafeCell`, atomics and `NonZero*`, and `Rc`/`Arc`, `RefCell`, `Mutex` and `RwLock` as
//! their value plus their state (counts, borrow, lock, poison).
//!
//! Everything here rewrites values already decoded from bytes the kernel captured at the
//! hit (an `Arc`'s target is one followed pointer of the plan), so the state shown is the
//! state at the instant of the hit. Field names are std's as of Rust 1.80+; a layout that
//! does not match is left as the plain struct.

use crate::value::Value;

/// `Mutex` from `std::sync::poison::mutex::Mutex<alloc::vec::Vec<u32>>`.
fn short(name: &str) -> &str {
    let generic = name.find('<').unwrap_or(name.len());
    match name[..generic].rfind("::") {
        Some(i) => &name[i + 2..generic],
        None => &name[..generic],
    }
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn take(fields: &mut Vec<(String, Value)>, name: &str) -> Option<Value> {
    let i = fields.iter().position(|(n, _)| n == name)?;
    Some(fields.remove(i).1)
}

/// The integer at the bottom of single-field wrappers (`Cell<isize>`, `AtomicU32`).
fn scalar(v: &Value) -> Option<i128> {
    match v {
        Value::Int(x) => Some(*x),
        Value::UInt(x) => i128::try_from(*x).ok(),
        Value::Bool(b) => Some(i128::from(*b)),
        Value::Struct { fields, .. } if fields.len() == 1 => scalar(&fields[0].1),
        _ => None,
    }
}

/// Rewrites a decoded Rust struct named `name`; anything not recognized comes back as is.
///
/// The wrappers it recognizes are named without their generic arguments
/// (`std::sync::poison::mutex::Mutex`), as `{:?}` names them; the variable's type keeps them.
pub(super) fn sugar(name: &str, mut fields: Vec<(String, Value)>) -> Value {
    let plain = |fields| Value::Struct {
        name: name.to_string(),
        fields,
    };
    let bare = &name[..name.find('<').unwrap_or(name.len())];
    match short(name) {
        // `{:?}` of these shows the value they wrap.
        "UnsafeCell" | "SyncUnsafeCell" | "NonZero" | "ManuallyDrop" if fields.len() == 1 => {
            fields.remove(0).1
        }
        s if s.starts_with("NonZero") && s.ends_with("Inner") && fields.len() == 1 => {
            fields.remove(0).1
        }
        "AtomicBool" if fields.len() == 1 => match scalar(&fields[0].1) {
            Some(x) => Value::Bool(x != 0),
            None => plain(fields),
        },
        s if s.starts_with("Atomic") && fields.len() == 1 && scalar(&fields[0].1).is_some() => {
            fields.remove(0).1
        }
        "Cell" if name.starts_with("core::cell::") => Value::Struct {
            name: bare.to_string(),
            fields,
        },
        // `Duration { secs, nanos: Nanoseconds(u32) }`: the newtype shows as its number.
        "Nanoseconds" if name.starts_with("core::num::") && fields.len() == 1 => fields.remove(0).1,
        "SystemTime" if name == "std::time::SystemTime" => system_time(name, fields),
        "RefCell" => ref_cell(bare, fields),
        "Mutex" | "RwLock" if name.starts_with("std::sync::") => lock(bare, fields),
        "Arc" | "Rc" if name.starts_with("alloc::") => counted(bare, fields),
        _ => plain(fields),
    }
}

/// `SystemTime(sys::SystemTime { t: Timespec { tv_sec, tv_nsec } })` as `{:?}` shows it:
/// `SystemTime { tv_sec, tv_nsec }` (Unix).
fn system_time(name: &str, fields: Vec<(String, Value)>) -> Value {
    let timespec = match fields.as_slice() {
        [(_, Value::Struct { fields: sys, .. })] => match field(sys, "t") {
            Some(Value::Struct { fields: t, .. }) => field(t, "tv_sec").zip(field(t, "tv_nsec")),
            _ => None,
        },
        _ => None,
    };
    match timespec {
        Some((sec, nsec)) => Value::Struct {
            name: name.to_string(),
            fields: vec![
                ("tv_sec".into(), sec.clone()),
                ("tv_nsec".into(), nsec.clone()),
            ],
        },
        None => Value::Struct {
            name: name.to_string(),
            fields,
        },
    }
}

/// `RefCell { value, borrow }`: `borrow` says "unborrowed", "N shared borrows" or
/// "mutably borrowed" (std's counter: 0, N > 0, negative).
fn ref_cell(name: &str, mut fields: Vec<(String, Value)>) -> Value {
    let state = field(&fields, "borrow").and_then(scalar);
    let Some((state, value)) = state.and_then(|s| Some((s, take(&mut fields, "value")?))) else {
        return Value::Struct {
            name: name.to_string(),
            fields,
        };
    };
    let borrow = match state {
        0 => "unborrowed".to_string(),
        1 => "1 shared borrow".to_string(),
        n if n > 0 => format!("{n} shared borrows"),
        _ => "mutably borrowed".to_string(),
    };
    Value::Struct {
        name: name.to_string(),
        fields: vec![
            ("value".into(), value),
            (
                "borrow".into(),
                Value::Str {
                    text: borrow,
                    truncated: false,
                },
            ),
        ],
    }
}

/// std's futex `RwLock` state: the low 30 bits count readers, all ones is write-locked.
const RW_MASK: i128 = (1 << 30) - 1;

/// `Mutex { data, poisoned, locked }` and `RwLock { data, poisoned, locked }`, where an
/// `RwLock`'s `locked` says "unlocked", "write-locked" or "N readers".
fn lock(name: &str, mut fields: Vec<(String, Value)>) -> Value {
    let poisoned = field(&fields, "poison").and_then(scalar);
    let inner = field(&fields, "inner").cloned();
    let state = match &inner {
        // sys::Mutex { futex } or sys::RwLock { state, writer_notify }: the first word.
        Some(Value::Struct { fields: f, .. }) => f.first().and_then(|(_, v)| scalar(v)),
        _ => None,
    };
    let (Some(poisoned), Some(state)) = (poisoned, state) else {
        return Value::Struct {
            name: name.to_string(),
            fields,
        };
    };
    let Some(data) = take(&mut fields, "data") else {
        return Value::Struct {
            name: name.to_string(),
            fields,
        };
    };
    let locked = if short(name) == "Mutex" {
        // futex: 0 unlocked, 1 locked, 2 locked with waiters.
        Value::Bool(state != 0)
    } else {
        let readers = state & RW_MASK;
        let text = match readers {
            0 => "unlocked".to_string(),
            RW_MASK => "write-locked".to_string(),
            1 => "1 reader".to_string(),
            n => format!("{n} readers"),
        };
        Value::Str {
            text,
            truncated: false,
        }
    };
    Value::Struct {
        name: name.to_string(),
        fields: vec![
            ("data".into(), data),
            ("poisoned".into(), Value::Bool(poisoned != 0)),
            ("locked".into(), locked),
        ],
    }
}

/// The first followed pointer's target inside `v` (`ptr: NonNull { pointer }`).
fn pointee(v: &Value, depth: usize) -> Option<&Value> {
    match v {
        Value::Pointer {
            target: Some(t), ..
        } => Some(t),
        Value::Struct { fields, .. } if depth < 4 => {
            fields.iter().find_map(|(_, f)| pointee(f, depth + 1))
        }
        _ => None,
    }
}

/// `Arc { strong, weak, value }` / `Rc { .. }`: `weak` counts `Weak` handles, as
/// `Arc::weak_count` does (std keeps one extra weak reference for all strong ones).
fn counted(name: &str, fields: Vec<(String, Value)>) -> Value {
    let inner = fields.iter().find_map(|(_, f)| pointee(f, 0));
    let parts = match inner {
        Some(Value::Struct { fields: f, .. }) => {
            let strong = field(f, "strong").and_then(scalar);
            let weak = field(f, "weak").and_then(scalar);
            let value = field(f, "data").or_else(|| field(f, "value"));
            strong.zip(weak).zip(value.cloned())
        }
        _ => None,
    };
    let Some(((strong, weak), value)) = parts else {
        return Value::Struct {
            name: name.to_string(),
            fields,
        };
    };
    let count = |n: i128| Value::UInt(u128::try_from(n).unwrap_or(0));
    Value::Struct {
        name: name.to_string(),
        fields: vec![
            ("strong".into(), count(strong)),
            ("weak".into(), count((weak - 1).max(0))),
            ("value".into(), value),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, fields: Vec<(&str, Value)>) -> Value {
        Value::Struct {
            name: name.into(),
            fields: fields
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
        }
    }

    #[test]
    fn ref_cell_borrow_states() {
        let cell = |n: i128| {
            sugar(
                "core::cell::RefCell<u8>",
                vec![
                    (
                        "borrow".into(),
                        s("core::cell::Cell<isize>", vec![("value", Value::Int(n))]),
                    ),
                    ("value".into(), Value::UInt(5)),
                ],
            )
        };
        let borrow = |v: Value| match v {
            Value::Struct { fields, .. } => fields[1].1.clone(),
            _ => Value::Unit,
        };
        for (n, want) in [
            (0, "unborrowed"),
            (2, "2 shared borrows"),
            (-1, "mutably borrowed"),
        ] {
            assert_eq!(
                borrow(cell(n)),
                Value::Str {
                    text: want.into(),
                    truncated: false
                }
            );
        }
    }

    #[test]
    /// Fields kept as they were, under the name without generics.
    fn unrecognized_layouts_stay_plain() {
        let v = sugar(
            "std::sync::poison::mutex::Mutex<u8>",
            vec![("data".into(), Value::UInt(1))],
        );
        assert_eq!(
            v,
            s(
                "std::sync::poison::mutex::Mutex",
                vec![("data", Value::UInt(1))]
            )
        );
    }
}
