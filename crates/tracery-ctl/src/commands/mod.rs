//! One module per subcommand.

pub mod audit;
pub mod breakpoint;
pub mod certs;
#[cfg(feature = "probe")]
pub mod probe;
pub mod probe_python;
pub mod query;
pub mod snapshot;
pub mod status;
#[cfg(feature = "symbols")]
pub mod symbols;
pub mod trace;
