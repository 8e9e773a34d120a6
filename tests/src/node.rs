//! The demo's two nodes on one machine. Each node is a network namespace joined to the host
//! by a veth pair, plus a cgroup v2 group; every process of a node (its services and its
//! agent) runs in both, and in a UTS namespace named after the node, so its agent reports
//! the node's name.
//!
//! ```text
//!   node-a (netns tracery-node-a)          host                node-b (netns tracery-node-b)
//!   eth0 10.77.1.2/24 ── veth ── tracery-a 10.77.1.1/24
//!                                tracery-b 10.77.2.1/24 ── veth ── eth0 10.77.2.2/24
//! ```
//!
//! The host forwards between the two veths only (per-interface `forwarding`), and reaches
//! each node directly. Set-up needs root and `ip` (iproute2); it first removes what an
//! earlier run left behind, so a run after a crash starts clean.

use std::{
    ffi::CString,
    fs,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// One node: its names and addresses.
#[derive(Clone, Copy, Debug)]
pub struct NodeSpec {
    /// The node's name, also its processes' host name: `tracery-node-a`.
    pub name: &'static str,
    /// The network namespace (`ip netns`), named like the node.
    pub netns: &'static str,
    /// The host's end of the veth pair.
    pub host_if: &'static str,
    /// The host's address on that veth; the node reaches the host (PostgreSQL) here.
    pub host_ip: &'static str,
    /// The node's address, on `eth0` inside its namespace.
    pub ip: &'static str,
}

/// Gateway and orders run here, with the standalone agent (controller included).
pub const NODE_A: NodeSpec = NodeSpec {
    name: "tracery-node-a",
    netns: "tracery-node-a",
    host_if: "tracery-a",
    host_ip: "10.77.1.1",
    ip: "10.77.1.2",
};

/// Payments runs here, with an agent linked to node-a's controller.
pub const NODE_B: NodeSpec = NodeSpec {
    name: "tracery-node-b",
    netns: "tracery-node-b",
    host_if: "tracery-b",
    host_ip: "10.77.2.1",
    ip: "10.77.2.2",
};

/// Both nodes, in set-up order.
pub const NODES: [NodeSpec; 2] = [NODE_A, NODE_B];

/// Every node address and the host's veth addresses; each node routes it via the host.
pub const NODE_SUBNET: &str = "10.77.0.0/16";
/// Each veth link's prefix length.
const LINK_PREFIX: u8 = 24;
/// The node's end of its veth, inside its namespace.
const NODE_IF: &str = "eth0";
/// The cgroup v2 group that holds the nodes' groups.
const CGROUP_PARENT: &str = "tracery-demo";
/// How long killed processes may take to leave a cgroup before it is removed.
const CGROUP_DRAIN: Duration = Duration::from_secs(10);

/// A node whose namespace and cgroup exist.
#[derive(Debug)]
pub struct Node {
    pub spec: NodeSpec,
    cgroup: PathBuf,
}

/// Both nodes, set up; removed again (processes killed) on drop.
#[derive(Debug)]
pub struct Nodes {
    pub a: Node,
    pub b: Node,
}

impl Nodes {
    /// Removes what an earlier run left, then creates both nodes. Needs root.
    pub fn create() -> Result<Self, String> {
        teardown()?;
        let root = cgroup2_root()?;
        let parent = root.join(CGROUP_PARENT);
        mkdir(&parent)?;
        let mut made = Vec::with_capacity(NODES.len());
        for spec in &NODES {
            match create_node(spec, &parent) {
                Ok(node) => made.push(node),
                Err(e) => {
                    // Leave nothing half made.
                    let _ = teardown();
                    return Err(e);
                }
            }
        }
        let b = made.pop().expect("two nodes");
        let a = made.pop().expect("two nodes");
        Ok(Self { a, b })
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if let Err(e) = teardown() {
            eprintln!("warning: cleaning up the demo's nodes: {e}");
        }
    }
}

impl Node {
    /// The node's cgroup directory (pass it to `tracery-agent --cgroup`).
    pub fn cgroup_dir(&self) -> &Path {
        &self.cgroup
    }

    /// A command for `program` that runs inside this node: its cgroup (joined before exec,
    /// so the program is never seen outside it), its network namespace and its host name.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command, String> {
        let procs_path = self.cgroup.join("cgroup.procs");
        let procs: OwnedFd = fs::OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .map_err(|e| format!("cannot open {}: {e}", procs_path.display()))?
            .into();
        let netns_path = netns_file(self.spec.netns);
        let netns: OwnedFd = fs::File::open(&netns_path)
            .map_err(|e| format!("cannot open {}: {e}", netns_path.display()))?
            .into();
        let hostname = CString::new(self.spec.name).expect("node names have no NUL");
        let mut cmd = Command::new(program);
        crate::sys::enter_node_on_exec(&mut cmd, procs, netns, hostname);
        Ok(cmd)
    }
}

fn create_node(spec: &NodeSpec, cgroup_parent: &Path) -> Result<Node, String> {
    let (ns, host_if) = (spec.netns, spec.host_if);
    let host_cidr = format!("{}/{LINK_PREFIX}", spec.host_ip);
    let node_cidr = format!("{}/{LINK_PREFIX}", spec.ip);
    ip(&["netns", "add", ns])?;
    ip(&[
        "link", "add", host_if, "type", "veth", "peer", "name", NODE_IF, "netns", ns,
    ])?;
    ip(&["addr", "add", &host_cidr, "dev", host_if])?;
    ip(&["link", "set", host_if, "up"])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&["-n", ns, "addr", "add", &node_cidr, "dev", NODE_IF])?;
    ip(&["-n", ns, "link", "set", NODE_IF, "up"])?;
    ip(&["-n", ns, "route", "add", NODE_SUBNET, "via", spec.host_ip])?;
    // Routing between the nodes, enabled on the demo's veths only: the input interface's
    // flag decides, so the host's other interfaces keep not forwarding.
    let forwarding = format!("/proc/sys/net/ipv4/conf/{host_if}/forwarding");
    fs::write(&forwarding, "1").map_err(|e| format!("cannot write {forwarding}: {e}"))?;
    let cgroup = cgroup_parent.join(spec.name);
    mkdir(&cgroup)?;
    Ok(Node {
        spec: *spec,
        cgroup,
    })
}

/// Removes both nodes if they exist: kills every process in their cgroups and network
/// namespaces, then removes the cgroups, namespaces and veths. Idempotent.
pub fn teardown() -> Result<(), String> {
    let mut errors = Vec::new();
    let parent = cgroup2_root().ok().map(|r| r.join(CGROUP_PARENT));
    if let Some(parent) = parent.as_deref().filter(|p| p.exists()) {
        if let Err(e) = remove_cgroup_tree(parent) {
            errors.push(e);
        }
    }
    for spec in NODES {
        if netns_file(spec.netns).exists() {
            // A process that left the cgroup (or never joined it) would keep the
            // namespace alive and its addresses taken.
            for pid in netns_pids(spec.netns) {
                kill9(pid);
            }
            if let Err(e) = ip(&["netns", "del", spec.netns]) {
                errors.push(e);
            }
        }
        // Deleting the namespace deletes the veth pair, a moment later; only a half-made
        // pair (its peer never moved into the namespace) stays.
        let host_if = Path::new("/sys/class/net").join(spec.host_if);
        let deadline = Instant::now() + Duration::from_secs(2);
        while host_if.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if host_if.exists() {
            if let Err(e) = ip(&["link", "del", spec.host_if]) {
                errors.push(e);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Kills every process under `dir`, then removes its groups, deepest first.
fn remove_cgroup_tree(dir: &Path) -> Result<(), String> {
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() {
        fs::write(&kill_file, "1")
            .map_err(|e| format!("cannot write {}: {e}", kill_file.display()))?;
    } else {
        // Kernels before 5.14 have no cgroup.kill.
        for pid in cgroup_pids(dir) {
            kill9(pid);
        }
    }
    let deadline = Instant::now() + CGROUP_DRAIN;
    while !cgroup_pids(dir).is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "processes {:?} in {} did not exit within {CGROUP_DRAIN:?}",
                cgroup_pids(dir),
                dir.display()
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
    remove_dirs(dir)
}

/// Every pid in the group at `dir` and the groups below it.
fn cgroup_pids(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for sub in subdirs(dir) {
        pids.extend(cgroup_pids(&sub));
    }
    pids
}

/// Removes the (empty) group at `dir`, its child groups first. A cgroup directory is
/// removed with rmdir even though it lists files: they are not real files.
fn remove_dirs(dir: &Path) -> Result<(), String> {
    for sub in subdirs(dir) {
        remove_dirs(&sub)?;
    }
    // The kernel may report the group busy for a moment after its last process exits.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot remove cgroup {}: {e}", dir.display())),
        }
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Pids whose network namespace is `netns`, as `ip netns pids` lists them.
fn netns_pids(netns: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", netns])
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn kill9(pid: u32) {
    if let Err(e) = crate::sys::kill9(pid) {
        eprintln!("warning: cannot kill pid {pid}: {e}");
    }
}

/// Where `ip netns` keeps a named namespace.
fn netns_file(netns: &str) -> PathBuf {
    Path::new("/run/netns").join(netns)
}

/// The mount point of the cgroup v2 hierarchy: `/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one.
pub fn cgroup2_root() -> Result<PathBuf, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(point))
        })
        // The host's own hierarchy, not one mounted into a container's directory.
        .min_by_key(|p| p.as_os_str().len())
        .ok_or_else(|| {
            "no cgroup v2 hierarchy is mounted; mount one: mount -t cgroup2 none /sys/fs/cgroup/unified"
                .to_string()
        })
}

fn mkdir(dir: &Path) -> Result<(), String> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
    }
}

/// Runs `ip ARGS`; the error carries the command and what `ip` printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
