//! tracery-ctl against a real standalone (root: it loads eBPF): the token the standalone
//! wrote at first start is found and sent without a flag, a wrong one is refused with
//! where the right one is, `audit list` shows every mutating call, refused ones included,
//! and `certs init` writes a CA and certificates with private keys only the owner reads.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::standalone::Standalone;
use serde_json::Value;

#[test]
fn the_standalone_token_is_found_a_wrong_one_is_refused_and_the_audit_log_shows_both() {
    let tracery = Standalone::start(&[], None);
    // Found at /var/lib/tracery/token (the standalone's --data-dir), mode 0600.
    let mode = std::fs::metadata("/var/lib/tracery/token")
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    tracery.ctl_ok(&["breakpoint", "list"]);

    let wrong = common::ctl()
        .args(["--controller", &tracery.url, "breakpoint", "delete", "7"])
        .env("TRACERY_TOKEN", "not-the-token")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("wrong API token") && stderr.contains("/var/lib/tracery/token"),
        "{stderr}"
    );
    let missing = tracery.ctl(&["breakpoint", "delete", "9999"]);
    assert!(!missing.status.success());

    let out = tracery.ctl_ok(&["audit", "list", "--output", "json"]);
    let log: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log.len(), 2, "{out}");
    assert_eq!(log[0]["who"], "unauthenticated");
    assert_eq!(log[0]["action"], "delete");
    assert_eq!(log[0]["target"], "breakpoint 7");
    assert!(log[0]["result"]
        .as_str()
        .unwrap()
        .starts_with("Unauthenticated"));
    assert_eq!(log[1]["who"], "standalone-token");
    assert!(log[1]["result"].as_str().unwrap().starts_with("NotFound"));
    assert!(log[1]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let later = tracery.ctl_ok(&["audit", "list", "--since", "2099-01-01T00:00:00Z"]);
    assert!(later.contains("no audited calls"), "{later}");
}

#[test]
fn certs_init_writes_a_ca_and_secret_shaped_directories() {
    let dir = tempfile_dir();
    let out = common::ctl()
        .args(["certs", "init", "--san", "10.77.1.2", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "ca.crt",
        "ca.key",
        "controller/tls.crt",
        "controller/tls.key",
        "controller/ca.crt",
        "agent/tls.crt",
        "agent/tls.key",
        "agent/ca.crt",
    ] {
        let meta = std::fs::metadata(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let secret = f.ends_with(".key");
        assert_eq!(meta.permissions().mode() & 0o077 == 0, secret, "{f}");
    }
    // A second run would replace the CA under running agents: refused without --force.
    let again = common::ctl()
        .args(["certs", "init", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tracery-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}
