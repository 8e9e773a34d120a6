//! Differential test: Go maps as Tracery captures them, against the program's own `%v`
//! (tests/programs/gomaps), optimized and with `-N -l`.
//!
//! Normalization, documented here as the only liberty taken:
//! - Go leaves map order unspecified (and randomizes iteration), so each map is compared
//!   as a set of lines `name[{key %v}]={value %v}` plus `name.len={len}`;
//! - a map may show fewer entries than it holds only when it says so ("N of M shown": a cap
//!   cut its bucket arrays or overflow chains), and then exactly that many printed entries
//!   may be absent; every entry shown must be one the program printed; where a test says a
//!   map is complete, none may be absent;
//! - the program prints every map; each site compares the maps of its own variables;
//! - Tracery's values are written in `%v` syntax by [`go_v`]: strings bare, integers in
//!   decimal, slices as `[a b c]` (Tracery's own Go rendering quotes strings and separates
//!   items with commas, as Delve does; the values are the same).

#[path = "common/programs.rs"]
mod programs;
#[path = "common/snapshot.rs"]
mod snapshot;

use std::collections::BTreeSet;

use snapshot::emulator::{capture_with, Program, Run};
use tracery_dwarf::{compile_plan, decode, resolve, Binary, CaptureLimits, Value, Variable};

/// `fmt`'s `%v` of the values these tests hold.
fn go_v(v: &Value) -> String {
    match v {
        Value::Str { text, .. } => text.clone(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array { items, .. } => {
            let parts: Vec<String> = items.iter().map(go_v).collect();
            format!("[{}]", parts.join(" "))
        }
        other => format!("<{other:?}>"),
    }
}

/// The 1-based line of gomaps/main.go holding `marker` (`@here`, `@overflow`, `@growing`).
fn line_of(marker: &str) -> u32 {
    programs::marker_line("gomaps/main.go", marker)
}

/// Stops `variant` at the line marked `marker` and returns the lines the program printed
/// for the variables there, Tracery's lines for them, and the decoded variables.
fn run(
    variant: &str,
    marker: &str,
    limits: &CaptureLimits,
) -> (BTreeSet<String>, BTreeSet<String>, Vec<Variable>) {
    let path = programs::build(variant);
    let binary = Binary::open(&path).unwrap();
    let site = resolve(&binary, &format!("main.go:{}", line_of(marker)))
        .unwrap()
        .remove(0);
    let plan = compile_plan(&binary, site.address, limits).unwrap();
    let out = std::env::temp_dir().join(format!("tracery-gomaps-{variant}-{}", std::process::id()));
    let out_arg = out.to_str().unwrap().to_string();
    let run = Run {
        program: Program::Path(&path),
        args: &[&out_arg],
        start_line: true,
    };
    let hit = capture_with(&run, &binary, plan.address(), |bias| plan.relocate(bias));
    let vars = decode(&binary, &plan, &hit.header, &hit.data);
    // The program prints every map; keep those of the variables at this site.
    let printed: BTreeSet<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter(|l| {
            vars.iter().any(|v| {
                l.starts_with(&format!("{}[", v.name)) || l.starts_with(&format!("{}.", v.name))
            })
        })
        .map(str::to_string)
        .collect();
    let _ = std::fs::remove_file(&out);
    let mut ours = BTreeSet::new();
    for v in &vars {
        let Some(c) = v.value.as_collection() else {
            ours.insert(format!("{}=<not a map: {:?}>", v.name, v.value));
            continue;
        };
        let len = c.total.unwrap_or(c.items.len() as u64);
        ours.insert(format!("{}.len={len}", v.name));
        for e in c.items {
            if let Value::Struct { fields, .. } = e {
                ours.insert(format!(
                    "{}[{}]={}",
                    v.name,
                    go_v(&fields[0].1),
                    go_v(&fields[1].1)
                ));
            }
        }
    }
    (printed, ours, vars)
}

/// 32 elements per collection (four buckets per map): the default 64 reserves eight
/// buckets per map plus a payload per cell, and the three maps' strings and slices then no
/// longer fit in one hit's data area (they would show "capture budget exhausted").
fn limits_32() -> CaptureLimits {
    CaptureLimits {
        max_elements: 32,
        ..CaptureLimits::default()
    }
}

/// Entries of maps that say "N of M shown", summed.
fn unshown(vars: &[Variable]) -> u64 {
    vars.iter()
        .filter_map(|v| v.value.as_collection())
        .map(|c| c.total.map_or(0, |t| t - c.items.len() as u64))
        .sum()
}

/// Tracery's lines match the program's, except that a map saying "N of M shown" may miss
/// exactly its unshown entries.
fn check_at(variant: &str, marker: &str, limits: &CaptureLimits) -> Vec<Variable> {
    let (printed, ours, vars) = run(variant, marker, limits);
    let missing: Vec<_> = printed.difference(&ours).collect();
    let extra: Vec<_> = ours.difference(&printed).collect();
    let missing_entries = missing.iter().filter(|l| !l.contains(".len=")).count() as u64;
    let only_unshown =
        missing_entries == unshown(&vars) && missing.iter().all(|l| !l.contains(".len="));
    assert!(
        (missing.is_empty() || only_unshown) && extra.is_empty(),
        "{variant} {marker}: printed by the program but not by Tracery: {missing:#?}\n\
         rendered by Tracery but not printed: {extra:#?}\nvalues: {vars:#?}"
    );
    vars
}

fn check(variant: &str) {
    check_at(variant, "@here", &limits_32());
}

/// Every entry of the map `name` is shown: no "N of M shown".
fn assert_complete(variant: &str, vars: &[Variable], name: &str) {
    let v = vars.iter().find(|v| v.name == name).unwrap();
    let c = v.value.as_collection().unwrap();
    assert_eq!(
        c.total, None,
        "{variant}: {name} is partial: {:#?}",
        v.value
    );
}

/// A `map[string][]int` of 13 entries in two buckets, the first with an overflow bucket:
/// the overflow bucket's entries are read too. Not at the default caps: 64 elements plan
/// eight buckets per array, and their cells' strings and slices (an op each) use up a
/// hit's 64 ops before the overflow bucket's cells. 16 elements (two buckets) with 16-byte
/// strings leave ops and data for all 24 cells.
#[test]
fn go_map_overflow_buckets_are_read() {
    let limits = CaptureLimits {
        max_elements: 16,
        max_string: 16,
        ..CaptureLimits::default()
    };
    for variant in ["gomaps", "gomaps-noopt"] {
        let vars = check_at(variant, "@overflow", &limits);
        assert_complete(variant, &vars, "over");
    }
}

/// A map caught while it doubles from four buckets to eight: the entries of old buckets
/// not yet evacuated are read, each entry once, at the default caps.
#[test]
fn go_map_growing_old_buckets_are_read() {
    for variant in ["gomaps", "gomaps-noopt"] {
        let vars = check_at(variant, "@growing", &CaptureLimits::default());
        assert_complete(variant, &vars, "growing");
    }
}

/// Capped to two buckets per array, the growing map says how many of its 27 entries it
/// shows, and every one it shows is the program's.
#[test]
fn go_map_cut_by_caps_says_how_many_it_shows() {
    let limits = CaptureLimits {
        max_elements: 16,
        ..CaptureLimits::default()
    };
    for variant in ["gomaps", "gomaps-noopt"] {
        let vars = check_at(variant, "@growing", &limits);
        let c = vars[0].value.as_collection().unwrap();
        assert_eq!(c.total, Some(27), "{variant}: {:#?}", vars[0].value);
        assert!(c.items.len() < 27, "{variant}");
        assert!(unshown(&vars) > 0, "{variant}");
    }
}

#[test]
fn go_maps_match_percent_v() {
    check("gomaps");
}

#[test]
fn go_maps_match_percent_v_without_optimizations() {
    check("gomaps-noopt");
}

/// `%v` of the non-map values of tests/programs/govalues, from Tracery's value tree:
/// an interface shows its value; an error its text (`errorString.s`, `wrapError.msg`);
/// times, durations and channels their leaf text. Channels: the program prints
/// `len cap state`, normalized from Tracery's `chan T (len L, cap C, state)`.
fn go_v_value(v: &Value) -> String {
    match v {
        Value::Interface {
            value: Some(inner), ..
        } => go_v_value(inner),
        Value::Pointer {
            target: Some(t), ..
        } => match t.as_ref() {
            Value::Struct { name, fields } if name == "errors.errorString" => go_v(&fields[0].1),
            Value::Struct { name, fields } if name == "fmt.wrapError" => go_v(&fields[0].1),
            other => format!("&{}", go_v_value(other)),
        },
        Value::Struct { fields, .. } => {
            let parts: Vec<String> = fields.iter().map(|(_, f)| go_v_value(f)).collect();
            format!("{{{}}}", parts.join(" "))
        }
        Value::Enum { variant, .. } if variant.starts_with("chan ") => {
            let inner = variant
                .split_once('(')
                .map_or("", |(_, r)| r.trim_end_matches(')'));
            inner
                .replace("len ", "")
                .replace("cap ", "")
                .replace(',', "")
        }
        Value::Enum { variant, .. } => variant.clone(),
        other => go_v(other),
    }
}

#[test]
fn go_values_match_percent_v() {
    for variant in ["govalues", "govalues-noopt"] {
        let path = programs::build(variant);
        let binary = Binary::open(&path).unwrap();
        let here = programs::here("govalues/main.go");
        let site = resolve(&binary, &format!("main.go:{here}"))
            .unwrap()
            .remove(0);
        let limits = CaptureLimits {
            max_elements: 32,
            ..CaptureLimits::default()
        };
        let plan = compile_plan(&binary, site.address, &limits).unwrap();
        let out = std::env::temp_dir().join(format!("tracery-{variant}-{}", std::process::id()));
        let out_arg = out.to_str().unwrap().to_string();
        let run = Run {
            program: Program::Path(&path),
            args: &[&out_arg],
            start_line: true,
        };
        let hit = capture_with(&run, &binary, plan.address(), |bias| plan.relocate(bias));
        let vars = decode(&binary, &plan, &hit.header, &hit.data);
        let printed = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        for name in ["held", "err", "wrapped", "at", "wait", "jobs", "done"] {
            let want = printed
                .lines()
                .find(|l| l.starts_with(&format!("{name}=")))
                .unwrap();
            let v = vars.iter().find(|v| v.name == name).unwrap();
            // Optimized code may drop a value by this line; DWARF then says so, and only
            // the optimized build may show it. `-N -l` must show everything.
            if variant == "govalues" && v.value == Value::OptimizedOut {
                continue;
            }
            let ours = format!("{name}={}", go_v_value(&v.value));
            assert_eq!(ours, want, "{variant}: {:#?}", v.value);
        }
    }
}
