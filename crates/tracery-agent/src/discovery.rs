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
//! ```

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde::Deserialize;

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
    #[error("service {name:?} in {path} must give exactly one of `exe`, `process` or `cmdline`")]
    Ambiguous { name: String, path: PathBuf },
    #[error("unknown service {name:?}; known services: {known}")]
    UnknownService { name: String, known: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    services: BTreeMap<String, RawService>,
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
        Ok(Self { services })
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
}

impl Matcher {
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
        }
    }

    /// True when an exec event starts a process of this service. The event's path is as
    /// given to execve (possibly through symlinks), so the process itself is asked first.
    pub fn matches_exec(&self, exec: &Exec) -> bool {
        if self.matches_pid(exec.pid) {
            return true;
        }
        match self {
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
    fn finds_a_real_process_by_exe_name_and_cmdline() {
        let mut child = Command::new("/bin/sleep")
            .arg("30.123")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until the child's exec completes, /proc shows the test binary.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"/bin/sleep"))
        {
            assert!(std::time::Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
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
}
