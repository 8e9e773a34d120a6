//! Trace scoping and freezing: which requests a breakpoint fires for, and what the agent
//! does to the request's thread when it freezes it.
//!
//! [`tracking`] follows which request each thread, goroutine and task serves;
//! [`suspend`] stops a frozen request's thread; [`hold`] and [`keeper`] hold its messages,
//! and both find a process's sockets through [`connections`]; [`eval`] reads a stopped
//! thread's memory on demand.

pub mod connections;
pub mod eval;
pub(crate) mod freezer;
pub mod hold;
#[doc(hidden)]
pub mod keeper;
mod kernel_btf;
pub mod messages;
pub mod suspend;
mod syscall_hooks;
pub mod tracking;

pub use tracery_model::freeze::{
    FreezeSpec, FrozenThread, HeldMessage, HoldRelease, ReleaseReason, Released, Suspension,
    TraceScope, MAX_FREEZE,
};
pub use tracery_model::TraceId;

/// What `resume` did.
#[derive(Clone, Debug)]
pub enum ResumeOutcome {
    /// These threads and held messages were let go now.
    Resumed {
        threads: Vec<Released>,
        held: Option<HoldRelease>,
    },
    /// Nothing of the trace is frozen on this node; when it was last released, if known.
    NotFrozen(Option<Released>),
}

/// A change to the frozen requests of this node, for the control plane.
#[derive(Clone, Debug)]
pub enum FreezeEvent {
    Frozen(FrozenThread),
    Released(Released),
    /// A message of a frozen trace is now held here.
    Held(HeldMessage),
    /// A trace's held messages here were let go.
    HoldReleased(HoldRelease),
    /// Sends and receives of traced requests seen here.
    Messages(tracery_model::message::MessageBatch),
}

/// Why `trace eval` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("trace {0} has no stopped thread on this node")]
    NotStopped(TraceId),
    #[error("{0}")]
    Expression(String),
    #[error("reading the stopped thread failed: {0}")]
    Read(String),
}
