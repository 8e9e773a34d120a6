//! Every caller frame carries a line.
//!
//! A caller's frame is symbolized from its return address minus one. Each call
//! instruction of a fixture binary gives such a return address, so checking all of them
//! covers every caller frame a stack of that binary can hold, std and runtime code
//! included. Line-0 rows (cleanup code, calls that never return) and inlined calls whose
//! call line is 0 (merged call sites) are the cases that used to show a file without a
//! line. The live end-to-end check is `crates/tracery-ctl/tests/stack_lines.rs`.

#[path = "common/binaries.rs"]
mod binaries;

use binaries::{open, source_line};
use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use tracery_dwarf::{Binary, Frame, ObjAddr, Symbolizer};

/// The return address of every call instruction in a function symbol of `b`.
fn return_addresses(b: &Binary) -> Vec<u64> {
    let mut out = Vec::new();
    for s in b.symbols().iter().filter(|s| s.size > 0) {
        let Some(code) = b.bytes_at(s.address, s.size as usize) else {
            continue;
        };
        let decoder = Decoder::with_ip(64, code, s.address.0, DecoderOptions::NONE);
        out.extend(
            decoder
                .into_iter()
                .filter(|i| i.mnemonic() == Mnemonic::Call)
                .map(|i| i.next_ip()),
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Frames at return addresses of `variant` that name a file but no line, as
/// `(return address, frame)`, and how many frames with a file there were.
fn frames_without_line(variant: &str) -> (Vec<(u64, Frame)>, usize) {
    let b = open(variant);
    let sym = Symbolizer::new(&b).unwrap();
    let ras = return_addresses(&b);
    assert!(ras.len() > 10, "{variant}: {} calls", ras.len());
    let (mut missing, mut with_file) = (Vec::new(), 0);
    for ra in ras {
        for f in sym.frames(ObjAddr(ra), true) {
            if f.file.is_some() {
                with_file += 1;
                if f.line.is_none() {
                    missing.push((ra, f));
                }
            }
        }
    }
    (missing, with_file)
}

#[test]
fn every_caller_frame_with_a_file_has_a_line() {
    for variant in [
        "c-O0",
        "c-O2",
        "rust-debug",
        "rust-release",
        "go",
        "go-noopt",
    ] {
        let (missing, with_file) = frames_without_line(variant);
        println!(
            "{variant}: {with_file} caller frames with a file, {} without a line",
            missing.len()
        );
        let shown: Vec<_> = missing.iter().take(10).collect();
        assert!(missing.is_empty(), "{variant}: {shown:#x?}");
    }
}

/// rust-release inlines `bench` into `main` for both `bench` and `tickbench`, and LLVM
/// merges the two call sites into one with call line 0. The caller frame gets the nearest
/// line of `main` before the inlined code, never a line of `bench` itself.
#[test]
fn merged_inlined_call_site_gets_the_callers_line() {
    let b = open("rust-release");
    let sym = Symbolizer::new(&b).unwrap();
    // main runs from its `fn` line to the first closing brace in column 0 after it.
    let start = source_line("rust", "fn main() {");
    let text = std::fs::read_to_string(tracery_tests::fixture_source("rust")).unwrap();
    let end = text
        .lines()
        .enumerate()
        .skip(start as usize)
        .find(|(_, l)| *l == "}")
        .map(|(i, _)| i as u32 + 1)
        .unwrap();
    let main_lines = start..end + 1;
    let mut seen = 0;
    for ra in return_addresses(&b) {
        let frames = sym.frames(ObjAddr(ra), true);
        let Some(i) = frames.iter().position(|f| f.function == "orders::bench") else {
            continue;
        };
        let Some(caller) = frames.get(i + 1).filter(|f| f.function == "orders::main") else {
            continue;
        };
        seen += 1;
        let line = caller.line.expect("caller line");
        assert!(
            main_lines.contains(&line),
            "{ra:#x}: main at line {line}, outside {main_lines:?}: {frames:#?}"
        );
    }
    assert!(seen > 0, "no call inside bench inlined into main");
}
