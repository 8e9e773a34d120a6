//! Standard-library values through the real kernel capture (the uprobe and its fetch plan,
//! with the dynamic-length flags that read hashbrown tables), compared with the program's
//! own `{:?}` (crates/tracery-dwarf/tests/programs/collections.rs, a debug build).
//!
//! Normalization as in tracery-dwarf's differential_rust.rs: maps and sets compared entry by
//! entry as sets of `name[{key:?}]={value:?}` lines plus `name.len=N`; other values as whole
//! `{:?}` lines; references by their targets. The 100,000-entry map is compared by length
//! and must say "N of 100000 shown". `shared`'s wrappers: an `Arc`/`Rc` is compared by its
//! value, the `borrow` and `locked` fields `{:?}` does not show are dropped, and std's
//! `, ..` after a lock's fields is removed; the state is then checked on its own (two
//! strong handles and one `Weak`, one shared borrow, one reader).
//!
//! A second stop (`@ordered`, its own run) holds `BTreeMap`s, `Duration`, `SystemTime` and
//! trait objects; Tracery writes `dyn Concrete ` before a trait object's value, which is
//! taken out before the comparison. Each stop compares only the lines of its variables.

#[path = "common/one_hit.rs"]
mod one_hit;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use one_hit::one_hit;
use tracery_dwarf::{CaptureLimits, SourceLanguage, Value};

/// The fixture, built once per test process (both tests run it).
fn program() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let src = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tracery-dwarf/tests/programs/collections.rs");
            let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("std-values-collections");
            let status = Command::new("rustc")
                .args(["--edition", "2021", "-g", "-o"])
                .arg(&out)
                .arg(&src)
                .status()
                .expect("rustc");
            assert!(status.success(), "building {}", src.display());
            out
        })
        .clone()
}

/// The 1-based line of the fixture holding `marker` (`@here`, `@ordered`: one stop each).
fn marker_line(marker: &str) -> u32 {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tracery-dwarf/tests/programs/collections.rs");
    let text = std::fs::read_to_string(src).unwrap();
    text.lines().position(|l| l.contains(marker)).unwrap() as u32 + 1
}

fn deref(v: &Value) -> &Value {
    match v {
        Value::Pointer {
            target: Some(t), ..
        } => deref(t),
        other => other,
    }
}

/// `value` without what `{:?}` does not show (see the module docs).
fn without_state(v: &Value) -> Value {
    match v {
        Value::Struct { name, fields } => {
            if name == "alloc::sync::Arc" || name == "alloc::rc::Rc" {
                if let Some((_, inner)) = fields.iter().find(|(n, _)| n == "value") {
                    return without_state(inner);
                }
            }
            Value::Struct {
                name: name.clone(),
                fields: fields
                    .iter()
                    .filter(|(n, _)| n != "borrow" && n != "locked")
                    .map(|(n, f)| (n.clone(), without_state(f)))
                    .collect(),
            }
        }
        Value::Enum {
            name,
            variant,
            fields,
        } => Value::Enum {
            name: name.clone(),
            variant: variant.clone(),
            fields: fields
                .iter()
                .map(|(n, f)| (n.clone(), without_state(f)))
                .collect(),
        },
        other => other.clone(),
    }
}

/// The wrappers' state as the kernel captured it at the hit.
fn check_state(vars: &[tracery_dwarf::Variable]) {
    let shared = deref(&vars.iter().find(|v| v.name == "shared").unwrap().value);
    let at = |path: &str| {
        path.split('.').fold(shared, |v, name| match v {
            Value::Struct { fields, .. } => {
                &fields
                    .iter()
                    .find(|(n, _)| n == name)
                    .unwrap_or_else(|| panic!("no {name} in {v:?}"))
                    .1
            }
            other => panic!("{name} of a non-struct {other:?}"),
        })
    };
    let text = |s: &str| Value::Str {
        text: s.into(),
        truncated: false,
    };
    for (path, want) in [
        ("counter.strong", Value::UInt(2)),
        ("counter.weak", Value::UInt(1)),
        ("counter.value.locked", Value::Bool(false)),
        ("one.strong", Value::UInt(1)),
        ("cache.borrow", text("1 shared borrow")),
        ("lock.locked", text("1 reader")),
    ] {
        assert_eq!(at(path), &want, "{path} in {shared:#?}");
    }
}

/// Runs the fixture, stops it at `marker` through the real uprobe and fetch plan, and
/// returns the lines it printed for the variables captured there, the same lines rendered
/// from the capture (normalized as the module docs say), and the variables.
fn capture(
    marker: &str,
    limits: &CaptureLimits,
) -> (
    BTreeSet<String>,
    BTreeSet<String>,
    Vec<tracery_dwarf::Variable>,
) {
    let exe = program();
    let printed_file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "std-values-printed-{}",
        marker.trim_start_matches('@')
    ));
    let mut cmd = Command::new(&exe);
    cmd.arg(&printed_file);
    let location = format!("collections.rs:{}", marker_line(marker));
    let (snap, mut child) = one_hit(cmd, &location, limits);
    let _ = child.wait();

    // The program prints every value; this stop captures some of them.
    let names: BTreeSet<&str> = snap.variables.iter().map(|v| v.name.as_str()).collect();
    let printed: BTreeSet<String> = std::fs::read_to_string(&printed_file)
        .unwrap()
        .lines()
        .filter(|l| names.contains(l.split(['=', '[', '.']).next().unwrap_or("")))
        .map(|l| l.replace(", .. }", " }"))
        .collect();
    let rust = SourceLanguage::Rust.language();
    let mut ours = BTreeSet::new();
    for v in &snap.variables {
        let value = deref(&v.value);
        match value.as_collection() {
            Some(c) => {
                let len = c.total.unwrap_or(c.items.len() as u64);
                ours.insert(format!("{}.len={len}", v.name));
                // Cut by the caps: checked on their own.
                if v.name == "big" || v.name == "deep" {
                    continue;
                }
                for e in c.items {
                    ours.insert(match e {
                        Value::Struct { fields, .. } if !c.set => format!(
                            "{}[{}]={}",
                            v.name,
                            rust.render(&fields[0].1).flat(),
                            rust.render(&fields[1].1).flat()
                        ),
                        other => format!("{}[{}]", v.name, rust.render(other).flat()),
                    });
                }
            }
            None => {
                let value = without_state(value);
                let line = format!("{}={}", v.name, rust.render(&value).flat());
                ours.insert(without_dyn(&line));
            }
        }
    }
    (printed, ours, snap.variables)
}

/// `line` without the `dyn collections::Circle ` written before a trait object's value.
fn without_dyn(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("dyn ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 4..];
        rest = after.find(' ').map_or("", |j| &after[j + 1..]);
    }
    out.push_str(rest);
    out
}

/// 64-byte strings: every string here is shorter, and the 8 KiB per-hit data budget then
/// holds every value (each string reserves its cap), as in differential_rust.
fn limits() -> CaptureLimits {
    CaptureLimits {
        max_string: 64,
        ..CaptureLimits::default()
    }
}

#[test]
fn rust_std_values_captured_in_the_kernel_match_debug_output() {
    if !tracery_tests::is_root() {
        println!("SKIPPED: attaching uprobes needs root");
        return;
    }
    let limits = limits();
    let (printed, ours, vars) = capture("@here", &limits);
    assert_eq!(
        printed, ours,
        "left: the program's {{:?}}, right: the kernel capture: {vars:#?}"
    );
    check_state(&vars);
    let big = vars.iter().find(|v| v.name == "big").expect("big captured");
    let c = deref(&big.value).as_collection().expect("big is a map");
    let text = SourceLanguage::Rust
        .language()
        .render(deref(&big.value))
        .flat();
    let shown = c.items.len();
    assert!(shown > 0 && shown <= limits.max_elements as usize, "{text}");
    assert_eq!(c.total, Some(100_000));
    assert!(
        text.ends_with(&format!("... ({shown} of 100000 shown)}}")),
        "{text}"
    );
}

/// `BTreeMap`s and a `BTreeSet` walked by the kernel's `BTree` op (one level, two levels,
/// and a three-level map of 1,000 entries the node budget cuts: a prefix in key order and
/// "of 1000"), `Duration`, `SystemTime` and trait objects.
#[test]
fn ordered_maps_walked_in_the_kernel_match_debug_output() {
    if !tracery_tests::is_root() {
        println!("SKIPPED: attaching uprobes needs root");
        return;
    }
    let (printed, ours, vars) = capture("@ordered", &limits());
    assert!(printed.contains("deep.len=1000"), "{printed:?}");
    assert_eq!(
        printed, ours,
        "left: the program's {{:?}}, right: the kernel capture: {vars:#?}"
    );
    let deep = vars
        .iter()
        .find(|v| v.name == "deep")
        .expect("deep captured");
    let c = deref(&deep.value).as_collection().expect("deep is a map");
    assert_eq!(c.total, Some(1000));
    assert!(c.items.len() > 11, "{:?}", deep.value);
    let rust = SourceLanguage::Rust.language();
    for (i, e) in c.items.iter().enumerate() {
        assert_eq!(
            rust.render(e).flat(),
            format!("({i}, {})", i + 1),
            "entry {i}"
        );
    }
}
