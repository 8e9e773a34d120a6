//! How a controller is configured: store, known services, and the safe defaults.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use tracery_databases::{CaptureLimits, DatabaseConfig};

/// What [`serve`](crate::serve) needs to run.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Store URL: `sqlite:///path/to/file.db` or `postgres://…`; see [`default_store_url`].
    pub store_url: String,
    /// Service names a breakpoint may target (from tracery.toml); empty accepts none.
    pub services: Vec<String>,
    /// Limits given to breakpoints that set none.
    pub defaults: Defaults,
    /// Standalone: the id of the agent embedded in this process. The `Tracery` API (the
    /// CLI's) then answers only once that agent has connected, so a breakpoint set right
    /// after start-up is armed, or fails, as it would a minute later.
    pub local_agent: Option<String>,
    /// Databases capture queries may read (`--database NAME=URL`, `[databases.NAME]`).
    pub databases: Vec<DatabaseConfig>,
    /// Limits on each hit's database reads (statement timeout, rows, bytes).
    pub capture_limits: CaptureLimits,
    /// Cluster mode: `--service` names a Kubernetes Service, pods are read from the API
    /// and `Breakpoint` objects are reconciled.
    pub kubernetes: Option<crate::KubernetesApi>,
    /// Who may call the CLI's API: a token, or Kubernetes TokenReview and RBAC.
    pub access: crate::Access,
    /// TLS: a directory with `tls.crt`, `tls.key` and `ca.crt` (the CA agents' client
    /// certificates must be signed by); `None` serves plaintext.
    pub tls_dir: Option<PathBuf>,
    /// OTLP gRPC collector (`http://HOST:4317`) that gets each snapshot as a span on its
    /// trace, or as a log record when it has none; `None` exports nothing. Metadata for
    /// it comes from `OTEL_EXPORTER_OTLP_HEADERS`.
    pub otlp_endpoint: Option<String>,
}

/// Limits a breakpoint gets when the user sets none: every breakpoint expires, stops after
/// a number of hits and is rate limited in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// Time from creation until the breakpoint disarms itself.
    pub expire: Duration,
    /// Snapshots recorded before the breakpoint disarms itself.
    pub hit_limit: u64,
    /// Kernel-side rate limit, hits per second.
    pub rate_per_sec: u32,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            expire: Duration::from_secs(3600),
            hit_limit: 100,
            rate_per_sec: 10,
        }
    }
}

/// The SQLite store used when no `--store` is given: `/var/lib/tracery/store.db` for root,
/// else `store.db` under `$XDG_DATA_HOME/tracery` or `~/.local/share/tracery`.
pub fn default_store_url() -> String {
    format!("sqlite://{}", default_store_path().display())
}

fn default_store_path() -> PathBuf {
    if running_as_root() {
        return PathBuf::from("/var/lib/tracery/store.db");
    }
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            // The XDG spec says relative paths are invalid and must be ignored.
            .filter(|p| p.is_absolute())
    };
    let data_home = env_dir("XDG_DATA_HOME")
        .or_else(|| env_dir("HOME").map(|home| home.join(".local/share")))
        // No home at all (a bare container): fall back to the working directory.
        .unwrap_or_else(|| PathBuf::from(".local/share"));
    data_home.join("tracery/store.db")
}

/// True when the effective user is root. `/proc/self` belongs to the effective user, which
/// avoids an `unsafe` `geteuid` call in a crate that otherwise has none.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_safe_ones() {
        let d = Defaults::default();
        assert_eq!(d.expire, Duration::from_secs(3600));
        assert_eq!(d.hit_limit, 100);
        assert_eq!(d.rate_per_sec, 10);
    }

    #[test]
    fn default_store_is_a_sqlite_file_named_for_tracery() {
        let url = default_store_url();
        assert!(url.starts_with("sqlite:///"), "{url}");
        assert!(url.ends_with("/tracery/store.db"), "{url}");
    }
}
