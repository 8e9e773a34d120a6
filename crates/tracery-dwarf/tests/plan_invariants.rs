//! Every plan the fixtures produce fits the kernel's rules (crates/tracery-ebpf/src/capture.rs),
//! and the benchmark's 8-variable capture decodes to the values the bench loop passes.

#[path = "common/snapshot.rs"]
mod snapshot;

use serde_json::json;
use snapshot::emulator::{capture_with, Program, Run};
use snapshot::open;
use tracery_common::{
    regs::NUM_REGS, BaseKind, FetchOp, OpKind, ProbeConfig, DATA_CAP, MAX_COPY, MAX_OPS, STACK_CAP,
};
use tracery_dwarf::{compile_plan, decode, resolve, CaptureLimits, VarKind};

/// The bytes op `i` may write.
fn span(op: &FetchOp) -> (usize, usize) {
    let len = if op.kind == OpKind::Value as u8 {
        8
    } else {
        op.len as usize
    };
    (op.out as usize, op.out as usize + len)
}

fn check(cfg: &ProbeConfig, what: &str) {
    let n = cfg.n_ops as usize;
    assert!(n <= MAX_OPS, "{what}");
    assert!(cfg.data_size as usize <= DATA_CAP, "{what}");
    assert!(cfg.stack_bytes as usize <= STACK_CAP, "{what}");
    assert_eq!(
        (cfg.breakpoint_id, cfg.hit_limit, cfg.rate_per_sec),
        (0, 0, 0),
        "{what}"
    );
    let ops = &cfg.ops[..n];
    for (i, op) in ops.iter().enumerate() {
        let (start, end) = span(op);
        assert!(op.len as usize <= MAX_COPY, "{what} op {i}: {op:?}");
        assert!(
            end <= cfg.data_size as usize,
            "{what} op {i} writes past data_size: {op:?}"
        );
        assert!(
            matches!(op.kind, 0..=2) && matches!(op.base, 0..=2),
            "{what} op {i}"
        );
        for (j, other) in ops[..i].iter().enumerate() {
            let (s2, e2) = span(other);
            assert!(end <= s2 || e2 <= start, "{what}: ops {j} and {i} overlap");
        }
        let within = |slot: u16, producer: u8| {
            let p = producer as usize;
            assert!(p < i, "{what} op {i} depends on later op {p}");
            let (ps, pe) = span(&ops[p]);
            assert!(
                ps <= slot as usize && slot as usize + 8 <= pe,
                "{what} op {i}: slot {slot} not in op {p}"
            );
        };
        if op.base == BaseKind::Reg as u8 {
            assert!((op.reg as usize) < NUM_REGS, "{what} op {i}");
        }
        if op.base == BaseKind::PtrAt as u8 {
            within(op.base_slot, op.base_op);
        }
        if op.flags & FetchOp::FLAG_DYNAMIC_LEN != 0 {
            within(op.len_slot, op.len_op);
            assert!(op.len_scale > 0, "{what} op {i}");
        }
    }
}

#[test]
fn every_fixture_plan_fits_the_kernel() {
    let markers = tracery_tests::markers();
    let mut checked = 0;
    for variant in [
        "c-O0",
        "c-O2",
        "c-nopie",
        "rust-debug",
        "rust-release",
        "go",
        "go-noopt",
    ] {
        let lang = variant.split('-').next().unwrap();
        let b = open(variant);
        for (name, path, line) in &markers {
            if !name.starts_with(lang) || name.ends_with("no_code") {
                continue;
            }
            let file = path.file_name().unwrap().to_string_lossy();
            for site in resolve(&b, &format!("{file}:{line}")).unwrap() {
                for limits in [
                    CaptureLimits::default(),
                    CaptureLimits {
                        max_string: 4095,
                        max_elements: 4096,
                        max_depth: 8,
                        stack_bytes: 65535,
                    },
                ] {
                    let plan = compile_plan(&b, site.address, &limits).unwrap();
                    check(
                        &plan.config,
                        &format!("{variant} {name} {:#x}", site.address.0),
                    );
                    check(
                        &plan.relocate(tracery_dwarf::LoadBias(0x5555_0000_0000)),
                        name,
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 40, "{checked}");
}

/// The bench: `bench8(i, 1, 2, 3, 4, 5, &order, "alice")` with 8 captured variables.
#[test]
fn bench_plan_has_eight_variables_with_their_values() {
    for (variant, function, id) in [
        ("c-O0", "bench8", "id"),
        ("c-O2", "bench8", "id"),
        ("rust-debug", "orders::bench8", "id"),
        ("rust-release", "orders::bench8", "id"),
        ("go", "main.bench8", "ID"),
    ] {
        let b = open(variant);
        let site = resolve(&b, function).unwrap().remove(0);
        let plan = compile_plan(&b, site.address, &CaptureLimits::default()).unwrap();
        let vars: Vec<_> = plan.variables().take(8).collect();
        let want: Vec<_> = ["a", "b", "c", "d", "e", "f", "o", "s"]
            .into_iter()
            .map(|n| (n, VarKind::Arg))
            .collect();
        assert_eq!(vars, want, "{variant}");
        // A small plan: each variable's bytes, the struct behind `o`, the string.
        assert!(
            plan.config.n_ops <= 16,
            "{variant}: {} ops",
            plan.config.n_ops
        );
        let run = Run {
            program: Program::Fixture(variant),
            args: &["bench", "100000000"],
            start_line: true,
        };
        let hit = capture_with(&run, &b, plan.address(), |bias| plan.relocate(bias));
        let vars = decode(&b, &plan, &hit.header, &hit.data);
        let get = |n: &str| {
            vars.iter()
                .find(|v| v.name == n && v.frame.is_none())
                .unwrap()
                .value
                .to_json()
        };
        for (n, v) in [("b", 1), ("c", 2), ("d", 3), ("e", 4), ("f", 5)] {
            assert_eq!(get(n), json!(v), "{variant} {n}");
        }
        assert!(get("a").is_u64(), "{variant}: a = {}", get("a"));
        assert_eq!(get("o")["target"][id], json!(42), "{variant}: {}", get("o"));
        // rustc -O keeps only the length of `s` (bench8 uses nothing else).
        if variant == "rust-release" {
            assert_eq!(
                get("s"),
                json!({"unavailable": "optimized out"}),
                "{variant}"
            );
        } else {
            assert_eq!(get("s"), json!("alice"), "{variant}");
        }
    }
}
