//! Fuzz targets for the parsers of Tracery that read untrusted input: ELF/DWARF files, `--when`
//! conditions, HTTP trace headers, held messages and gRPC messages.
//!
//! Each module's `run` takes one input and panics on a bug: a panic of the code under test,
//! or a broken invariant that the module checks (round trips, bounds). The binaries under
//! `src/bin` hand them to libFuzzer; `cargo xtask fuzz` builds those with coverage and runs
//! them. Why libFuzzer through `libfuzzer-sys` and not cargo-fuzz: cargo-fuzz needs nightly,
//! and `-Cpasses=sancov-module` gives the same coverage on stable. The test
//! `tests/seeds.rs` runs every target over its seeds and saved crashes in the normal suite.

pub mod condition;
pub mod dwarf;
pub mod proto;
pub mod seeds;
mod sys;
pub mod trace_header;
pub mod wire;

pub use sys::{BoundedAlloc, MAX_ALLOCATION};

/// One fuzz target: its name (the binary is `fuzz-NAME`), its entry point, and its seeds.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    /// Starting inputs; the DWARF target compiles its own (see [`seeds::elf`]).
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "dwarf",
        run: dwarf::run,
        seeds: seeds::elf,
    },
    Target {
        name: "condition",
        run: condition::run,
        seeds: seeds::condition,
    },
    Target {
        name: "trace-header",
        run: trace_header::run,
        seeds: seeds::trace_header,
    },
    Target {
        name: "wire",
        run: wire::run,
        seeds: seeds::wire,
    },
    Target {
        name: "proto",
        run: proto::run,
        seeds: seeds::proto,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
