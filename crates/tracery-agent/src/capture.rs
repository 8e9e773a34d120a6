//! Capturing a breakpoint's hits: the eBPF object ([`loader`]), probes attached by file
//! offset and cookie ([`probes`]), the executables loaded for them ([`executables`]) and
//! their debug files ([`debug_file`]), breakpoints prepared from DWARF and armed
//! ([`session`]), the ring buffer they write to ([`ring`]), the snapshots decoded from it
//! ([`snapshot`]), and the `--when` condition split between kernel and user space
//! ([`when`]).

pub mod debug_file;
pub mod executables;
pub mod loader;
pub mod probes;
pub mod program_stats;
pub mod ring;
pub mod session;
pub mod snapshot;
pub mod when;
