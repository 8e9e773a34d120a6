//! ELF and DWARF for Tracery: everything that needs debug information and no live process.
//!
//! Loads binaries ([`Binary`]), resolves source locations to probe sites, compiles variable
//! locations into kernel fetch plans, decodes captured bytes into typed values, renders them
//! per language, and unwinds and symbolizes captured stacks. Nothing here touches a running
//! process: memory comes in as bytes. [`Executable`] holds all of it for one file, built
//! lazily, for callers that probe that file more than once.

// Malformed DWARF and odd binaries are inputs, not bugs: they must not panic the agent.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod address;
pub mod binary;
pub mod bytes;
pub mod error;
pub mod executable;
pub mod go_runtime;
pub mod tokio_runtime;

pub use address::{FileOffset, LoadBias, ObjAddr, ProcAddr};
pub use binary::{build_id, Binary};
pub use bytes::Bytes;
pub use error::BinaryError;
pub use executable::Executable;

// Locations, listings, stacks.
pub mod index;
mod insn;
pub mod lines;
pub mod resolve;
pub mod symbolize;
pub mod symbols;
pub mod unwind;

pub use index::DebugIndex;
pub use lines::{lines, LineInfo};
pub use resolve::{resolve, ProbeSite, ResolveError};
pub use symbolize::{Frame, Symbolizer};
pub use symbols::{functions, FunctionInfo};
pub use unwind::{unwind, StackUnwinder, UnwindMethod};

// Variables, fetch plans, values.
pub mod condition;
pub mod decode;
pub mod emulate;
pub mod fetch_plan;
pub mod render;
mod scope;
mod step_free;
pub mod types;
pub mod value;

pub use decode::decode;
pub use fetch_plan::{compile_plan, CaptureLimits, CapturePlan, PlanError, ScalarSlot};
pub use render::{render_text, Language, SourceLanguage};
pub use value::{Value, VarKind, Variable};
