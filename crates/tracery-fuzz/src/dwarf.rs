//! ELF/DWARF loading of a malformed binary through everything the agent does with one:
//! open, index, list functions and lines, resolve locations, compile fetch plans, decode a
//! hit of each plan and render it, unwind a stack and name its frames.
//!
//! Input: the file itself (seeds are real binaries from `gcc -g`, see [`crate::seeds::elf`]).
//! The bytes of a hit are taken from the file's own tail, so the decoder sees varied data
//! without a second input.

use std::{io::Write, path::PathBuf, sync::OnceLock};

use tracery_common::{
    record::{HitHeader, OpResult},
    regs::{pt, NUM_REGS},
    MAX_OPS,
};
use tracery_dwarf::{render_text, CaptureLimits, Executable, LoadBias, ProcAddr};

/// Most locations resolved, and plans compiled, per input: enough to reach every stage,
/// few enough to keep one run in milliseconds.
const MAX_SITES: usize = 4;

/// Where each input is written: `Binary` opens a path (it maps the file, and looks for a
/// separate debug file beside it). One file per process, in memory when /dev/shm exists.
fn input_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from("/dev/shm");
        let dir = if dir.is_dir() {
            dir
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("tracery-fuzz-{}.elf", std::process::id()))
    })
}

/// One input (see the module docs).
pub fn run(data: &[u8]) {
    let path = input_path();
    // Replace, not rewrite in place: the previous input's mapping may still be alive
    // in a cache of this process (it is not, but a truncated mapped file would SIGBUS).
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(data))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.expect("cannot write the fuzz input to a file");
    if let Ok(exe) = Executable::open(path) {
        exercise(&exe, data);
    }
    let _ = tracery_dwarf::build_id(path);
}

fn exercise(exe: &Executable, data: &[u8]) {
    let binary = exe.binary();
    let _ = (binary.is_pie(), binary.build_id(), binary.segments().len());
    let _ = binary.tls_block().map(|t| t.offset_below_thread_pointer());
    let index = exe.index();
    let functions = index.functions(binary, None);
    let _ = index.functions(binary, Some("pro*_or?er"));

    // Locations as a user gives them: a function, and FILE:LINE of its declaration.
    let mut locations: Vec<String> = Vec::new();
    for f in functions.iter().take(MAX_SITES) {
        locations.push(f.name.clone());
        if let (Some(file), Some(line)) = (&f.file, f.line) {
            locations.push(format!("{}:{}", file.display(), line + 1));
            if let Ok(lines) = index.lines(binary, &file.to_string_lossy()) {
                let _ = lines.len();
            }
        }
    }
    locations.push("orders.c:27".to_string());
    locations.push("no_such_function".to_string());

    let limits = CaptureLimits {
        max_string: 64,
        max_elements: 8,
        max_depth: 2,
        stack_bytes: 512,
    };
    let tail = &data[data.len().saturating_sub(4096)..];
    let mut planned = 0;
    for location in &locations {
        let Ok(sites) = exe.resolve(location) else {
            continue;
        };
        for site in sites.iter().take(MAX_SITES) {
            let _ = binary.file_offset(site.address);
            if planned >= MAX_SITES {
                break;
            }
            planned += 1;
            let Ok(plan) = exe.plan(site.address, &limits) else {
                continue;
            };
            let _ = plan.relocate(LoadBias(0x5555_0000_0000));
            let header = hit_header(site.address.0, tail);
            let vars = exe.decode(&plan, &header, tail);
            let _ = render_text(&vars, plan.language().language());
            let _ = plan.variables().count();
        }
    }

    // A stack of words from the tail, unwound from each function's entry.
    let bias = LoadBias(if binary.is_pie() { 0x5555_0000_0000 } else { 0 });
    for f in functions.iter().take(2) {
        let mut regs = [0u64; NUM_REGS];
        regs[pt::RIP as usize] = f.address.0.wrapping_add(bias.0);
        regs[pt::RSP as usize] = 0x7ffd_0000_0000;
        regs[pt::RBP as usize] = 0x7ffd_0000_0100;
        let _ = exe.stack(bias, &regs, 0x7ffd_0000_0000, tail, 16);
    }
    let pcs: Vec<ProcAddr> = functions
        .iter()
        .take(4)
        .map(|f| ProcAddr(f.address.0.wrapping_add(bias.0).wrapping_add(1)))
        .collect();
    let _ = exe.symbolize(bias, &pcs);
    let _ = exe.go_runtime();
    let _ = exe.tokio_runtime();
}

/// A hit header at `address` whose op results and registers come from `bytes`.
fn hit_header(address: u64, bytes: &[u8]) -> HitHeader {
    let mut words = bytes
        .chunks(8)
        .map(|c| c.iter().rev().fold(0u64, |w, &b| (w << 8) | u64::from(b)))
        .chain(std::iter::repeat(0));
    let mut regs = [0u64; NUM_REGS];
    for r in &mut regs {
        *r = words.next().unwrap_or(0);
    }
    regs[pt::RIP as usize] = address;
    let mut results = [OpResult::default(); MAX_OPS];
    for (i, r) in results.iter_mut().enumerate() {
        let b = bytes.get(i * 3..i * 3 + 3).unwrap_or(&[1, 8, 0]);
        *r = OpResult {
            status: b[0] % 7,
            _pad: 0,
            len: u16::from_le_bytes([b[1], b[2]]),
        };
    }
    HitHeader {
        breakpoint_id: 1,
        seq: 1,
        ktime_ns: 1,
        slot: 0,
        pid: 1,
        tid: 1,
        data_len: bytes.len() as u32,
        stack_offset: (bytes.len() / 2) as u32,
        stack_len: (bytes.len() / 2) as u32,
        flags: 0,
        _pad: 0,
        cgroup_id: 0,
        trace_id: [0; 16],
        span_id: [0; 8],
        regs,
        results,
    }
}
