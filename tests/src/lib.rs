//! Fixture programs for Tracery's tests: building them, finding their probe lines, and
//! running them.
//!
//! The fixtures live under `tests/fixtures/{c,rust,go}`. Each is built on first use, per
//! variant (compiler and flags), into `<target>/fixtures/<variant>/orders`.

pub mod demo;
mod fixture;
pub mod held;
pub mod http;
pub mod kubelet;
mod marker;
pub mod mock_kube;
pub mod node;
pub mod otlp_receiver;
mod private_copy;
mod process;
pub mod redis_server;
mod sys;

pub use fixture::{fixture, fixture_source, DEMO_SERVICES, SERVER_FIXTURES, VARIANTS};
pub use marker::{marker_line, markers};
pub use private_copy::PrivateCopy;
pub use process::FixtureProcess;
pub use sys::{clock_ticks, is_root};

/// Fails the calling test unless it runs as root: these tests load eBPF programs and
/// ptrace processes, and must fail loudly rather than pass quietly without them.
pub fn require_root() {
    assert!(
        is_root(),
        "this test loads eBPF programs or ptraces processes and needs root: \
         run `cargo xtask test` as root"
    );
}

#[cfg(test)]
mod selftest;
