//! `symbols --functions` and `symbols --lines` listings against the fixture binaries.

#[path = "common/binaries.rs"]
mod binaries;

use binaries::{marker, open, source_line};
use tracery_dwarf::{functions, lines, resolve, FunctionInfo, ResolveError};

fn names(list: &[FunctionInfo]) -> Vec<&str> {
    list.iter().map(|f| f.name.as_str()).collect()
}

#[test]
fn functions_by_glob_with_declarations() {
    for (variant, lang, pattern, want, decl) in [
        (
            "c-O0",
            "c",
            "level*",
            ["level1", "level2", "level3"],
            "int level1(int x)",
        ),
        (
            "rust-release",
            "rust",
            "orders::level*",
            ["orders::level1", "orders::level2", "orders::level3"],
            "fn level1(x: u64) -> u64 {",
        ),
        (
            "go",
            "go",
            "main.level?",
            ["main.level1", "main.level2", "main.level3"],
            "func level1(x int) int {",
        ),
    ] {
        let b = open(variant);
        let list = functions(&b, Some(pattern));
        assert_eq!(names(&list), want, "{variant}");
        assert_eq!(list[0].line, Some(source_line(lang, decl)), "{variant}");
        let src = tracery_tests::fixture_source(lang);
        assert_eq!(list[0].file.as_deref(), Some(src.as_path()), "{variant}");
        assert_ne!(list[0].address, list[1].address);
    }
}

#[test]
fn functions_by_substring_include_elf_only_code() {
    let b = open("c-O0");
    let list = functions(&b, Some("process"));
    assert_eq!(names(&list), ["process_order"]);
    // `_start` has no DWARF; it is listed from the ELF symbols, without a source line.
    let start: Vec<_> = functions(&b, Some("_start"))
        .into_iter()
        .filter(|f| f.name == "_start")
        .collect();
    assert_eq!(start.len(), 1);
    assert_eq!((start[0].file.as_ref(), start[0].line), (None, None));
    // No pattern lists everything, sorted by name.
    let all = functions(&b, None);
    assert!(all.windows(2).all(|w| w[0].name <= w[1].name));
    assert!(all.len() > 10);
}

#[test]
fn lines_of_a_file_match_resolution() {
    let b = open("c-O0");
    let listed = lines(&b, "orders.c").unwrap();
    let (_, no_code) = marker("c_no_code");
    let (_, after_total) = marker("c_after_total");
    let (_, inline) = marker("c_inline");
    assert!(listed.iter().all(|l| l.line != no_code));
    assert!(listed.windows(2).all(|w| w[0].line < w[1].line));
    let at = listed.iter().find(|l| l.line == after_total).unwrap();
    assert_eq!(at.function, "process_order");
    let site = &resolve(&b, &format!("orders.c:{after_total}")).unwrap()[0];
    assert_eq!(at.addresses, vec![site.address]);
    let inl = listed.iter().find(|l| l.line == inline).unwrap();
    assert_eq!(inl.function, "apply_discount");

    assert!(matches!(
        lines(&b, "nope.c"),
        Err(ResolveError::NoSuchFile { .. })
    ));
}

#[test]
fn listings_serialize_to_json() {
    let b = open("c-O0");
    let f = &functions(&b, Some("level3"))[0];
    let json = serde_json::to_value(f).unwrap();
    assert_eq!(json["name"], "level3");
    assert_eq!(json["address"], f.address.0);
    let site = &resolve(&b, "level3").unwrap()[0];
    let json = serde_json::to_value(site).unwrap();
    assert_eq!(json["function"], "level3");
    assert_eq!(json["inlined"], false);
    assert_eq!(json["file_offset"], site.file_offset.0);
}
