//! Builds the eBPF object with Debian's rustc and the prebuilt BPF core, then lets the
//! agent embed it. `aya-build` cannot be used here: it runs `rustup run nightly` with
//! `-Z build-std`, and this toolchain has no rust-src (see docs/ebpf-toolchain.md).
//!
//! Set `TRACERY_EBPF_OBJECT=/path/to/tracery` to embed a prebuilt object instead.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const BPF_RUSTC: &str = "/usr/bin/rustc";
const TARGET: &str = "bpfel-unknown-none";

fn main() {
    println!("cargo:rerun-if-env-changed=TRACERY_EBPF_OBJECT");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dest = out_dir.join("tracery.bpf.o");

    if let Some(prebuilt) = env::var_os("TRACERY_EBPF_OBJECT") {
        let prebuilt = PathBuf::from(prebuilt);
        println!("cargo:rerun-if-changed={}", prebuilt.display());
        std::fs::copy(&prebuilt, &dest).unwrap_or_else(|e| {
            panic!(
                "cannot copy TRACERY_EBPF_OBJECT {}: {e}",
                prebuilt.display()
            )
        });
        return;
    }

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let ebpf_dir = manifest_dir.join("../tracery-ebpf");
    let common_dir = manifest_dir.join("../tracery-common");
    for dir in [ebpf_dir.join("src"), common_dir.join("src")] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    for file in ["Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(file).display());
    }

    check_toolchain();
    let target_dir = out_dir.join("ebpf-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ebpf_dir)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC", BPF_RUSTC)
        // The prebuilt BPF core needs unstable codegen flags; Debian's rustc allows them so.
        .env("RUSTC_BOOTSTRAP", "1");
    // The outer build's wrappers and flags are for the host target, not for BPF.
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTDOC",
        "CARGO_MAKEFLAGS",
        "RUSTUP_TOOLCHAIN",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the eBPF object: {e}"));
    if !status.success() {
        panic!("building the eBPF object failed (see above); `cargo xtask setup` installs the toolchain");
    }
    let built = target_dir.join(TARGET).join("release").join("tracery");
    std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
}

fn check_toolchain() {
    let mut missing = Vec::new();
    if !Path::new(BPF_RUSTC).exists() {
        missing.push("Debian's rustc-web (/usr/bin/rustc)");
    }
    if !Path::new("/usr/lib/rustlib/bpfel-unknown-none").exists() {
        missing.push("the prebuilt BPF core (libstd-rust-web-dev-bpf)");
    }
    let linker_ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !linker_ok {
        missing.push("bpf-linker 0.13 (in PATH)");
    }
    if !missing.is_empty() {
        panic!(
            "cannot build the eBPF object: missing {}. Run `cargo xtask setup` (as root on Debian 12), \
             or set TRACERY_EBPF_OBJECT to a prebuilt object.",
            missing.join(", ")
        );
    }
}
