//! Probes moved off instructions the kernel single-steps (see `src/step_free.rs`), on the
//! real fixtures: a moved probe must capture exactly what the line's first instruction sees.
//! Each move is checked by stopping the fixture at the line's first instruction, capturing
//! there, single-stepping the same thread to the moved address and capturing again.

#[path = "common/snapshot.rs"]
mod snapshot;

use snapshot::emulator;
use tracery_dwarf::{decode, CaptureLimits, Executable, ProbeSite};

const C: &[&str] = &[
    "c_entry",
    "c_after_total",
    "c_inline",
    "c_level3",
    "c_tick",
    "c_login",
];
const RUST: &[&str] = &[
    "rust_entry",
    "rust_after_total",
    "rust_inline",
    "rust_level3",
    "rust_tick",
];
const GO: &[&str] = &[
    "go_entry",
    "go_after_total",
    "go_inline",
    "go_level3",
    "go_tick",
];

/// Fixture variants that run in serve mode, and the markers each one reaches.
const SITES: &[(&str, &[&str])] = &[
    ("c-O0", C),
    ("c-O2", C),
    ("rust-debug", RUST),
    ("rust-release", RUST),
    ("go", GO),
    ("go-noopt", GO),
];

fn sites(exe: &Executable, marker: &str) -> Vec<ProbeSite> {
    let (path, line) = tracery_tests::marker_line(marker);
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    exe.resolve(&format!("{file}:{line}"))
        .unwrap_or_else(|e| panic!("{marker}: {e}"))
}

#[test]
fn the_demo_gateway_line_moves_past_its_stack_zeroing() {
    let exe = Executable::open(tracery_tests::fixture("demo-gateway")).unwrap();
    let site = sites(&exe, "demo_gateway_access").remove(0);
    let code = exe.binary().bytes_at(site.address, 12).unwrap();
    // movups [rsp+disp32], xmm15 (Go zeroing a stack slot), then nop [rax].
    assert_eq!(
        (&code[..4], &code[9..12]),
        (&[0x44, 0x0f, 0x11, 0xbc][..], &[0x0f, 0x1f, 0x00][..]),
        "fixture codegen changed: {code:02x?}"
    );
    let plan = exe.plan(site.address, &CaptureLimits::default()).unwrap();
    let (moved, moved_plan) = exe
        .step_free(&site, &plan)
        .expect("the stack zeroing writes no slot the capture reads");
    assert_eq!(moved.address.0, site.address.0 + 9);
    assert_eq!(
        (moved.line, &moved.file, &moved.function),
        (site.line, &site.file, &site.function)
    );
    assert_eq!(moved_plan.address(), moved.address);
    assert!(
        moved
            .note
            .as_deref()
            .is_some_and(|n| n.contains("1 instruction into the line")),
        "{:?}",
        moved.note
    );
}

#[test]
fn a_moved_probe_captures_what_the_line_s_first_instruction_sees() {
    let limits = CaptureLimits::default();
    let mut moved = Vec::new();
    let mut kept = Vec::new();
    for (variant, markers) in SITES {
        let exe = Executable::open(tracery_tests::fixture(variant)).unwrap();
        for marker in *markers {
            for site in sites(&exe, marker) {
                let plan = exe.plan(site.address, &limits).unwrap();
                let Some((to, to_plan)) = exe.step_free(&site, &plan) else {
                    kept.push(format!("{variant} {marker} {}", site.address));
                    continue;
                };
                let (first, second, steps) =
                    emulator::capture_then_step(variant, exe.binary(), &plan, &to_plan);
                assert!(steps > 0, "{variant} {marker}: the move went nowhere");
                let n = usize::from(plan.config.n_ops);
                assert_eq!(
                    first.header.results[..n],
                    second.header.results[..n],
                    "{variant} {marker}: op results differ after {steps} instructions"
                );
                let len = first.header.data_len as usize;
                assert_eq!(
                    first.data[..len],
                    second.data[..len],
                    "{variant} {marker}: captured bytes differ after {steps} instructions"
                );
                let a = decode(exe.binary(), &plan, &first.header, &first.data);
                let b = decode(exe.binary(), &to_plan, &second.header, &second.data);
                assert_eq!(a, b, "{variant} {marker}: decoded variables differ");
                assert!(!a.is_empty(), "{variant} {marker}: nothing captured");
                moved.push(format!(
                    "{variant} {marker} {} -> {} ({steps} instructions, {} variables)",
                    site.address,
                    to.address,
                    a.len()
                ));
            }
        }
    }
    println!(
        "moved:\n  {}\nkept:\n  {}",
        moved.join("\n  "),
        kept.join("\n  ")
    );
    // C at -O0 (c_entry) and Rust in debug (rust_inline) start lines with loads the kernel
    // single-steps; without those moves this test would check nothing.
    assert!(
        moved.len() >= 2,
        "expected at least two moved sites, got {moved:?}"
    );
}
