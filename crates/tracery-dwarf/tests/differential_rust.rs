//! Differential test: Rust standard-library values as Tracery captures and renders them,
//! against the program's own `{:?}` (tests/programs/collections.rs), debug and release.
//!
//! Normalization, the only liberty taken: a `HashMap` or `HashSet` is compared entry by
//! entry as a set of lines (`name[{key:?}]={value:?}`, `name[{item:?}]`) plus its length,
//! because Rust leaves their order unspecified; every other value is compared as the whole
//! `{:?}` line. A reference is compared by its target (`{:?}` of `&T` is `{:?}` of `T`).
//! The 100,000-entry map is compared by its length only; it must show exactly the cap's
//! number of entries at most and say that it holds 100,000.
//!
//! `shared` holds `Arc<Mutex<..>>`, `RefCell`, `Cell`, `Rc`, `RwLock` and `NonZero*`.
//! Tracery shows state `{:?}` does not (an `Arc`'s counts, a `RefCell`'s borrow, a lock's
//! holder), so before the line comparison an `Arc`/`Rc` is replaced by its value, the
//! `borrow` and `locked` fields are dropped, and the `, ..` std prints after a lock's
//! fields is removed from the program's line. The state itself is then checked against
//! what the program holds at the stop: two strong handles and one `Weak`, one shared
//! borrow, one reader.

#[path = "common/programs.rs"]
mod programs;
#[path = "common/snapshot.rs"]
mod snapshot;

use std::collections::BTreeSet;

use snapshot::emulator::{capture_with, Program, Run};
use tracery_dwarf::{
    compile_plan, decode, resolve, Binary, CaptureLimits, Language, SourceLanguage, Value,
};

/// The printed lines of the program, and the rendered lines of the capture.
fn run(
    variant: &str,
    line: u32,
) -> (
    BTreeSet<String>,
    BTreeSet<String>,
    Vec<tracery_dwarf::Variable>,
) {
    let path = programs::build(variant);
    let binary = Binary::open(&path).unwrap();
    let site = resolve(&binary, &format!("collections.rs:{line}"))
        .unwrap()
        .remove(0);
    let limits = limits();
    let plan = compile_plan(&binary, site.address, &limits).unwrap();
    let out = std::env::temp_dir().join(format!(
        "tracery-collections-{variant}-{}",
        std::process::id()
    ));
    let out_arg = out.to_str().unwrap().to_string();
    let run = Run {
        program: Program::Path(&path),
        args: &[&out_arg],
        start_line: true,
    };
    let hit = capture_with(&run, &binary, plan.address(), |bias| plan.relocate(bias));
    let vars = decode(&binary, &plan, &hit.header, &hit.data);
    // Only the lines of the variables this stop captures.
    let names: BTreeSet<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    let printed: BTreeSet<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter(|l| names.contains(l.split(['=', '[', '.']).next().unwrap_or("")))
        .map(|l| l.replace(", .. }", " }"))
        .collect();
    let _ = std::fs::remove_file(&out);
    let rust = SourceLanguage::Rust.language();
    let mut ours = BTreeSet::new();
    for v in &vars {
        let value = deref(&v.value);
        if let Some(c) = value.as_collection() {
            let len = c.total.unwrap_or(c.items.len() as u64);
            ours.insert(format!("{}.len={len}", v.name));
            if v.name == "big" || v.name == "deep" {
                continue;
            }
            for e in c.items {
                ours.insert(entry_line(rust, &v.name, e, c.set));
            }
        } else {
            let value = without_state(value);
            let line = format!("{}={}", v.name, rust.render(&value).flat());
            ours.insert(without_dyn(&line));
        }
    }
    (printed, ours, vars)
}

/// `line` without the `dyn collections::Circle ` Tracery writes before a trait object's
/// value: `{:?}` of a `Box<dyn Shape>` is the concrete value's.
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

/// `{:?}` of `&T` is `{:?}` of `T`.
fn deref(v: &Value) -> &Value {
    match v {
        Value::Pointer {
            target: Some(t), ..
        } => deref(t),
        other => other,
    }
}

/// `value` with what `{:?}` does not show taken out (see the module docs).
fn without_state(v: &Value) -> Value {
    match v {
        Value::Struct { name, fields } => {
            let counted = name == "alloc::sync::Arc" || name == "alloc::rc::Rc";
            if counted {
                if let Some((_, inner)) = fields.iter().find(|(n, _)| n == "value") {
                    return without_state(inner);
                }
            }
            let fields = fields
                .iter()
                .filter(|(n, _)| n != "borrow" && n != "locked")
                .map(|(n, f)| (n.clone(), without_state(f)))
                .collect();
            Value::Struct {
                name: name.clone(),
                fields,
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

/// Field `path` (dot-separated) of a struct value.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, name| match v {
        Value::Struct { fields, .. } => {
            &fields
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no {name} in {v:?}"))
                .1
        }
        other => panic!("{name} of a non-struct {other:?}"),
    })
}

/// The wrappers' state at the stop (see the module docs).
fn check_state(variant: &str, vars: &[tracery_dwarf::Variable]) {
    let shared = deref(&vars.iter().find(|v| v.name == "shared").unwrap().value);
    let text = |s: &str| Value::Str {
        text: s.into(),
        truncated: false,
    };
    for (path, want) in [
        ("counter.strong", Value::UInt(2)),
        ("counter.weak", Value::UInt(1)),
        ("counter.value.poisoned", Value::Bool(false)),
        ("counter.value.locked", Value::Bool(false)),
        ("one.strong", Value::UInt(1)),
        ("one.weak", Value::UInt(0)),
        ("cache.borrow", text("1 shared borrow")),
        ("lock.locked", text("1 reader")),
        ("lock.poisoned", Value::Bool(false)),
    ] {
        assert_eq!(at(shared, path), &want, "{variant}: {path} in {shared:#?}");
    }
}

fn entry_line(rust: &dyn Language, name: &str, e: &Value, set: bool) -> String {
    match e {
        Value::Struct { fields, .. } if !set && fields.len() == 2 => format!(
            "{name}[{}]={}",
            rust.render(&fields[0].1).flat(),
            rust.render(&fields[1].1).flat()
        ),
        other => format!("{name}[{}]", rust.render(other).flat()),
    }
}

/// The default caps, but 64-byte strings: every string here is shorter, and the 8 KiB
/// per-hit data budget then holds every value (each string reserves its cap).
fn limits() -> CaptureLimits {
    CaptureLimits {
        max_string: 64,
        ..CaptureLimits::default()
    }
}

/// The 1-based line of the `// @ordered` marker in the fixture: the second stop.
fn ordered_line() -> u32 {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/collections.rs");
    let text = std::fs::read_to_string(path).unwrap();
    let i = text
        .lines()
        .position(|l| l.contains("// @ordered"))
        .unwrap();
    i as u32 + 1
}

/// Every line the program printed for the captured variables, and nothing else.
fn compare(
    variant: &str,
    printed: &BTreeSet<String>,
    ours: &BTreeSet<String>,
    vars: &[tracery_dwarf::Variable],
) {
    let missing: Vec<_> = printed.difference(ours).collect();
    let extra: Vec<_> = ours.difference(printed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{variant}: printed by the program but not by Tracery: {missing:#?}\n\
         rendered by Tracery but not printed: {extra:#?}\nvalues: {vars:#?}"
    );
}

/// The second stop: `BTreeMap`/`BTreeSet` (one and two levels, and one the cap cuts),
/// `Duration`, `SystemTime`, `Option<Box<dyn Shape>>` and `&dyn Shape` (two types
/// implement `Shape`: the value is copied as long as the vtable's size word says).
fn check_ordered(variant: &str) {
    let (printed, ours, vars) = run(variant, ordered_line());
    assert!(printed.contains("deep.len=1000"), "{variant}: {printed:?}");
    assert!(
        printed.iter().any(|l| l.starts_with("ordered=")),
        "{variant}: {printed:?}"
    );
    compare(variant, &printed, &ours, &vars);
    check_deep(variant, &vars);
}

fn check(variant: &str) {
    let (printed, ours, vars) = run(variant, programs::here("collections.rs"));
    check_state(variant, &vars);
    let missing: Vec<_> = printed.difference(&ours).collect();
    let extra: Vec<_> = ours.difference(&printed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{variant}: printed by the program but not by Tracery: {missing:#?}\n\
         rendered by Tracery but not printed: {extra:#?}\nvalues: {vars:#?}"
    );
    // The capped map: at most max_elements buckets read, and it says it holds 100,000.
    let big = vars.iter().find(|v| v.name == "big").unwrap();
    let c = deref(&big.value).as_collection().expect("big is a map");
    let cap = CaptureLimits::default().max_elements as usize;
    assert!(
        !c.items.is_empty() && c.items.len() <= cap,
        "{} entries shown",
        c.items.len()
    );
    assert_eq!(c.total, Some(100_000));
    let text = SourceLanguage::Rust
        .language()
        .render(deref(&big.value))
        .flat();
    assert!(
        text.ends_with(&format!("... ({} of 100000 shown)}}", c.items.len())),
        "{text}"
    );
}

#[test]
fn std_values_match_debug_output_in_a_debug_build() {
    check("collections-debug");
}

#[test]
fn std_values_match_debug_output_in_a_release_build() {
    check("collections-release");
}

#[test]
fn ordered_maps_times_and_trait_objects_match_debug_output_in_a_debug_build() {
    check_ordered("collections-debug");
}

#[test]
fn ordered_maps_times_and_trait_objects_match_debug_output_in_a_release_build() {
    check_ordered("collections-release");
}

/// The 1,000-entry `BTreeMap` (three levels of nodes): the walk's byte budget cuts it, so
/// it shows a prefix in key order, `(i, i + 1)` from 0, and says it holds 1,000.
fn check_deep(variant: &str, vars: &[tracery_dwarf::Variable]) {
    let deep = vars.iter().find(|v| v.name == "deep").unwrap();
    let c = deref(&deep.value)
        .as_collection()
        .unwrap_or_else(|| panic!("{variant}: deep is not a map: {:?}", deep.value));
    assert_eq!(c.total, Some(1000), "{variant}: {:?}", deep.value);
    let cap = CaptureLimits::default().max_elements as usize;
    // More than one node holds: the walk went down to the first leaf and on past it.
    assert!(
        c.items.len() > 11 && c.items.len() <= cap,
        "{variant}: {} entries shown",
        c.items.len()
    );
    let rust = SourceLanguage::Rust.language();
    for (i, e) in c.items.iter().enumerate() {
        assert_eq!(
            entry_line(rust, "deep", e, false),
            format!("deep[{i}]={}", i + 1),
            "{variant}: entry {i} out of order"
        );
    }
}
