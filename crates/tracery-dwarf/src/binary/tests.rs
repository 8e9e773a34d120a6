use std::process::Command;

use super::*;

/// The C fixture linked with zlib-compressed debug sections, with the stated size of its
/// `.debug_info` replaced by `claimed` when given.
fn compressed_fixture(name: &str, claimed: Option<u64>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracery-dwarf-zdebug-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    let status = Command::new("gcc")
        .args(["-g", "-O0", "-Wl,--compress-debug-sections=zlib", "-o"])
        .arg(&out)
        .arg(tracery_tests::fixture_source("c"))
        .status()
        .unwrap();
    assert!(status.success());
    if let Some(claimed) = claimed {
        let mut bytes = std::fs::read(&out).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        let info = file.section_by_name(".debug_info").unwrap();
        assert_eq!(
            info.compressed_data().unwrap().format,
            object::CompressionFormat::Zlib
        );
        // Elf64_Chdr: ch_type, ch_reserved, then ch_size.
        let at = info.file_range().unwrap().0 as usize + 8;
        bytes[at..at + 8].copy_from_slice(&claimed.to_le_bytes());
        std::fs::write(&out, &bytes).unwrap();
    }
    out
}

/// Found by the fuzzer: a text symbol whose size ran past 2^64 overflowed
/// `address + size` when a location resolved to it.
#[test]
fn symbols_and_segments_ending_past_the_address_space_are_dropped() {
    let dir = std::env::temp_dir().join(format!("tracery-dwarf-wrap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("orders");
    let status = Command::new("gcc")
        .args(["-g", "-O0", "-o"])
        .arg(&path)
        .arg(tracery_tests::fixture_source("c"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = {
        let file = object::File::parse(&*bytes).unwrap();
        let symtab = file.section_by_name(".symtab").unwrap();
        let strtab = file.section_by_name(".strtab").unwrap().data().unwrap();
        let (start, size) = symtab.file_range().unwrap();
        // Elf64_Sym is 24 bytes: st_name (4), info, other, shndx (2), value, size.
        (start..start + size)
            .step_by(24)
            .map(|o| o as usize)
            .find(|&o| {
                let name = u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
                strtab[name..].starts_with(b"level3\0")
            })
            .unwrap()
    };
    bytes[at + 16..at + 24].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let binary = Binary::open(&path).unwrap();
    assert!(binary.symbols().iter().all(|s| s.name != "level3"));
    assert!(binary.symbols().iter().any(|s| s.name == "level1"));
    // DWARF still knows the function, and resolving it does not overflow.
    let sites = crate::resolve(&binary, "level3").unwrap();
    assert!(!sites.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by the fuzzer: a function whose `DW_AT_high_pc` size ran past 2^64 overflowed
/// inside gimli's `die_ranges` while indexing.
#[test]
fn function_size_past_the_address_space_is_not_indexed() {
    let dir = std::env::temp_dir().join(format!("tracery-dwarf-hipc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("orders");
    let status = Command::new("gcc")
        .args(["-g", "-O0", "-o"])
        .arg(&path)
        .arg(tracery_tests::fixture_source("c"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut bytes = std::fs::read(&path).unwrap();
    let (info, pattern) = {
        let file = object::File::parse(&*bytes).unwrap();
        let sym = file.symbols().find(|s| s.name() == Ok("level3")).unwrap();
        // gcc writes DW_AT_low_pc (DW_FORM_addr) then DW_AT_high_pc (DW_FORM_data8).
        let mut pattern = sym.address().to_le_bytes().to_vec();
        pattern.extend(sym.size().to_le_bytes());
        let range = file
            .section_by_name(".debug_info")
            .unwrap()
            .file_range()
            .unwrap();
        (range.0 as usize..(range.0 + range.1) as usize, pattern)
    };
    let at = info.start
        + bytes[info.clone()]
            .windows(16)
            .position(|w| w == pattern.as_slice())
            .expect("level3's low_pc and high_pc in .debug_info");
    bytes[at + 8..at + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let binary = Binary::open(&path).unwrap();
    let index = crate::DebugIndex::new(&binary);
    let names: Vec<String> = index
        .functions(&binary, Some("level*"))
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(names.contains(&"level1".to_string()), "{names:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by the fuzzer: a PT_TLS smaller than its alignment padding underflowed.
#[test]
fn corrupt_tls_blocks_have_no_offset() {
    let fine = TlsBlock {
        vaddr: 0x3df0,
        memsz: 0x10,
        align: 8,
    };
    assert_eq!(fine.checked_offset(), Some(0x10));
    assert_eq!(fine.offset_below_thread_pointer(), 0x10);
    for bad in [
        TlsBlock {
            vaddr: 0x3df1,
            memsz: 0,
            align: 0x40,
        },
        TlsBlock {
            vaddr: 0,
            memsz: 0x10,
            align: 24,
        },
        TlsBlock {
            vaddr: 0,
            memsz: u64::MAX,
            align: 0x1000,
        },
    ] {
        assert_eq!(bad.checked_offset(), None, "{bad:?}");
        let _ = bad.offset_below_thread_pointer();
    }
}

#[test]
fn compressed_debug_sections_load() {
    let binary = Binary::open(compressed_fixture("honest", None)).unwrap();
    let index = crate::DebugIndex::new(&binary);
    assert!(index
        .functions(&binary, Some("process_order"))
        .iter()
        .any(|f| f.name == "process_order"));
}

/// Found by the fuzzer: a corrupt header made the loader allocate the stated size (here
/// 1 GiB, from 1 KiB of data) before decompressing a byte.
#[test]
fn compressed_section_claiming_a_gigabyte_is_refused_before_allocating() {
    let path = compressed_fixture("claims-1g", Some(1 << 30));
    match Binary::open(&path) {
        Err(BinaryError::CompressedSize {
            section, claimed, ..
        }) => {
            assert_eq!(section, ".debug_info");
            assert_eq!(claimed, 1 << 30);
        }
        other => panic!("expected CompressedSize, got {other:?}"),
    }
}
