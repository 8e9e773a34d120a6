//! One module per subcommand.

pub mod breakpoint;
pub mod probe;
pub mod snapshot;
pub mod status;
pub mod symbols;
pub mod trace;
