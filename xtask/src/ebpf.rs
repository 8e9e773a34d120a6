//! `cargo xtask build-ebpf`: the eBPF object, built with Debian's rustc and prebuilt BPF
//! core (no nightly, no build-std; see docs/ebpf-toolchain.md).
//!
//! Same command line as crates/tracery-agent/build.rs, which embeds the object in the agent;
//! keep the two in step.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// Debian's rustc-web: its sysroot has `core` prebuilt for the BPF targets.
const BPF_RUSTC: &str = "/usr/bin/rustc";
const TARGET: &str = "bpfel-unknown-none";
/// The `[[bin]]` name in crates/tracery-ebpf/Cargo.toml.
const OBJECT_NAME: &str = "tracery";

/// Variables that would point the nested build at the host toolchain or host flags.
const HOST_ONLY_ENV: &[&str] = &[
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_RUSTC",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_DIR",
    "RUSTDOC",
    "CARGO_MAKEFLAGS",
    "RUSTUP_TOOLCHAIN",
];

/// Builds the eBPF object into `<workspace>/target/ebpf` and returns its path.
pub fn build(workspace: &Path) -> Result<PathBuf> {
    check_toolchain()?;
    let target_dir = workspace.join("target/ebpf");
    let crate_dir = workspace.join("crates/tracery-ebpf");
    let mut cmd = Command::new(crate::cargo());
    // Run from the crate's own directory: its .cargo/config.toml carries the BPF rustflags,
    // and cargo reads config from the working directory, not from --manifest-path.
    cmd.current_dir(&crate_dir)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC", BPF_RUSTC)
        // The prebuilt BPF core needs unstable codegen flags; Debian's rustc allows them so.
        .env("RUSTC_BOOTSTRAP", "1");
    for var in HOST_ONLY_ENV {
        cmd.env_remove(var);
    }
    crate::run_checked(&mut cmd).context("building the eBPF object failed")?;
    let object = target_dir.join(TARGET).join("release").join(OBJECT_NAME);
    if !object.is_file() {
        bail!(
            "the eBPF build succeeded but {} is missing",
            object.display()
        );
    }
    Ok(object)
}

fn check_toolchain() -> Result<()> {
    let mut missing = Vec::new();
    if !Path::new(BPF_RUSTC).exists() {
        missing.push("Debian's rustc-web (/usr/bin/rustc)");
    }
    if !Path::new("/usr/lib/rustlib").join(TARGET).exists() {
        missing.push("the prebuilt BPF core (libstd-rust-web-dev-bpf)");
    }
    if crate::host::find_program_in_path("bpf-linker").is_none() {
        missing.push("bpf-linker in PATH");
    }
    if !missing.is_empty() {
        bail!(
            "cannot build the eBPF object: missing {}; run `cargo xtask setup` as root \
             (and put ~/.cargo/bin in PATH)",
            missing.join(", ")
        );
    }
    Ok(())
}
