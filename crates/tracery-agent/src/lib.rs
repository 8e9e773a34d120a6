//! The Tracery node agent: attaches the capture uprobe to processes, drains hits from the
//! kernel and turns them into snapshots with the help of `tracery-dwarf`.

pub mod discovery;
pub mod error;
pub mod eval;
pub mod exec_watch;
pub mod freeze;
mod freezer;
pub mod hold;
#[doc(hidden)]
pub mod keeper;
pub mod link;
pub mod loader;
pub mod manager;
pub mod privilege;
pub mod probes;
pub mod process;
pub mod ring;
pub mod session;
pub mod snapshot;
pub mod suspend;
mod sys;
pub mod tracker;
pub mod wire;

pub use discovery::{DiscoveryError, Matcher, Services};
pub use error::AgentError;
pub use exec_watch::{Exec, ExecWatcher};
pub use link::{LinkError, LinkOptions};
pub use manager::{BreakpointSpec, BreakpointStatus, Ended, Manager, Target};
pub use probes::{AttachTarget, ProbeTable, ProgramKind, SlotId};
pub use process::TargetProcess;
pub use ring::{HitReader, RawHit};
pub use session::{prepare, ArmOptions, LoadedBinary, PreparedBreakpoint, Session};
pub use snapshot::{Clock, Location, Snapshot, StackFrame};
