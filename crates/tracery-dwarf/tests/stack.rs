//! Unwinding and symbolization against real fixture code.
//!
//! Capturing a live stack needs root (a uprobe), so these tests build the stack a probe
//! would copy: the stack layout each fixture's code implies at a known call chain
//! (level1 → level2 → level3), with return addresses found by decoding the real call
//! instructions. The agent's tests cover the live path end to end.

#[path = "common/binaries.rs"]
mod binaries;

use binaries::{entry, marker, open, source_line};
use iced_x86::{Code, Decoder, DecoderOptions};
use tracery_common::regs::{pt, NUM_REGS};
use tracery_dwarf::{
    resolve, Binary, Frame, LoadBias, ObjAddr, ProcAddr, StackUnwinder, Symbolizer, UnwindMethod,
};

const BIAS: LoadBias = LoadBias(0x5555_5555_0000);
const STACK: u64 = 0x7ffd_1234_0000;
/// A return address in a shared library: where the walk must stop.
const LIBC: u64 = 0x7f12_3456_7890;

/// The return address of the first call from `caller` to `callee`, found by decoding.
fn return_address(b: &Binary, caller: &str, callee: &str) -> u64 {
    let (from, target) = (entry(b, caller), entry(b, callee));
    let code = b.bytes_at(ObjAddr(from), 4096).unwrap();
    let mut decoder = Decoder::with_ip(64, code, from, DecoderOptions::NONE);
    for insn in &mut decoder {
        if insn.code() == Code::Call_rel32_64 && insn.near_branch_target() == target {
            return insn.next_ip();
        }
    }
    panic!("no call from {caller} to {callee}");
}

/// The size a Go function's prologue reserves (`sub $N, %rsp`).
fn go_frame_size(b: &Binary, function: &str) -> u64 {
    let code = b.bytes_at(ObjAddr(entry(b, function)), 48).unwrap();
    for i in 0..code.len() - 7 {
        match code[i..] {
            [0x48, 0x83, 0xec, n, ..] => return u64::from(n),
            [0x48, 0x81, 0xec, a, b2, c, d, ..] => {
                return u64::from(u32::from_le_bytes([a, b2, c, d]))
            }
            _ => {}
        }
    }
    panic!("no frame in {function}");
}

/// A stack image: 8-byte words written at process addresses from `STACK` on.
struct Stack(Vec<u8>);

impl Stack {
    fn new(len: u64) -> Self {
        Self(vec![0xcc; len as usize])
    }
    fn put(&mut self, at: u64, value: u64) {
        let off = (at - STACK) as usize;
        self.0[off..off + 8].copy_from_slice(&value.to_le_bytes());
    }
}

fn regs(pc: u64, sp: u64, bp: u64) -> [u64; NUM_REGS] {
    let mut r = [0; NUM_REGS];
    r[pt::RIP as usize] = pc;
    r[pt::RSP as usize] = sp;
    r[pt::RBP as usize] = bp;
    r
}

fn site(b: &Binary, location: &str) -> u64 {
    let sites = resolve(b, location).unwrap();
    assert_eq!(sites.len(), 1, "{location}: {sites:?}");
    sites[0].address.0
}

fn proc(addrs: &[u64]) -> Vec<ProcAddr> {
    addrs.iter().map(|&a| BIAS.to_proc(ObjAddr(a))).collect()
}

fn names_and_lines(frames: &[Frame]) -> Vec<(&str, Option<u32>, bool)> {
    frames
        .iter()
        .map(|f| (f.function.as_str(), f.line, f.inlined))
        .collect()
}

/// c-O0 keeps frame pointers: each frame is `[saved rbp][return address]` at rbp, and the
/// CFI says the same (CFA = rbp + 16).
#[test]
fn c_o0_stack_by_cfi_and_by_frame_pointers() {
    let b = open("c-O0");
    let (file, line) = marker("c_level3");
    let pc = site(&b, &format!("{file}:{line}"));
    let ra2 = return_address(&b, "level2", "level3");
    let ra1 = return_address(&b, "level1", "level2");
    let ra0 = return_address(&b, "serve", "level1");
    let ram = return_address(&b, "main", "serve");

    let mut s = Stack::new(0x200);
    let rbp3 = STACK + 0x10;
    let rbp2 = rbp3 + 0x20;
    let rbp1 = rbp2 + 0x20;
    let rbp0 = rbp1 + 0x40;
    let rbpm = rbp0 + 0x60;
    for (bp, saved, ret) in [
        (rbp3, rbp2, ra2 + BIAS.0),
        (rbp2, rbp1, ra1 + BIAS.0),
        (rbp1, rbp0, ra0 + BIAS.0),
        (rbp0, rbpm, ram + BIAS.0),
        (rbpm, 0, LIBC),
    ] {
        s.put(bp, saved);
        s.put(bp + 8, ret);
    }
    let r = regs(pc + BIAS.0, STACK, rbp3);
    let want = proc(&[pc, ra2, ra1, ra0, ram]);
    for method in [UnwindMethod::Cfi, UnwindMethod::FramePointers] {
        let u = StackUnwinder::with_method(&b, BIAS, method);
        assert_eq!(u.unwind(&r, STACK, &s.0, 64), want, "{method:?}");
    }
    assert_eq!(tracery_dwarf::unwind(&b, BIAS, &r, STACK, &s.0, 64), want);
    // max_frames caps the walk; a stack copy that ends early stops it cleanly.
    assert_eq!(
        tracery_dwarf::unwind(&b, BIAS, &r, STACK, &s.0, 2),
        want[..2]
    );
    let short = &s.0[..(rbp1 + 16 - STACK) as usize];
    assert_eq!(
        tracery_dwarf::unwind(&b, BIAS, &r, STACK, short, 64),
        want[..4]
    );

    let frames = Symbolizer::new(&b).unwrap().stack(BIAS, &want);
    assert_eq!(
        names_and_lines(&frames),
        vec![
            ("level3", Some(line), false),
            (
                "level2",
                Some(source_line("c", "return level3(x + 2) + 1;")),
                false
            ),
            (
                "level1",
                Some(source_line("c", "return level2(x + 1) + 1;")),
                false
            ),
            (
                "serve",
                Some(source_line("c", "sink += level1(depth);")),
                false
            ),
            ("main", Some(source_line("c", "        serve();")), false),
        ]
    );
    assert!(frames
        .iter()
        .all(|f| f.file.as_deref().unwrap().ends_with("c/orders.c")));
    assert_eq!(frames[1].address, ObjAddr(ra2));
}

/// c-O2's level functions keep no frame pointer (rbp is garbage here): only CFI finds the
/// callers. The copy ends inside main's frame, which stops the walk there.
#[test]
fn c_o2_stack_needs_cfi() {
    let b = open("c-O2");
    let (file, line) = marker("c_level3");
    let pc = site(&b, &format!("{file}:{line}"));
    let ra2 = return_address(&b, "level2", "level3");
    let ra1 = return_address(&b, "level1", "level2");
    // serve() is inlined into main at -O2.
    let ram = return_address(&b, "main", "level1");
    let mut s = Stack::new(24);
    s.put(STACK, ra2 + BIAS.0);
    s.put(STACK + 8, ra1 + BIAS.0);
    s.put(STACK + 16, ram + BIAS.0);
    let r = regs(pc + BIAS.0, STACK, 0);

    let cfi = StackUnwinder::new(&b, BIAS).unwind(&r, STACK, &s.0, 64);
    assert_eq!(cfi, proc(&[pc, ra2, ra1, ram]));
    let fp = StackUnwinder::with_method(&b, BIAS, UnwindMethod::FramePointers);
    assert_eq!(fp.unwind(&r, STACK, &s.0, 64), proc(&[pc]));

    let frames = Symbolizer::new(&b).unwrap().stack(BIAS, &cfi);
    assert_eq!(
        names_and_lines(&frames),
        vec![
            ("level3", Some(line), false),
            (
                "level2",
                Some(source_line("c", "return level3(x + 2) + 1;")),
                false
            ),
            (
                "level1",
                Some(source_line("c", "return level2(x + 1) + 1;")),
                false
            ),
            (
                "serve",
                Some(source_line("c", "sink += level1(depth);")),
                true
            ),
            ("main", Some(source_line("c", "        serve();")), false),
        ]
    );
}

/// Go binaries carry `.debug_frame`, not `.eh_frame`. With rbp zeroed, only that CFI can
/// walk level3 → level2 → level1 → serve.
#[test]
fn go_stack_by_debug_frame() {
    let b = open("go-noopt");
    assert!(b.frame_sections().eh_frame.is_none());
    assert!(b.frame_sections().debug_frame.is_some());
    // After Go's prologue end the frame is not set up yet: the return address is at rsp.
    let pc = site(&b, "main.level3");
    let ra2 = return_address(&b, "main.level2", "main.level3");
    let ra1 = return_address(&b, "main.level1", "main.level2");
    let ra0 = return_address(&b, "main.serve", "main.level1");
    let (n2, n1) = (
        go_frame_size(&b, "main.level2"),
        go_frame_size(&b, "main.level1"),
    );
    let s0 = STACK;
    let s1 = s0 + 8;
    let s2 = s1 + n2 + 8;
    let mut s = Stack::new(s2 + n1 + 8 - STACK);
    s.put(s0, ra2 + BIAS.0);
    s.put(s1 + n2, ra1 + BIAS.0);
    s.put(s2 + n1, ra0 + BIAS.0);
    let r = regs(pc + BIAS.0, STACK, 0);
    let pcs = StackUnwinder::new(&b, BIAS).unwind(&r, STACK, &s.0, 64);
    assert_eq!(pcs, proc(&[pc, ra2, ra1, ra0]));
    let frames = Symbolizer::new(&b).unwrap().stack(BIAS, &pcs);
    assert_eq!(
        names_and_lines(&frames),
        vec![
            (
                "main.level3",
                Some(source_line("go", "func level3(x int) int {")),
                false
            ),
            (
                "main.level2",
                Some(source_line("go", "return level3(x+2) + 1")),
                false
            ),
            (
                "main.level1",
                Some(source_line("go", "return level2(x+1) + 1")),
                false
            ),
            (
                "main.serve",
                Some(source_line("go", "sink += level1(1)")),
                false
            ),
        ]
    );
}

#[test]
fn inlined_frames_come_innermost_first() {
    let b = open("c-O2");
    let (file, line) = marker("c_inline");
    let pcs = resolve(&b, &format!("{file}:{line}")).unwrap();
    let sym = Symbolizer::new(&b).unwrap();
    let call_line = source_line("c", "int discounted = apply_discount(weighted, 10);");
    for s in pcs {
        let frames = sym.frames(s.address, false);
        assert_eq!(
            names_and_lines(&frames),
            vec![
                ("apply_discount", Some(line), true),
                ("process_order", Some(call_line), false),
            ]
        );
        assert!(frames.iter().all(|f| f.address == s.address));
        assert!(frames
            .iter()
            .all(|f| f.file.as_deref().unwrap().ends_with("c/orders.c")));
    }

    let b = open("rust-release");
    let (file, line) = marker("rust_inline");
    let sym = Symbolizer::new(&b).unwrap();
    let site = resolve(&b, &format!("{file}:{line}")).unwrap()[0].clone();
    let frames = sym.frames(site.address, false);
    let ours: Vec<_> = frames
        .iter()
        .filter(|f| {
            f.file
                .as_deref()
                .is_some_and(|p| p.ends_with("rust/orders.rs"))
        })
        .map(|f| (f.function.as_str(), f.line, f.inlined))
        .collect();
    assert_eq!(
        ours,
        vec![
            ("orders::apply_discount", Some(line), true),
            (
                "orders::process_order",
                Some(source_line(
                    "rust",
                    "let discounted = apply_discount(weighted, 10);"
                )),
                false
            ),
        ]
    );
}

#[test]
fn code_without_dwarf_is_named_by_its_elf_symbol() {
    let b = open("c-O0");
    let sym = Symbolizer::new(&b).unwrap();
    // `_start` comes from crt1.o, which has no DWARF.
    let start = b.symbols().iter().find(|s| s.name == "_start").unwrap();
    let frames = sym.frames(start.address, false);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].function, "_start");
    assert!(!frames[0].inlined);
}
