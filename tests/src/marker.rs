//! Probe markers: `@probe:NAME` comments on the fixture lines that tests probe.

use std::{fs, path::PathBuf};

use crate::fixture::fixture_source;

const TAG: &str = "@probe:";

/// The source file and 1-based line of the unique `@probe:<marker>` comment.
///
/// Panics if no fixture has the marker, or more than one line does.
pub fn marker_line(marker: &str) -> (PathBuf, u32) {
    let hits: Vec<_> = markers()
        .into_iter()
        .filter(|(name, _, _)| name == marker)
        .collect();
    match hits.as_slice() {
        [(_, file, line)] => (file.clone(), *line),
        [] => panic!("no fixture source has the marker @probe:{marker}"),
        many => panic!("marker @probe:{marker} is not unique: {many:?}"),
    }
}

/// Every marker in every fixture and demo source: (name, source file, 1-based line).
pub fn markers() -> Vec<(String, PathBuf, u32)> {
    let mut found = Vec::new();
    let demo_dir = crate::fixture::tests_dir().join("demo");
    let demo = [
        "orders/src/pricing.rs",
        "orders/src/main.rs",
        "gateway/main.go",
    ]
    .map(|p| demo_dir.join(p));
    let sources = ["c", "rust", "go", "httpd"].map(fixture_source);
    for path in sources.into_iter().chain(demo) {
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for (index, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find(TAG) {
                rest = &rest[at + TAG.len()..];
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if len > 0 {
                    let line_no = u32::try_from(index + 1).expect("fixture under 4G lines");
                    found.push((rest[..len].to_string(), path.clone(), line_no));
                }
            }
        }
    }
    found
}
