//! `Executable` gives what the free functions give, from one lazily built context, and
//! remembers it (real fixture binaries, no root needed).

#[path = "common/binaries.rs"]
mod binaries;

use binaries::marker;
use tracery_common::regs::{pt, NUM_REGS};
use tracery_dwarf::{
    compile_plan, resolve, CaptureLimits, Executable, LoadBias, ProcAddr, ResolveError, Symbolizer,
};

#[test]
fn resolves_and_plans_like_the_free_functions() {
    for (variant, probe) in [
        ("c-O0", "c_after_total"),
        ("c-O2", "c_after_total"),
        ("rust-debug", "rust_after_total"),
        ("rust-release", "rust_after_total"),
        ("go", "go_after_total"),
    ] {
        let (file, line) = marker(probe);
        let location = format!("{file}:{line}");
        let exe = Executable::open(tracery_tests::fixture(variant)).unwrap();
        let sites = exe.resolve(&location).unwrap();
        assert_eq!(
            sites,
            resolve(exe.binary(), &location).unwrap(),
            "{variant}"
        );
        assert_eq!(
            exe.resolve(&location).unwrap(),
            sites,
            "{variant}: remembered"
        );
        let limits = CaptureLimits::default();
        for site in &sites {
            let plan = exe.plan(site.address, &limits).unwrap();
            let free = compile_plan(exe.binary(), site.address, &limits).unwrap();
            let vars = |p: &tracery_dwarf::CapturePlan| {
                p.variables()
                    .map(|(n, k)| format!("{n}:{k:?}"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(vars(&plan), vars(&free), "{variant}");
            assert!(!vars(&plan).is_empty(), "{variant}: no variables");
            assert_eq!(ops(&plan), ops(&free), "{variant}: same fetch ops");
            assert_eq!(plan.function(), free.function(), "{variant}");
            let again = exe.plan(site.address, &limits).unwrap();
            assert_eq!(ops(&again), ops(&plan), "{variant}: remembered");
            // Other limits are another plan.
            let small = CaptureLimits {
                max_string: 8,
                ..limits
            };
            assert_eq!(
                exe.plan(site.address, &small).unwrap().limits(),
                &small,
                "{variant}"
            );
        }
    }
}

/// The fetch ops and data size of a plan: what the kernel runs.
fn ops(plan: &tracery_dwarf::CapturePlan) -> (Vec<tracery_common::FetchOp>, u16) {
    let n = plan.config.n_ops as usize;
    (plan.config.ops[..n].to_vec(), plan.config.data_size)
}

#[test]
fn errors_are_not_remembered_as_sites() {
    let exe = Executable::open(tracery_tests::fixture("c-O0")).unwrap();
    for _ in 0..2 {
        assert!(matches!(
            exe.resolve("no_such_file.c:3"),
            Err(ResolveError::NoSuchFile { .. })
        ));
    }
}

#[test]
fn symbolizes_and_unwinds_like_the_symbolizer() {
    let exe = Executable::open(tracery_tests::fixture("c-O0")).unwrap();
    let (file, line) = marker("c_after_total");
    let site = exe.resolve(&format!("{file}:{line}")).unwrap()[0].clone();
    let bias = LoadBias(0x5555_0000_0000);
    let pc = bias.to_proc(site.address);
    let frames = exe.symbolize(bias, &[pc]);
    let direct = Symbolizer::new(exe.binary())
        .unwrap()
        .stack(bias, &[ProcAddr(pc.0)]);
    assert_eq!(frames, direct);
    assert_eq!(frames[0].function, "process_order");
    assert_eq!(frames[0].line, Some(line));
    // With no stack bytes, the unwinder stops at the pc.
    let mut regs = [0u64; NUM_REGS];
    regs[pt::RIP as usize] = pc.0;
    let stack = exe.stack(bias, &regs, 0, &[], 8);
    assert_eq!(stack, direct);
    assert!(std::sync::Arc::ptr_eq(
        &exe.unwinder(bias),
        &exe.unwinder(bias)
    ));
}
