//! Resolution against the real fixture binaries (built on first use; no root needed).

#[path = "common/binaries.rs"]
mod binaries;

use binaries::{entry, marker, open, source_line};
use object::{Object, ObjectSection};
use tracery_dwarf::{resolve, BinaryError, ProbeSite, ResolveError, Symbolizer};

fn one_site(variant: &str, location: &str) -> ProbeSite {
    let b = open(variant);
    let sites = resolve(&b, location).unwrap_or_else(|e| panic!("{variant} {location}: {e}"));
    assert_eq!(sites.len(), 1, "{variant} {location}: {sites:#?}");
    sites.into_iter().next().unwrap()
}

/// The file offset of `addr` computed independently of `Binary::file_offset` (which goes
/// through PT_LOAD): through the section headers.
fn offset_by_sections(variant: &str, addr: u64) -> u64 {
    let data = std::fs::read(tracery_tests::fixture(variant)).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let (offset, _) = text.file_range().unwrap();
    assert!(addr >= text.address() && addr < text.address() + text.size());
    addr - text.address() + offset
}

#[test]
fn c_line_resolves_in_every_c_build() {
    let (file, line) = marker("c_after_total");
    for variant in ["c-O0", "c-O2", "c-nopie"] {
        let b = open(variant);
        let site = one_site(variant, &format!("{file}:{line}"));
        assert_eq!(site.function, "process_order", "{variant}");
        assert_eq!(site.line, line, "{variant}");
        assert!(!site.inlined, "{variant}");
        assert!(site.file.ends_with("c/orders.c"), "{variant}: {site:?}");
        assert_eq!(site.note, None, "{variant}");
        assert_eq!(
            site.file_offset.0,
            offset_by_sections(variant, site.address.0),
            "{variant}"
        );
        assert_eq!(
            b.obj_addr(site.file_offset),
            Some(site.address),
            "{variant}"
        );
        // The site is inside process_order.
        assert!(site.address.0 > entry(&b, "process_order"), "{variant}");
    }
    // addr2line, independently, puts the -O0 site on that line.
    let b = open("c-O0");
    let site = one_site("c-O0", &format!("{file}:{line}"));
    let frames = Symbolizer::new(&b).unwrap().frames(site.address, false);
    assert_eq!(frames[0].line, Some(line));
}

#[test]
fn non_pie_sites_have_offsets_that_differ_from_addresses() {
    let (file, line) = marker("c_after_total");
    let b = open("c-nopie");
    assert!(!b.is_pie());
    let site = one_site("c-nopie", &format!("{file}:{line}"));
    assert!(site.address.0 >= 0x40_0000, "{site:?}");
    assert_eq!(site.address.0 - site.file_offset.0, 0x40_0000, "{site:?}");
    assert!(open("c-O0").is_pie());
}

#[test]
fn c_function_lands_after_the_prologue() {
    let (_, entry_line) = marker("c_entry");
    let b = open("c-O0");
    let low = entry(&b, "process_order");
    // GCC marks no prologue end; the function sets up rbp, so the site is the first line
    // boundary after that: the first statement, line 28.
    assert_eq!(
        b.bytes_at(tracery_dwarf::ObjAddr(low), 1),
        Some(&[0x55][..])
    );
    let site = one_site("c-O0", "process_order");
    assert!(site.address.0 > low + 4, "{site:?}");
    assert_eq!(site.line, entry_line + 1);
    assert_eq!(site.function, "process_order");
    assert_eq!(
        site.note.as_deref(),
        Some("after the prologue of process_order")
    );
    // A breakpoint on the opening line lands at the same place, like gdb's.
    let (file, _) = marker("c_entry");
    assert_eq!(one_site("c-O0", &format!("{file}:{entry_line}")), site);

    // At -O2 there is no frame setup to skip: the arguments are live at the entry.
    let b2 = open("c-O2");
    let site2 = one_site("c-O2", "process_order");
    assert_eq!(site2.address.0, entry(&b2, "process_order"));
    assert_eq!(site2.note, None);
}

#[test]
fn c_inlined_line_gives_inlined_sites() {
    let (file, line) = marker("c_inline");
    let b = open("c-O2");
    let sites = resolve(&b, &format!("{file}:{line}")).unwrap();
    assert!(!sites.is_empty());
    for s in &sites {
        assert_eq!(s.function, "apply_discount", "{s:?}");
        assert!(s.inlined, "{s:?}");
        assert_eq!(s.line, line, "{s:?}");
        assert!(s.address.0 > entry(&b, "process_order"), "{s:?}");
    }
    // `apply_discount` by name: only inlined copies exist (always_inline).
    let by_name = resolve(&b, "apply_discount").unwrap();
    assert!(!by_name.is_empty());
    assert!(by_name
        .iter()
        .all(|s| s.inlined && s.function == "apply_discount"));
    assert_eq!(
        by_name[0].line,
        source_line("c", "int cut = total * percent / 100;")
    );
}

#[test]
fn rust_function_by_demangled_name_short_name_and_symbol() {
    let (_, entry_line) = marker("rust_entry");
    for variant in ["rust-debug", "rust-release"] {
        let b = open(variant);
        let site = one_site(variant, "orders::process_order");
        assert_eq!(site.function, "orders::process_order", "{variant}");
        assert!(!site.inlined);
        assert!(site.file.ends_with("rust/orders.rs"), "{variant}: {site:?}");
        assert_eq!(site.line, entry_line + 1, "{variant}");
        assert!(
            site.address.0 > entry(&b, "orders::process_order"),
            "{variant}"
        );
        assert_eq!(
            site.note.as_deref(),
            Some("after the prologue of orders::process_order")
        );
        // The same function by its last path component and by its mangled ELF symbol.
        assert_eq!(one_site(variant, "process_order"), site, "{variant}");
        let mangled = b
            .symbols()
            .iter()
            .find(|s| {
                s.name.starts_with("_ZN6orders13process_order")
                    && s.address.0 == entry(&b, "orders::process_order")
            })
            .unwrap_or_else(|| panic!("{variant}: no mangled symbol"))
            .name
            .clone();
        assert_eq!(one_site(variant, &mangled), site, "{variant}");
    }
}

#[test]
fn rust_line_resolves_once_per_function() {
    let (file, line) = marker("rust_after_total");
    for variant in ["rust-debug", "rust-release"] {
        let site = one_site(variant, &format!("{file}:{line}"));
        assert_eq!(site.function, "orders::process_order", "{variant}");
        assert_eq!(site.line, line);
        assert!(!site.inlined);
    }
    let (file, line) = marker("rust_inline");
    let b = open("rust-release");
    let sites = resolve(&b, &format!("{file}:{line}")).unwrap();
    assert!(!sites.is_empty());
    assert!(sites
        .iter()
        .all(|s| s.inlined && s.function == "orders::apply_discount" && s.line == line));
}

#[test]
fn lock_prefixed_entry_moves_to_the_next_instruction() {
    // Release level3 starts with `lock add %rdi, SINK(%rip)` (SINK.fetch_add).
    let b = open("rust-release");
    let low = entry(&b, "orders::level3");
    let code = b.bytes_at(tracery_dwarf::ObjAddr(low), 8).unwrap();
    assert_eq!(code[0], 0xf0, "fixture codegen changed: {code:02x?}");
    let site = one_site("rust-release", "orders::level3");
    // lock add r64, [rip+disp32] is 8 bytes: F0 48 01 3D disp32.
    assert_eq!(site.address.0, low + 8);
    assert_eq!(
        site.note,
        Some(format!(
            "moved from {low:#x} (lock-prefixed; uprobes cannot probe it) to {:#x}",
            low + 8
        ))
    );
    assert_eq!(site.function, "orders::level3");
    // That line has no other instruction: resolving the line itself fails, and says why.
    let line = source_line("rust", "SINK.fetch_add(x, Ordering::Relaxed);");
    match resolve(&b, &format!("orders.rs:{line}")) {
        Err(ResolveError::Unprobeable {
            address, reason, ..
        }) => {
            assert_eq!(address.0, low);
            assert_eq!(reason, "lock-prefixed");
        }
        other => panic!("expected Unprobeable, got {other:?}"),
    }
}

#[test]
fn go_function_and_line_with_compressed_dwarf() {
    let (_, entry_line) = marker("go_entry");
    let (file, line) = marker("go_after_total");
    for variant in ["go", "go-noopt"] {
        let b = open(variant);
        let site = one_site(variant, "main.processOrder");
        assert_eq!(site.function, "main.processOrder", "{variant}");
        assert_eq!(site.line, entry_line, "{variant}");
        assert!(
            site.file.ends_with("go/orders/main.go"),
            "{variant}: {site:?}"
        );
        assert!(site.address.0 >= entry(&b, "main.processOrder"));
        assert_eq!(one_site(variant, "processOrder"), site, "{variant}");

        let at = one_site(variant, &format!("{file}:{line}"));
        assert_eq!(at.function, "main.processOrder", "{variant}");
        assert_eq!(at.line, line, "{variant}");
        assert!(!at.inlined);
        assert_eq!(b.obj_addr(at.file_offset), Some(at.address));
    }
    // go-noopt has a stack check; Go marks the prologue end after it.
    let noopt = one_site("go-noopt", "main.processOrder");
    assert_eq!(
        noopt.note.as_deref(),
        Some("after the prologue of main.processOrder")
    );
    // The optimizing build inlines `discount`.
    let (file, line) = marker("go_inline");
    let b = open("go");
    let sites = resolve(&b, &format!("{file}:{line}")).unwrap();
    assert!(sites
        .iter()
        .all(|s| s.inlined && s.function == "main.discount" && s.line == line));
    assert!(!sites.is_empty());
    // And its DWARF really is compressed, so this went through decompression.
    let data = std::fs::read(tracery_tests::fixture("go")).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let info = file
        .section_by_name(".debug_info")
        .or_else(|| file.section_by_name(".zdebug_info"))
        .unwrap();
    assert_ne!(
        info.compressed_file_range().unwrap().format,
        object::CompressionFormat::None
    );
}

#[test]
fn line_without_code_suggests_the_nearest_lines() {
    let (file, line) = marker("c_no_code");
    let b = open("c-O0");
    let err = resolve(&b, &format!("{file}:{line}")).unwrap_err();
    match &err {
        ResolveError::NoCode {
            line: l, nearest, ..
        } => {
            assert_eq!(*l, line);
            assert_eq!(nearest, &vec![line - 1, line + 1]);
        }
        other => panic!("expected NoCode, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "no code at {file}:{line}; nearest lines with code: {}, {}",
            line - 1,
            line + 1
        )
    );
}

#[test]
fn binary_without_dwarf_is_refused() {
    let path = tracery_tests::fixture("c-nodwarf");
    match tracery_dwarf::Binary::open(&path) {
        Err(BinaryError::NoDwarf { path: p }) => assert_eq!(p, path),
        other => panic!("expected NoDwarf, got {other:?}"),
    }
}

#[test]
fn unknown_names_get_suggestions() {
    let b = open("c-O0");
    match resolve(&b, "procss_order") {
        Err(ResolveError::NoSuchFunction { name, similar, .. }) => {
            assert_eq!(name, "procss_order");
            assert_eq!(similar.first().map(String::as_str), Some("process_order"));
        }
        other => panic!("expected NoSuchFunction, got {other:?}"),
    }
    match resolve(&b, "ordrs.c:30") {
        Err(ResolveError::NoSuchFile { similar, .. }) => {
            assert!(similar[0].ends_with("c/orders.c"), "{similar:?}");
        }
        other => panic!("expected NoSuchFile, got {other:?}"),
    }
    // Path suffixes match on component boundaries only.
    assert!(matches!(
        resolve(&b, "rders.c:30"),
        Err(ResolveError::NoSuchFile { .. })
    ));
    assert!(resolve(&b, "c/orders.c:30").is_ok());
    for bad in ["orders.c:x", "orders.c:0", ":30", "process order"] {
        assert!(
            matches!(resolve(&b, bad), Err(ResolveError::Malformed { .. })),
            "{bad}"
        );
    }
}

#[test]
fn ambiguous_file_lists_candidates() {
    // The Rust standard library has many `mod.rs`.
    let b = open("rust-debug");
    match resolve(&b, "mod.rs:10") {
        Err(ResolveError::AmbiguousFile { candidates, .. }) => {
            assert!(candidates.len() > 1, "{candidates:?}");
            assert!(candidates.iter().all(|c| c.ends_with("mod.rs")));
        }
        other => panic!("expected AmbiguousFile, got {other:?}"),
    }
}
