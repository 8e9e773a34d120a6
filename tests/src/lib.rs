//! Fixture programs for Tracery's tests: building them, finding their probe lines, and
//! running them.
//!
//! The fixtures live under `tests/fixtures/{c,rust,go}`. Each is built on first use, per
//! variant (compiler and flags), into `<target>/fixtures/<variant>/orders`.

pub mod demo;
mod fixture;
pub mod held;
pub mod http;
mod marker;
pub mod node;
mod process;
pub mod redis_server;
mod sys;

pub use fixture::{fixture, fixture_source, DEMO_SERVICES, SERVER_FIXTURES, VARIANTS};
pub use marker::{marker_line, markers};
pub use process::FixtureProcess;

#[cfg(test)]
mod selftest;
