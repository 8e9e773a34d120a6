//! Which processes a breakpoint targets: services defined in `tracery.toml`, matched
//! against `/proc` at arm time and against exec events afterwards.
//!
//! ```toml
//! [services.orders]
//! exe = "/srv/orders/bin/orders"      # the executable's path
//!
//! [services.gateway]
//! process = "gateway"                 # the process name (comm), as `ps -o comm` shows
//!
//! [services.worker]
//! cmdline = "worker --queue payments" # a substring of the command line
//!
//! [redaction]                         # names whose values never leave the node
//! rules = ["iban", "private_key"]     # added to the defaults (password, token, ...)
//! defaults = true                     # false turns the defaults off
//! ```
//!
//! When several agents share one kernel (nodes as cgroups on one machine), each is given
//! its node's cgroup v2 subtree ([`NodeCgroup`], `tracery-agent --cgroup`) and matches only
//! the processes inside it: uprobes and `/proc` are global, so without it every agent would
//! arm every node's processes.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use tracery_model::redact::{Redaction, RedactionConfig, RuleError};

use crate::exec_watch::Exec;

/// How a service's processes are recognised. Exactly one is given per service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// The executable's path (as `/proc/PID/exe` resolves it).
    Exe(PathBuf),
    /// The process name (`/proc/PID/comm`, at most 15 bytes).
    Process(String),
    /// A substring of the command line (arguments joined by spaces).
    Cmdline(String),
    /// The processes `inner` matches that also run in this node's cgroup subtree.
    InCgroup {
        cgroup: NodeCgroup,
        inner: Box<Matcher>,
    },
}

/// A node's processes: those in one cgroup v2 subtree (its directory or any below it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCgroup {
    /// The subtree as `/proc/PID/cgroup` names it (its `0::` line), e.g.
    /// `/tracery-demo/node-a`: relative to the cgroup v2 root, no trailing slash.
    path: String,
}

/// Errors in service definitions or lookups. Messages say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid tracery.toml")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: [redaction] is not valid")]
    Redaction {
        path: PathBuf,
        #[source]
        source: RuleError,
    },
    #[error("service {name:?} in {path} must give exactly one of `exe`, `process` or `cmdline`")]
    Ambiguous { name: String, path: PathBuf },
    #[error("unknown service {name:?}; known services: {known}")]
    UnknownService { name: String, known: String },
    #[error("cannot open cgroup {path}; pass the directory of an existing cgroup v2 group, e.g. /sys/fs/cgroup/NODE")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a cgroup v2 group; pass a directory under a cgroup2 mount (`findmnt -t cgroup2` lists them)")]
    NotCgroup2 { path: PathBuf },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    services: BTreeMap<String, RawService>,
    /// `[databases.NAME]` and `[capture_limits]` are the controller's (standalone reads
    /// them with tracery-databases); the agent only lets them be.
    #[serde(default)]
    #[expect(dead_code, reason = "read by the controller, accepted here")]
    databases: Option<toml::Table>,
    #[serde(default)]
    #[expect(dead_code, reason = "read by the controller, accepted here")]
    capture_limits: Option<toml::Table>,
    #[serde(default)]
    redaction: RedactionConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    exe: Option<PathBuf>,
    process: Option<String>,
    cmdline: Option<String>,
}

/// Service definitions: a name maps to a [`Matcher`].
#[derive(Clone, Debug, Default)]
pub struct Services {
    services: BTreeMap<String, Matcher>,
    /// This node's processes, when the agent shares its kernel with other nodes.
    cgroup: Option<NodeCgroup>,
    /// `[redaction]`: the defaults unless the file says otherwise.
    redaction: Redaction,
}

impl Services {
    /// Reads `tracery.toml`.
    pub fn load(path: &Path) -> Result<Self, DiscoveryError> {
        let text = fs::read_to_string(path).map_err(|source| DiscoveryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the text of a `tracery.toml` (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, DiscoveryError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| DiscoveryError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let mut services = BTreeMap::new();
        for (name, s) in raw.services {
            let m = match (s.exe, s.process, s.cmdline) {
                (Some(e), None, None) => Matcher::Exe(e),
                (None, Some(p), None) => Matcher::Process(p),
                (None, None, Some(c)) => Matcher::Cmdline(c),
                _ => {
                    return Err(DiscoveryError::Ambiguous {
                        name,
                        path: path.to_path_buf(),
                    })
                }
            };
            services.insert(name, m);
        }
        let redaction =
            Redaction::from_config(&raw.redaction).map_err(|source| DiscoveryError::Redaction {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            services,
            cgroup: None,
            redaction,
        })
    }

    /// The redaction rules of `[redaction]` (the defaults when the section is absent).
    pub fn redaction(&self) -> &Redaction {
        &self.redaction
    }

    /// The matcher of service `name`.
    pub fn get(&self, name: &str) -> Result<&Matcher, DiscoveryError> {
        self.services
            .get(name)
            .ok_or_else(|| DiscoveryError::UnknownService {
                name: name.to_string(),
                known: if self.services.is_empty() {
                    "none (define them under [services.NAME] in tracery.toml)".into()
                } else {
                    self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })
    }

    /// Every defined service name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// The same services, restricted to the processes in `cgroup` (this node's).
    pub fn scoped_to(self, cgroup: &NodeCgroup) -> Self {
        let mut scoped = Self {
            services: BTreeMap::new(),
            cgroup: Some(cgroup.clone()),
            redaction: self.redaction.clone(),
        };
        scoped.services = self
            .services
            .into_iter()
            .map(|(name, inner)| (name, scoped.scope(inner)))
            .collect();
        scoped
    }

    /// This node's cgroup, when the services are scoped to one.
    pub fn node_cgroup(&self) -> Option<&NodeCgroup> {
        self.cgroup.as_ref()
    }

    /// `matcher` restricted to this node's processes (unchanged when not scoped), for
    /// targets that are not services, such as `--exe`.
    pub fn scope(&self, matcher: Matcher) -> Matcher {
        match &self.cgroup {
            Some(cgroup) => Matcher::InCgroup {
                cgroup: cgroup.clone(),
                inner: Box::new(matcher),
            },
            None => matcher,
        }
    }
}

impl NodeCgroup {
    /// The cgroup whose directory is `dir` in a mounted cgroup v2 hierarchy, e.g.
    /// `/sys/fs/cgroup/unified/tracery-demo/node-a`.
    pub fn open(dir: &Path) -> Result<Self, DiscoveryError> {
        let cgroup_err = |source| DiscoveryError::Cgroup {
            path: dir.to_path_buf(),
            source,
        };
        let dir = fs::canonicalize(dir).map_err(cgroup_err)?;
        // Every cgroup directory has it, a plain directory does not; v1 is ruled out below.
        if !dir.join("cgroup.procs").exists() {
            return Err(DiscoveryError::NotCgroup2 { path: dir });
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(cgroup_err)?;
        let (mount_point, mount_root) = cgroup2_mounts(&mountinfo)
            .filter(|(point, _)| dir.starts_with(point))
            .max_by_key(|(point, _)| point.as_os_str().len())
            .ok_or_else(|| DiscoveryError::NotCgroup2 { path: dir.clone() })?;
        let below = dir
            .strip_prefix(&mount_point)
            .expect("the mount point was chosen as a prefix of dir");
        Ok(Self::from_path(
            &Path::new(&mount_root).join(below).to_string_lossy(),
        ))
    }

    /// The subtree named as `/proc/PID/cgroup` names it (`/` is every process).
    pub fn from_path(path: &str) -> Self {
        let path = format!("/{}", path.trim_matches('/'));
        Self { path }
    }

    /// The subtree, as `/proc/PID/cgroup` names it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The subtree as the kernel names it, for a filter in the kernel: its id (the
    /// directory's inode) and its depth below the root. `None` when no cgroup v2 mount
    /// shows it. The depth counts from the agent's cgroup root, so the agent must run in
    /// the host's cgroup namespace, as it does standalone.
    pub fn kernel_id(&self) -> Option<(u64, u32)> {
        use std::os::unix::fs::MetadataExt;
        let dir = cgroup2_dir(&self.path)?;
        let id = fs::metadata(dir).ok()?.ino();
        let level = self.path.split('/').filter(|c| !c.is_empty()).count();
        Some((id, u32::try_from(level).ok()?))
    }

    /// True when process `pid` runs in this subtree (false once it has exited).
    pub fn contains_pid(&self, pid: u32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| self.contains_in(&text))
    }

    /// True when `proc_cgroup`, the text of a `/proc/PID/cgroup`, puts the process in this
    /// subtree. Only the unified (`0::`) line counts; v1 hierarchies are ignored.
    pub fn contains_in(&self, proc_cgroup: &str) -> bool {
        let Some(own) = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::")) else {
            return false;
        };
        let own = own.trim_end();
        // A process whose cgroup was removed reads "/gone (deleted)"; it cannot match.
        self.path == "/"
            || own == self.path
            || own
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The directory of cgroup `path` (as `/proc/PID/cgroup` names it) under the cgroup v2
/// mount that shows it, or `None` when no mount does. A mount's root need not be the
/// hierarchy's root (a container sees its own subtree at `/sys/fs/cgroup`).
pub fn cgroup2_dir(path: &str) -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    dir_in_mounts(&mountinfo, path)
}

/// [`cgroup2_dir`] over the text of a mountinfo.
fn dir_in_mounts(mountinfo: &str, path: &str) -> Option<PathBuf> {
    let path = format!("/{}", path.trim_matches('/'));
    cgroup2_mounts(mountinfo)
        .filter_map(|(point, root)| {
            let root = format!("/{}", root.trim_matches('/'));
            let below = if root == "/" {
                path.as_str()
            } else if path == root {
                ""
            } else {
                path.strip_prefix(root.as_str())?.strip_prefix('/')?
            };
            Some((root.len(), point.join(below.trim_start_matches('/'))))
        })
        // The mount closest to the cgroup: the longest root that contains it.
        .max_by_key(|(root_len, _)| *root_len)
        .map(|(_, dir)| dir)
}

/// (mount point, root within the hierarchy) of each cgroup2 mount in `mountinfo`.
fn cgroup2_mounts(mountinfo: &str) -> impl Iterator<Item = (PathBuf, String)> + '_ {
    mountinfo.lines().filter_map(|line| {
        // Fields: id parent major:minor root mount-point options [optional...] - fstype ...
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split_whitespace();
        let root = fields.nth(3)?;
        let point = fields.next()?;
        Some((
            PathBuf::from(unescape_mountinfo(point)),
            unescape_mountinfo(root),
        ))
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8) + (b - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Matcher {
    /// The executable file this matcher names, with the node cgroup it is limited to: its
    /// probes can be bound to the file, for every process that runs it. `None` for
    /// matchers by name or command line, which any executable may satisfy.
    pub fn file(&self) -> Option<(&Path, Option<&NodeCgroup>)> {
        match self {
            Matcher::Exe(path) => Some((path, None)),
            Matcher::InCgroup { cgroup, inner } => match inner.as_ref() {
                Matcher::Exe(path) => Some((path, Some(cgroup))),
                _ => None,
            },
            _ => None,
        }
    }

    /// True when process `pid` belongs to this service (false once it has exited).
    pub fn matches_pid(&self, pid: u32) -> bool {
        let dir = Path::new("/proc").join(pid.to_string());
        match self {
            Matcher::Exe(want) => fs::read_link(dir.join("exe")).is_ok_and(|p| p == *want),
            Matcher::Process(name) => {
                fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == name)
            }
            Matcher::Cmdline(sub) => fs::read(dir.join("cmdline")).is_ok_and(|raw| {
                let joined: Vec<u8> = raw
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .collect::<Vec<_>>()
                    .join(&b' ');
                String::from_utf8_lossy(&joined).contains(sub.as_str())
            }),
            Matcher::InCgroup { cgroup, inner } => {
                inner.matches_pid(pid) && cgroup.contains_pid(pid)
            }
        }
    }

    /// True when an exec event starts a process of this service. The event's path is as
    /// given to execve (possibly through symlinks), so the process itself is asked first.
    pub fn matches_exec(&self, exec: &Exec) -> bool {
        if self.matches_pid(exec.pid) {
            return true;
        }
        match self {
            Matcher::InCgroup { cgroup, inner } => {
                cgroup.contains_pid(exec.pid) && inner.matches_exec(exec)
            }
            Matcher::Exe(want) => match (fs::canonicalize(&exec.path), fs::canonicalize(want)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
            _ => false,
        }
    }

    /// Every running process of this service, by scanning `/proc`.
    pub fn find(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|pid| self.matches_pid(*pid))
            .collect();
        pids.sort_unstable();
        pids
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    fn services(text: &str) -> Result<Services, DiscoveryError> {
        Services::parse(text, Path::new("tracery.toml"))
    }

    #[test]
    fn parses_each_matcher_and_rejects_ambiguity() {
        let s = services(
            "[services.a]\nexe = \"/bin/a\"\n[services.b]\nprocess = \"b\"\n[services.c]\ncmdline = \"--c\"\n",
        )
        .unwrap();
        assert_eq!(s.get("a").unwrap(), &Matcher::Exe("/bin/a".into()));
        assert_eq!(s.get("b").unwrap(), &Matcher::Process("b".into()));
        assert_eq!(s.get("c").unwrap(), &Matcher::Cmdline("--c".into()));
        let err = s.get("d").unwrap_err().to_string();
        assert_eq!(err, "unknown service \"d\"; known services: a, b, c");
        let err = services("[services.x]\nexe = \"/a\"\nprocess = \"a\"\n").unwrap_err();
        assert!(matches!(err, DiscoveryError::Ambiguous { .. }), "{err}");
        let err = services("[services.x]\npath = \"/a\"\n").unwrap_err();
        assert!(matches!(err, DiscoveryError::Parse { .. }), "{err}");
    }

    #[test]
    fn redaction_rules_come_from_the_config_with_the_defaults_on_unless_turned_off() {
        let s = services("[services.a]\nexe = \"/bin/a\"\n").unwrap();
        assert_eq!(s.redaction().rule_for("user_password"), Some("password"));
        let s = services("[redaction]\nrules = [\"iban\"]\n").unwrap();
        assert_eq!(s.redaction().rule_for("IBAN"), Some("iban"));
        assert_eq!(s.redaction().rule_for("token"), Some("token"));
        let s = services("[redaction]\nrules = [\"iban\"]\ndefaults = false\n").unwrap();
        assert_eq!(s.redaction().rule_for("token"), None);
        let err = services("[redaction]\nrules = [\"..\"]\n").unwrap_err();
        assert!(matches!(err, DiscoveryError::Redaction { .. }), "{err}");
        let err = services("[redaction]\nrule = [\"iban\"]\n").unwrap_err();
        assert!(matches!(err, DiscoveryError::Parse { .. }), "{err}");
    }

    /// `/bin/sleep SECONDS`, once its exec is complete (until then /proc shows the test
    /// binary).
    fn spawn_sleep(seconds: &str) -> (std::process::Child, u32) {
        let child = Command::new("/bin/sleep")
            .arg(seconds)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"/bin/sleep"))
        {
            assert!(std::time::Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        (child, pid)
    }

    #[test]
    fn finds_a_real_process_by_exe_name_and_cmdline() {
        let (mut child, pid) = spawn_sleep("30.123");
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        // `sleep` may be a symlink to coreutils; match what the kernel reports.
        assert!(Matcher::Exe(exe).find().contains(&pid));
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert!(Matcher::Process(comm.trim_end().into())
            .find()
            .contains(&pid));
        assert_eq!(Matcher::Cmdline("sleep 30.123".into()).find(), vec![pid]);
        assert!(!Matcher::Cmdline("sleep 30.124".into()).matches_pid(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!Matcher::Cmdline("sleep 30.123".into()).matches_pid(pid));
    }

    /// /proc/PID/cgroup on a hybrid host: v1 lines, then the unified one.
    const HYBRID: &str = "9:name=systemd:/\n4:memory:/other/x\n0::/tracery-demo/node-a/svc\n";

    #[test]
    fn a_cgroup_contains_its_subtree_only() {
        let node_a = NodeCgroup::from_path("/tracery-demo/node-a");
        assert!(node_a.contains_in(HYBRID));
        assert!(node_a.contains_in("0::/tracery-demo/node-a\n"));
        // A sibling whose name merely starts the same is another node.
        assert!(!node_a.contains_in("0::/tracery-demo/node-ab\n"));
        assert!(!node_a.contains_in("0::/tracery-demo\n"));
        assert!(!node_a.contains_in("0::/\n"));
        // Only the unified line counts, not a v1 hierarchy with the same path.
        assert!(!node_a.contains_in("4:memory:/tracery-demo/node-a\n0::/\n"));
        assert!(!node_a.contains_in("4:memory:/tracery-demo/node-a\n"));
        assert!(NodeCgroup::from_path("/").contains_in(HYBRID));
        assert_eq!(
            NodeCgroup::from_path("tracery-demo/node-b/").path(),
            "/tracery-demo/node-b"
        );
    }

    #[test]
    fn a_cgroup_is_found_under_the_mount_that_shows_it_root_included() {
        let mountinfo = "\
30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
31 1 0:26 /tracery-demo /mnt/demo rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            dir_in_mounts(mountinfo, "/svc/orders"),
            Some(PathBuf::from("/sys/fs/cgroup/svc/orders"))
        );
        assert_eq!(
            dir_in_mounts(mountinfo, "/tracery-demo/node-a"),
            Some(PathBuf::from("/mnt/demo/node-a"))
        );
        assert_eq!(
            dir_in_mounts(mountinfo, "/tracery-demo"),
            Some(PathBuf::from("/mnt/demo"))
        );
        let only_sub = "31 1 0:26 /tracery-demo /mnt/demo rw - cgroup2 cgroup2 rw\n";
        assert_eq!(dir_in_mounts(only_sub, "/svc/orders"), None);
        assert_eq!(dir_in_mounts(only_sub, "/tracery-demox/a"), None);
    }

    #[test]
    fn cgroup2_mounts_are_read_from_mountinfo() {
        let mountinfo = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
34 30 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
40 23 0:32 /inner /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw
";
        let mounts: Vec<_> = cgroup2_mounts(mountinfo).collect();
        assert_eq!(
            mounts,
            [
                (PathBuf::from("/sys/fs/cgroup/unified"), "/".to_string()),
                (PathBuf::from("/mnt/my cgroups"), "/inner".to_string()),
            ]
        );
    }

    #[test]
    fn opening_a_cgroup_checks_the_directory() {
        let err = NodeCgroup::open(Path::new("/tracery-no-such-cgroup")).unwrap_err();
        assert!(matches!(err, DiscoveryError::Cgroup { .. }), "{err}");
        // A plain directory is not a cgroup.
        let err = NodeCgroup::open(&std::env::temp_dir()).unwrap_err();
        assert!(matches!(err, DiscoveryError::NotCgroup2 { .. }), "{err}");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        // A cgroup v1 hierarchy (as on a hybrid host) is refused.
        let v1 = mountinfo.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup")
                .then(|| left.split_whitespace().nth(4))?
        });
        if let Some(v1) = v1 {
            let err = NodeCgroup::open(Path::new(v1)).unwrap_err();
            assert!(matches!(err, DiscoveryError::NotCgroup2 { .. }), "{err}");
        }
        // The root of each cgroup2 mount is the whole hierarchy.
        for (point, root) in cgroup2_mounts(&mountinfo) {
            let cgroup = NodeCgroup::open(&point).unwrap();
            assert_eq!(cgroup.path(), NodeCgroup::from_path(&root).path());
        }
    }

    #[test]
    fn a_scoped_service_matches_only_processes_in_the_cgroup() {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let Some(own) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
            return; // No cgroup v2 on this host: nothing to scope by.
        };
        let (mut child, pid) = spawn_sleep("30.125");
        let all = services("[services.s]\ncmdline = \"sleep 30.125\"\n").unwrap();
        let here = all.clone().scoped_to(&NodeCgroup::from_path(own));
        let elsewhere = all.scoped_to(&NodeCgroup::from_path("/tracery-no-such-node"));
        assert_eq!(here.get("s").unwrap().find(), vec![pid]);
        assert!(elsewhere.get("s").unwrap().find().is_empty());
        let by_exe = Matcher::Exe(fs::read_link(format!("/proc/{pid}/exe")).unwrap());
        assert!(here.scope(by_exe.clone()).find().contains(&pid));
        assert!(elsewhere.scope(by_exe).find().is_empty());
        assert!(!elsewhere.get("s").unwrap().matches_pid(pid));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
