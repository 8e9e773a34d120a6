//! Tracery's domain model: what a snapshot is, independent of how it is captured,
//! carried or stored.
//!
//! The value tree ([`Value`]), snapshots ([`Snapshot`]), their per-language rendering
//! ([`render`]), the `--when` grammar ([`condition`]), trace ids ([`trace`]) and the one
//! way errors become a line of text ([`error::chain`]).
//!
//! Why a crate of its own rather than `tracery-proto` (as linkerd2-proxy-api keeps its
//! domain types beside the protos): the DWARF crate builds these values and must not pull
//! tonic, prost and the HTTP/2 stack, while the CLI, the controller and the protos' own
//! conversions need them without gimli, object and iced-x86. This crate depends on
//! neither side (serde_json and humantime for the JSON form), so every other crate can use
//! it; the wire conversions stay in `tracery-proto` (`convert/`).

pub mod condition;
pub mod database;
pub mod error;
pub mod freeze;
pub mod message;
pub mod redact;
pub mod render;
pub mod snapshot;
pub mod trace;
pub mod value;
pub mod wire;

pub use database::DatabaseRead;
pub use redact::Redaction;
pub use render::{render_text, Language, SourceLanguage};
pub use snapshot::{Location, PodRef, Snapshot, StackFrame};
pub use trace::TraceId;
pub use value::{Value, VarKind, Variable};
