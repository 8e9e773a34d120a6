//! The value tree a hit decodes into. It lives in `tracery-model`, shared with the
//! agent, the controller's wire types and the CLI; re-exported here so this crate's API
//! stays as it was.

pub use tracery_model::value::{is_option, is_tuple, Value, VarKind, Variable};
