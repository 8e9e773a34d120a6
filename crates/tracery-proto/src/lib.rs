//! Tracery's gRPC API, package `tracery.v1`.
//!
//! Two services: [`v1::tracery_server::Tracery`] (CLI ↔ controller) and
//! [`v1::agent_link_server::AgentLink`] (agent ↔ controller, one bidirectional stream).
//! The `.proto` files under `proto/tracery/v1/` are the source of truth; [`convert`]
//! holds the hand-written conversions to and from domain types (`tracery_model`); [`trace`] the
//! trace-id and header checks every side shares.

// The API is read from the generated docs, which come from the `.proto` comments: a new
// message or field without a comment fails clippy's `-D warnings`.
#![warn(missing_docs)]

pub mod convert;
pub mod trace;

pub use convert::ConvertError;

/// Generated messages, clients (`*_client`) and servers (`*_server`) of `tracery.v1`.
#[expect(
    clippy::large_enum_variant,
    reason = "generated oneofs: `Arm` carries a whole breakpoint, but it is rare, so boxing it would buy nothing"
)]
pub mod v1 {
    tonic::include_proto!("tracery.v1");
}
