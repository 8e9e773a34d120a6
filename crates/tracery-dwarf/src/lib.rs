//! ELF and DWARF for Tracery: everything that needs debug information and no live process.
//!
//! Loads binaries ([`Binary`]), resolves source locations to probe sites, compiles variable
//! locations into kernel fetch plans, decodes captured bytes into typed values, renders them
//! per language, and unwinds and symbolizes captured stacks. Nothing here touches a running
//! process: memory comes in as bytes.

pub mod address;
pub mod binary;
pub mod error;

pub use address::{FileOffset, LoadBias, ObjAddr, ProcAddr};
pub use binary::Binary;
pub use error::BinaryError;
