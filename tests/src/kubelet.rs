//! Processes placed as kubelet places a pod's containers: cgroup v2 groups named exactly as
//! kubelet names them (systemd and cgroupfs drivers), under a parent group each test owns.
//! No container runtime runs here; the names and the processes in them are real.

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use crate::FixtureProcess;

/// A test's own cgroup parent, with kubelet's layouts below it. Every process in it is
/// killed and every group removed on drop.
pub struct Kubelet {
    root: PathBuf,
}

impl Kubelet {
    /// A new parent group for test `test` (root only).
    pub fn new(test: &str) -> Self {
        crate::require_root();
        let mount = crate::node::cgroup2_root().unwrap();
        let root = mount.join(format!("tracery-test-{test}-{}", std::process::id()));
        remove_tree(&root);
        fs::create_dir(&root).unwrap();
        Self { root }
    }

    /// A container's group under the systemd driver (burstable QoS, containerd).
    pub fn systemd(&self, pod_uid: &str, container_id: &str) -> PathBuf {
        let uid = pod_uid.replace('-', "_");
        self.group(&format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/\
             cri-containerd-{container_id}.scope"
        ))
    }

    /// A container's group under the cgroupfs driver (besteffort QoS).
    pub fn cgroupfs(&self, pod_uid: &str, container_id: &str) -> PathBuf {
        self.group(&format!("kubepods/besteffort/pod{pod_uid}/{container_id}"))
    }

    /// Any group below the parent (`outside` for a process in no pod).
    pub fn group(&self, below: &str) -> PathBuf {
        let dir = self.root.join(below);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        remove_tree(&self.root);
    }
}

/// Kills every process under `dir` and removes its groups, deepest first.
fn remove_tree(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let _ = fs::write(dir.join("cgroup.kill"), "1");
    let deadline = Instant::now() + Duration::from_secs(10);
    remove_groups(dir, deadline);
}

fn remove_groups(dir: &Path, deadline: Instant) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_groups(&e.path(), deadline);
        }
    }
    // A group is busy until its killed processes are reaped.
    while let Err(e) = fs::remove_dir(dir) {
        assert!(
            Instant::now() < deadline,
            "cannot remove cgroup {}: {e}",
            dir.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The C fixture (`c-O0 serve`: `level3` every 20 ms), started inside the cgroup `dir`
/// (it joins before its exec, as a container's process does).
pub fn spawn_in(dir: &Path) -> FixtureProcess {
    let procs = dir.join("cgroup.procs");
    let fixture = crate::fixture("c-O0");
    FixtureProcess::spawn_path(
        Path::new("/bin/sh"),
        &[
            "-c",
            "echo $$ > \"$1\" && exec \"$2\" serve",
            "sh",
            procs.to_str().unwrap(),
            fixture.to_str().unwrap(),
        ],
    )
}

/// Runs the C fixture with `mode` (`once`: one `process_order` call, exit 20 ms later)
/// inside the cgroup `dir` to its end. Returns its PID and how long it lived.
pub fn run_in(dir: &Path, mode: &str) -> (u32, Duration) {
    let start = Instant::now();
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "echo $$ > \"$1\" && exec \"$2\" \"$3\"", "sh"])
        .arg(dir.join("cgroup.procs"))
        .arg(crate::fixture("c-O0"))
        .arg(mode)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(
        child.wait().unwrap().success(),
        "c-O0 {mode} in {dir:?} failed"
    );
    (pid, start.elapsed())
}

/// A pod's sandbox (kubelet's `pause`): a process that starts in the pod before any of its
/// containers, and sleeps. Killed on drop.
pub struct Sandbox(std::process::Child);

impl Sandbox {
    /// Starts the sandbox process in the cgroup `dir`.
    pub fn start(dir: &Path) -> Self {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "echo $$ > \"$1\" && exec sleep 600", "sh"])
            .arg(dir.join("cgroup.procs"))
            .spawn()
            .unwrap();
        Self(child)
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pod uid unique to a test and a pod: tests share the pod key space through `/proc`, so
/// their uids must differ.
pub fn uid(test: u16, pod: u16) -> String {
    format!("7e57{test:04x}-0000-4000-8000-{pod:012x}")
}

/// A container id (64 hex digits) unique to a test and a container.
pub fn container_id(test: u16, n: u16) -> String {
    format!("{test:04x}{n:04x}{}", "c0".repeat(28))
}
