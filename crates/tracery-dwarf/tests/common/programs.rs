//! Small test programs of this crate (tests/programs), built on first use.
#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
};

fn programs_dir() -> PathBuf {
    // Cargo's run-time value first: a cached test binary may come from another checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).into(),
            PathBuf::from,
        )
        .join("tests/programs")
}

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("tracery-dwarf-programs")
}

/// Builds program `name` (`shapes`, `goiface`, `goiface-noopt`) once per test process and
/// returns its path. Builds go to a temporary name and are renamed, so concurrent test
/// binaries never run a half-written file.
pub fn build(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let out = out_dir();
    std::fs::create_dir_all(&out).unwrap();
    let dest = out.join(name);
    let tmp = out.join(format!("{name}.tmp{}", std::process::id()));
    let src = programs_dir();
    let status = match name {
        "shapes" => Command::new("gcc")
            .args(["-O0", "-g", "-o"])
            .arg(&tmp)
            .arg(src.join("shapes.c"))
            .status(),
        "containers-O0" | "containers-O2" => Command::new("g++")
            .args(["-std=c++17", "-g", &format!("-{}", &name[11..]), "-o"])
            .arg(&tmp)
            .arg(src.join("containers.cpp"))
            .status(),
        "collections-debug" | "collections-release" => {
            let mut c = Command::new("rustc");
            c.args(["--edition", "2021", "-g", "-o"]).arg(&tmp);
            if name.ends_with("release") {
                c.args(["-C", "opt-level=3"]);
            }
            c.arg(src.join("collections.rs")).status()
        }
        "goiface" | "goiface-noopt" | "gomaps" | "gomaps-noopt" | "govalues" | "govalues-noopt" => {
            let dir = name.trim_end_matches("-noopt");
            let mut c = Command::new("go");
            c.current_dir(src.join(dir))
                .env("GOCACHE", out.join("go-cache"))
                .env("GOFLAGS", "-mod=mod")
                .args(["build", "-o"])
                .arg(&tmp);
            if name.ends_with("-noopt") {
                c.arg("-gcflags=all=-N -l");
            }
            c.arg(".").status()
        }
        other => panic!("unknown test program {other}"),
    };
    let status = status.unwrap_or_else(|e| panic!("cannot build {name}: {e}"));
    assert!(status.success(), "building {name} failed");
    std::fs::rename(&tmp, &dest).unwrap();
    built.insert(name.to_string(), dest.clone());
    dest
}

/// The 1-based line of `file` (under tests/programs) holding the `@here` marker.
pub fn here(file: &str) -> u32 {
    marker_line(file, "@here")
}

/// The 1-based line of `file` (under tests/programs) holding `marker` (exactly one).
pub fn marker_line(file: &str, marker: &str) -> u32 {
    let text = std::fs::read_to_string(programs_dir().join(file)).unwrap();
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(found.len(), 1, "{marker} in {file}: {found:?}");
    found[0] as u32
}
