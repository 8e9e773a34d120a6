//! Fixture binaries, markers and function entries for the resolve, listing and stack tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use tracery_dwarf::{functions, Binary};

/// Opens a fixture variant, building it first if needed.
pub fn open(variant: &str) -> Binary {
    let path = tracery_tests::fixture(variant);
    Binary::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(file name, line)` of a `@probe:` marker.
pub fn marker(name: &str) -> (String, u32) {
    let (path, line) = tracery_tests::marker_line(name);
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    (file, line)
}

/// The 1-based line of the fixture source of `lang` (c, rust, go) that contains `needle`.
pub fn source_line(lang: &str, needle: &str) -> u32 {
    let path = tracery_tests::fixture_source(lang);
    let text = std::fs::read_to_string(&path).unwrap();
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "{needle:?} in {}: {hits:?}", path.display());
    hits[0] as u32
}

/// The entry address of the one function named exactly `name`.
pub fn entry(b: &Binary, name: &str) -> u64 {
    let found: Vec<_> = functions(b, Some(name))
        .into_iter()
        .filter(|f| f.name == name)
        .collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0].address.0
}
