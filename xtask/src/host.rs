//! Facts about the machine that set-up and tests depend on.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

/// Whether we run as root (effective uid 0), read from /proc to avoid unsafe code.
pub fn is_root() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// Debian (or a derivative) with apt: the only platform set-up can install on.
pub fn is_debian() -> bool {
    Path::new("/etc/debian_version").exists() && find_program("apt-get").is_some()
}

/// Whether a filesystem of type `fstype` is mounted on `mountpoint`.
pub fn is_mounted(mountpoint: &str, fstype: &str) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/mounts") else {
        return false;
    };
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, kind) = (fields.next(), fields.next(), fields.next());
        target == Some(mountpoint) && kind == Some(fstype)
    })
}

/// `name` in PATH or in cargo's bin directory (which a fresh shell may not have in PATH).
pub fn find_program(name: &str) -> Option<PathBuf> {
    find_program_in_path(name).or_else(|| {
        let candidate = cargo_bin_dir().join(name);
        candidate.is_file().then_some(candidate)
    })
}

/// `name` in PATH only.
pub fn find_program_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Where `cargo install` puts binaries.
pub fn cargo_bin_dir() -> PathBuf {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin")
}

/// Cargo's target directory for this workspace (`CARGO_TARGET_DIR` when set).
pub fn target_dir(workspace: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace.join(p)
            }
        })
        .unwrap_or_else(|| workspace.join("target"))
}
