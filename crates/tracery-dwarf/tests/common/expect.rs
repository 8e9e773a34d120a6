//! Assertions on decoded values: exact, or honestly missing (never a wrong value).
#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use serde_json::Value as Json;
use tracery_dwarf::{Value, Variable};

/// Replaces every pointer address with "0x?" so values compare across runs (ASLR).
pub fn without_addresses(j: &Json) -> Json {
    match j {
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    if k == "address" && v.is_string() {
                        (k.clone(), Json::String("0x?".into()))
                    } else {
                        (k.clone(), without_addresses(v))
                    }
                })
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.iter().map(without_addresses).collect()),
        other => other.clone(),
    }
}

/// True for `{"unavailable": ...}`.
pub fn is_missing(j: &Json) -> bool {
    matches!(j, Json::Object(m) if m.len() == 1 && m.contains_key("unavailable"))
}

/// Every leaf of `got` equals `want`'s or is `{"unavailable": ..}`; never a different value.
pub fn matches_or_missing(got: &Json, want: &Json) -> Result<(), String> {
    if is_missing(got) {
        return Ok(());
    }
    match (got, want) {
        (Json::Object(g), Json::Object(w)) => {
            let mut gk: Vec<_> = g.keys().collect();
            let mut wk: Vec<_> = w.keys().collect();
            gk.sort();
            wk.sort();
            if gk != wk {
                return Err(format!("keys {gk:?} != {wk:?}"));
            }
            for (k, wv) in w {
                matches_or_missing(&g[k], wv).map_err(|e| format!(".{k}: {e}"))?;
            }
            Ok(())
        }
        (Json::Array(g), Json::Array(w)) => {
            if g.len() != w.len() {
                return Err(format!("{} items != {}", g.len(), w.len()));
            }
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                matches_or_missing(gv, wv).map_err(|e| format!("[{i}]: {e}"))?;
            }
            Ok(())
        }
        (g, w) if g == w => Ok(()),
        (g, w) => Err(format!("{g} where {w} was expected")),
    }
}

/// Asserts a variable's JSON (addresses masked) is exactly `want`.
pub fn exact(v: &Variable, want: Json) {
    assert_eq!(
        without_addresses(&v.value.to_json()),
        want,
        "{} = {:?}",
        v.name,
        v.value
    );
}

/// Asserts a variable's JSON (addresses masked) is `want` where present, and says
/// "unavailable" wherever it is not.
pub fn exact_or_missing(v: &Variable, want: Json) {
    let got = without_addresses(&v.value.to_json());
    if let Err(e) = matches_or_missing(&got, &want) {
        panic!("{}: {e}\n got  {got}\n want {want}", v.name);
    }
}

/// Asserts a value is unavailable with a reason starting with `prefix`.
pub fn unavailable(v: &Variable, prefix: &str) {
    match &v.value {
        Value::Unavailable { reason } if reason.starts_with(prefix) => {}
        other => panic!(
            "{}: expected unavailable ({prefix}..), got {other:?}",
            v.name
        ),
    }
}

/// Asserts the variable is a non-null pointer and returns its address.
pub fn address(v: &Variable) -> u64 {
    match &v.value {
        Value::Pointer { address, .. } if *address != 0 => *address,
        other => panic!("{}: expected a pointer, got {other:?}", v.name),
    }
}
