//! Node.js breakpoints through V8's inspector, with no restart and no pause.
//!
//! Node has no DWARF for its JavaScript, so uprobes cannot reach its lines. The agent opens
//! the running process's inspector with SIGUSR1 ([`inspector`]), speaks the Chrome DevTools
//! Protocol to it ([`cdp`]) and sets `FILE:LINE` breakpoints ([`breakpoints`]) whose
//! condition hands the scope to a capture function (`capture.js`, [`condition`]) and
//! evaluates to `false`: V8 never pauses, so the event loop, and every other request,
//! keeps running. The capture's JSON becomes an ordinary snapshot ([`values`]).

pub mod breakpoints;
pub mod cdp;
pub mod condition;
mod error;
pub mod inspector;
mod runtime;
pub mod scope;
mod sourcemap;
pub mod values;

pub use breakpoints::parse_location;
pub use error::NodeError;
pub use inspector::{is_node, Inspector};
pub use runtime::NodeRuntime;

/// True when `location` is a JavaScript or TypeScript `FILE:LINE`, which only Node runs.
pub fn is_node_location(location: &str) -> bool {
    parse_location(location).is_some()
}
