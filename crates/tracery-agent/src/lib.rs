//! The Tracery node agent: attaches the capture uprobe to processes, drains hits from the
//! kernel and turns them into snapshots with the help of `tracery-dwarf`.

pub mod error;
pub mod loader;
pub mod privilege;
pub mod probes;
pub mod ring;
mod sys;

pub use error::AgentError;
pub use probes::{AttachTarget, ProbeTable, ProgramKind, SlotId};
pub use ring::{HitReader, RawHit};
