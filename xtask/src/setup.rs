//! `cargo xtask setup`: install, idempotently, the toolchain and services that building
//! and testing need (docs/ebpf-toolchain.md lists them and why).

use std::{path::Path, process::Command};

use anyhow::{bail, Result};

use crate::{host, run_checked};

/// Debian packages: the BPF-capable rustc and its prebuilt core, what bpf-linker links
/// against, the fixture compilers, the test databases, bpftool, iproute2, and the venv
/// module the manifest validator is installed with.
const APT_PACKAGES: &[&str] = &[
    "rustc-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "golang-go",
    "gcc",
    // C++ fixtures (libstdc++ values) and their oracle: gdb's `print` with the libstdc++
    // pretty-printers that Debian's gdb and libstdc++ ship.
    "g++",
    "gdb",
    // Only recommended by gcc, and images that skip recommends would lack libc headers.
    "libc6-dev",
    "postgresql",
    "redis-server",
    "bpftool",
    // `ip`: the demo's nodes are network namespaces joined to the host by veths.
    "iproute2",
    // `python3 -m venv` for kubernetes-validate: Debian 12's python refuses `pip install`
    // outside a virtual environment (PEP 668).
    "python3-venv",
    // The web view's tests and `bench ui` drive Debian's headless chromium.
    "chromium",
    // Python breakpoint tests and `bench python` run their fixture under Debian's
    // /usr/bin/python3.11 (the CPython version Tracery has offsets for).
    "python3.11",
];

/// Debian's Node.js package (18.x on Debian 12).
const NODE_PACKAGE: &str = "nodejs";

/// A fresh VM may be running unattended upgrades: wait for the dpkg lock, do not fail.
const APT_LOCK_WAIT: &str = "-oDPkg::Lock::Timeout=600";

const BPF_LINKER_VERSION: &str = "0.13.0";
/// bpf-linker's default feature wants LLVM 23, which Debian 12 does not have.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Validates deploy/kubernetes against the Kubernetes OpenAPI schemas, offline
/// (tests/tests/kubernetes_manifests.rs runs it). Pinned: its bundled schemas decide what
/// passes.
const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";
/// Its virtual environment. The test looks for the executable here too: keep them in step.
const KUBERNETES_VALIDATE_VENV: &str = "/var/cache/tracery/kubernetes-validate";
/// Debian's python, the one python3-venv is for (a PATH lookup may find another).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Filesystems the agent needs: pinned maps and tracepoint ids.
const MOUNTS: &[Mount] = &[
    Mount {
        fstype: "bpf",
        point: "/sys/fs/bpf",
    },
    Mount {
        fstype: "tracefs",
        point: "/sys/kernel/tracing",
    },
];

pub enum Mode {
    /// Report only; fail if anything is missing.
    Check,
    /// Install what is missing. `quiet` prints nothing when nothing is missing.
    Install { quiet: bool },
}

struct Mount {
    fstype: &'static str,
    point: &'static str,
}

/// One thing set-up checks and can install.
enum Item {
    Apt(&'static str),
    /// Node.js for the Node breakpoint tests and bench: Debian's `nodejs`, installed only
    /// when no `node` (or `nodejs`) runs, so a newer Node already there is kept.
    Node,
    BpfLinker,
    KubernetesValidate,
    Mount(&'static Mount),
}

impl Item {
    fn all() -> Vec<Item> {
        let mut items: Vec<Item> = APT_PACKAGES.iter().map(|p| Item::Apt(p)).collect();
        items.push(Item::Node);
        items.push(Item::BpfLinker);
        items.push(Item::KubernetesValidate);
        items.extend(MOUNTS.iter().map(Item::Mount));
        items
    }

    fn name(&self) -> String {
        match self {
            Item::Apt(package) => (*package).to_string(),
            Item::Node => format!("node (Debian's {NODE_PACKAGE} when missing)"),
            Item::BpfLinker => format!("bpf-linker {BPF_LINKER_VERSION}"),
            Item::KubernetesValidate => format!(
                "kubernetes-validate {KUBERNETES_VALIDATE_VERSION} in {KUBERNETES_VALIDATE_VENV}"
            ),
            Item::Mount(m) => format!("{} on {}", m.fstype, m.point),
        }
    }

    fn is_present(&self) -> bool {
        match self {
            Item::Apt(package) => apt_installed(package),
            Item::Node => node_installed(),
            Item::BpfLinker => bpf_linker_installed(),
            Item::KubernetesValidate => kubernetes_validate_installed(),
            Item::Mount(m) => host::is_mounted(m.point, m.fstype),
        }
    }
}

/// Runs set-up in `mode`. Errors say what the user must do.
pub fn run(mode: Mode) -> Result<()> {
    if !host::is_debian() {
        print_manual_steps();
        bail!("automatic set-up needs Debian 12 with apt-get; install the above by hand");
    }
    let items: Vec<(Item, bool)> = Item::all()
        .into_iter()
        .map(|item| {
            let present = item.is_present();
            (item, present)
        })
        .collect();
    let missing: Vec<String> = items
        .iter()
        .filter(|(_, present)| !present)
        .map(|(item, _)| item.name())
        .collect();

    match mode {
        Mode::Check => {
            for (item, present) in &items {
                let state = if *present { "ok  " } else { "missing" };
                println!("{state} {}", item.name());
            }
            if !missing.is_empty() {
                bail!(
                    "missing: {}; run `cargo xtask setup` as root",
                    missing.join(", ")
                );
            }
            Ok(())
        }
        Mode::Install { quiet } => {
            if quiet && missing.is_empty() {
                return Ok(());
            }
            if !missing.is_empty() && !host::is_root() {
                bail!(
                    "set-up must install {} and needs root for that; run it as root, \
                     e.g. `sudo env \"PATH=$PATH\" cargo xtask setup`",
                    missing.join(", ")
                );
            }
            install(&items)
        }
    }
}

fn install(items: &[(Item, bool)]) -> Result<()> {
    // apt first: bpf-linker links against llvm-22-dev. One apt-get run for all packages.
    let missing_apt: Vec<&str> = items
        .iter()
        .filter_map(|(item, present)| match item {
            Item::Apt(package) if !present => Some(*package),
            Item::Node if !present => Some(NODE_PACKAGE),
            _ => None,
        })
        .collect();
    for (item, present) in items {
        if matches!(item, Item::Apt(_) | Item::Node) && *present {
            println!("ok   {}", item.name());
        }
    }
    if !missing_apt.is_empty() {
        for package in &missing_apt {
            println!("install {package} ...");
        }
        apt_install(&missing_apt)?;
        for package in &missing_apt {
            if !apt_installed(package) {
                bail!("apt-get reported success but {package} is still not installed");
            }
            println!("ok   {package}");
        }
    }

    for (item, present) in items {
        match item {
            Item::Apt(_) | Item::Node => {}
            Item::BpfLinker => {
                if !present {
                    println!(
                        "install {} ... (cargo install; about 3 minutes on 2 cores)",
                        item.name()
                    );
                    install_bpf_linker()?;
                    if !item.is_present() {
                        bail!(
                            "cargo install finished but bpf-linker {BPF_LINKER_VERSION} is not found"
                        );
                    }
                }
                println!("ok   {}", item.name());
                if host::find_program_in_path("bpf-linker").is_none() {
                    println!(
                        "     note: add {} to PATH: rustc looks for bpf-linker there",
                        host::cargo_bin_dir().display()
                    );
                }
            }
            Item::KubernetesValidate => {
                if !present {
                    println!("install {} ... (pip, from PyPI)", item.name());
                    install_kubernetes_validate()?;
                    if !item.is_present() {
                        bail!(
                            "pip finished but kubernetes-validate {KUBERNETES_VALIDATE_VERSION} \
                             is not in {KUBERNETES_VALIDATE_VENV}"
                        );
                    }
                }
                println!("ok   {}", item.name());
            }
            Item::Mount(m) => {
                if !present {
                    println!("install {} ...", item.name());
                    run_checked(Command::new("mount").args(["-t", m.fstype, m.fstype, m.point]))?;
                }
                println!("ok   {}", item.name());
            }
        }
    }
    Ok(())
}

/// True when `node` or Debian's `nodejs` runs.
fn node_installed() -> bool {
    ["node", "nodejs"].iter().any(|bin| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

fn apt_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout == b"install ok installed")
}

fn apt_install(packages: &[&str]) -> Result<()> {
    // Fresh machines have empty or stale package lists; refresh once, only when installing.
    run_checked(
        Command::new("apt-get")
            .args(["update", APT_LOCK_WAIT])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", APT_LOCK_WAIT])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn bpf_linker_installed() -> bool {
    let Some(path) = host::find_program("bpf-linker") else {
        return false;
    };
    Command::new(path)
        .arg("--version")
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .any(|word| word == BPF_LINKER_VERSION)
        })
}

fn install_bpf_linker() -> Result<()> {
    run_checked(
        Command::new(crate::cargo())
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22", "--locked"])
            // Without it, bpf-linker's build script looks in /usr/lib64 and cannot find LLVM.
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )
}

fn kubernetes_validate_installed() -> bool {
    Command::new(Path::new(KUBERNETES_VALIDATE_VENV).join("bin/kubernetes-validate"))
        .arg("--version")
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).trim() == KUBERNETES_VALIDATE_VERSION
        })
}

/// A virtual environment of Debian's python with the pinned kubernetes-validate in it.
fn install_kubernetes_validate() -> Result<()> {
    let venv = Path::new(KUBERNETES_VALIDATE_VENV);
    let pip = venv.join("bin/pip");
    if !pip.exists() {
        run_checked(Command::new(SYSTEM_PYTHON).args(["-m", "venv"]).arg(venv))?;
    }
    run_checked(
        Command::new(pip)
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .arg(format!(
                "kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}"
            )),
    )
}

fn print_manual_steps() {
    eprintln!(
        "\
This is not Debian (no /etc/debian_version or no apt-get), so `cargo xtask setup` cannot
install anything. Install these by hand, then run the tests as root:

  - Debian's Rust 1.96 with LLVM 22 as /usr/bin/rustc, and the prebuilt core/alloc for
    bpfel-unknown-none under /usr/lib/rustlib (Debian 12: rustc-web, libstd-rust-web-dev-bpf)
  - LLVM 22 development files, Polly, zlib and zstd headers
    (Debian: llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev)
  - bpf-linker {BPF_LINKER_VERSION}, built against LLVM 22:
      LLVM_PREFIX=<your LLVM 22 prefix> cargo install bpf-linker --version {BPF_LINKER_VERSION} \\
        --no-default-features --features llvm-22 --locked
    and cargo's bin directory in PATH
  - gcc with C library headers, Go >= 1.19, PostgreSQL 15, Redis 7, bpftool, iproute2
  - kubernetes-validate {KUBERNETES_VALIDATE_VERSION} from PyPI in a virtual environment at
    {KUBERNETES_VALIDATE_VENV}:
      python3 -m venv {KUBERNETES_VALIDATE_VENV}
      {KUBERNETES_VALIDATE_VENV}/bin/pip install kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}
  - the BPF and trace filesystems:
      mount -t bpf bpf /sys/fs/bpf
      mount -t tracefs tracefs /sys/kernel/tracing"
    );
}
