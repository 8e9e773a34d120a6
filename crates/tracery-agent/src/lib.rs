//! The Tracery node agent: attaches the capture uprobe to processes, drains hits from the
//! kernel and turns them into snapshots with the help of `tracery-dwarf`.

//! The modules follow a hit's flow: [`capture`] loads the eBPF object, prepares and arms
//! breakpoints and decodes their hits; [`freeze`] follows which request each thread serves
//! and stops, holds and releases a frozen one; [`link`] is the stream to the controller.
//! [`manager`] ties them together per breakpoint; [`discovery`] and [`exec_watch`] find the
//! processes a breakpoint targets, and [`pods`] the Kubernetes pods they run in. [`node`]
//! sets breakpoints in Node.js processes through V8's inspector instead of uprobes.

pub mod capture;
pub mod discovery;
pub mod error;
pub mod exec_watch;
pub mod freeze;
mod late_arming;
pub mod link;
pub mod manager;
pub mod node;
pub mod pods;
pub mod privilege;
pub mod process;
pub mod python;
mod sys;

pub use capture::executables::Executables;
pub use capture::probes::{AttachTarget, ProbeTable, ProgramKind, SlotId};
pub use capture::program_stats::ProgramStats;
pub use capture::ring::{HitReader, RawHit};
pub use capture::session::{
    prepare, ArmOptions, CgroupFilter, PreparedBreakpoint, PreparedFile, Session,
};
pub use capture::snapshot::{Clock, Location, Snapshot, StackFrame};
pub use discovery::{DiscoveryError, Matcher, NodeCgroup, Services};
pub use error::{AgentError, FeatureError, HoldError};
pub use exec_watch::{Exec, ExecWatcher};
pub use link::{LinkError, LinkOptions};
pub use manager::{BreakpointSpec, BreakpointStatus, Ended, Manager, Target};
pub use pods::{PodDirectory, PodSelector};
pub use process::TargetProcess;
