//! Errors of the DWARF crate. Each message says what to do next.

use std::path::PathBuf;

/// Loading a binary or its debug information failed.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an ELF file this tool can read")]
    Parse {
        path: PathBuf,
        #[source]
        source: object::Error,
    },
    #[error("{path} is a {arch} binary; Tracery supports x86-64")]
    Architecture { path: PathBuf, arch: String },
    #[error(
        "section {section} of {path} says it holds {claimed} bytes once decompressed, \
         impossible from its {stored} stored bytes; the file is corrupt, rebuild it"
    )]
    CompressedSize {
        path: PathBuf,
        section: &'static str,
        claimed: u64,
        stored: u64,
    },
    #[error("cannot decompress section {section} of {path}")]
    Section {
        path: PathBuf,
        section: &'static str,
        #[source]
        source: object::Error,
    },
    #[error(
        "no DWARF in {path}; rebuild with -g (Rust: debug = true or debug = 1; Go: without -ldflags=-w) or pass --debug-file"
    )]
    NoDwarf { path: PathBuf },
    #[error("bad DWARF in {path}")]
    Dwarf {
        path: PathBuf,
        #[source]
        source: gimli::Error,
    },
}
