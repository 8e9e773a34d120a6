//! Go maps through the real kernel capture: a map's overflow buckets (walked by `Chain`
//! ops) and a growing map's old buckets, compared with the program's own `%v`
//! (crates/tracery-dwarf/tests/programs/gomaps). Normalization as in tracery-dwarf's
//! differential_go.rs: each map as a set of `name[{key %v}]={value %v}` lines plus
//! `name.len=N`; each stop compares only the lines of its variables.

#[path = "common/one_hit.rs"]
mod one_hit;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use one_hit::one_hit;
use tracery_dwarf::{CaptureLimits, Value};

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tracery-dwarf/tests/programs/gomaps")
}

/// The fixture, built once per test process.
fn program() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
            let out = tmp.join("go-maps-kernel");
            let status = Command::new("go")
                .current_dir(source())
                .env("GOCACHE", tmp.join("go-cache"))
                .env("GOFLAGS", "-mod=mod")
                .args(["build", "-o"])
                .arg(&out)
                .arg(".")
                .status()
                .expect("go");
            assert!(status.success(), "building gomaps");
            out
        })
        .clone()
}

/// The 1-based line of main.go holding `marker`.
fn marker_line(marker: &str) -> u32 {
    let text = std::fs::read_to_string(source().join("main.go")).unwrap();
    text.lines().position(|l| l.contains(marker)).unwrap() as u32 + 1
}

/// `fmt`'s `%v` of the keys and values these maps hold.
fn go_v(v: &Value) -> String {
    match v {
        Value::Str { text, .. } => text.clone(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Array { items, .. } => {
            let parts: Vec<String> = items.iter().map(go_v).collect();
            format!("[{}]", parts.join(" "))
        }
        other => format!("<{other:?}>"),
    }
}

/// Stops the program at `marker` through the real uprobe and returns the program's lines
/// for the variables there and the same lines from the capture, plus each map's
/// "of M shown" total.
fn capture(
    marker: &str,
    limits: &CaptureLimits,
) -> (BTreeSet<String>, BTreeSet<String>, Vec<Option<u64>>) {
    let printed_file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "go-maps-printed-{}",
        marker.trim_start_matches('@')
    ));
    let mut cmd = Command::new(program());
    cmd.arg(&printed_file);
    let location = format!("main.go:{}", marker_line(marker));
    let (snap, mut child) = one_hit(cmd, &location, limits);
    // The program loops forever: end it.
    let _ = child.kill();
    let _ = child.wait();

    let names: BTreeSet<&str> = snap.variables.iter().map(|v| v.name.as_str()).collect();
    let printed: BTreeSet<String> = std::fs::read_to_string(&printed_file)
        .unwrap()
        .lines()
        .filter(|l| names.contains(l.split(['[', '.']).next().unwrap_or("")))
        .map(str::to_string)
        .collect();
    let mut ours = BTreeSet::new();
    let mut totals = Vec::new();
    for v in &snap.variables {
        let c = v.value.as_collection().expect("a map");
        totals.push(c.total);
        let len = c.total.unwrap_or(c.items.len() as u64);
        ours.insert(format!("{}.len={len}", v.name));
        for e in c.items {
            if let Value::Struct { fields, .. } = e {
                let (k, val) = (go_v(&fields[0].1), go_v(&fields[1].1));
                ours.insert(format!("{}[{k}]={val}", v.name));
            }
        }
    }
    (printed, ours, totals)
}

/// A map whose first bucket overflows (13 entries, two buckets) and a map caught mid-way
/// through doubling: all their entries, each once, as the program prints them.
#[test]
fn go_overflow_and_old_buckets_captured_in_the_kernel_match_percent_v() {
    if !tracery_tests::is_root() {
        println!("SKIPPED: attaching uprobes needs root");
        return;
    }
    // As in differential_go: two buckets per array and short strings leave ops for every
    // cell of the overflowing map.
    let small = CaptureLimits {
        max_elements: 16,
        max_string: 16,
        ..CaptureLimits::default()
    };
    for (marker, limits) in [("@overflow", small), ("@growing", CaptureLimits::default())] {
        let (printed, ours, totals) = capture(marker, &limits);
        assert_eq!(
            printed, ours,
            "{marker}: left the program's %v, right the kernel's"
        );
        assert_eq!(totals, [None], "{marker}");
    }
}
