//! The database servers that tests use, on loopback: PostgreSQL 15 and Redis.

use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::run_checked;

const PG_VERSION: &str = "15";
const PG_CLUSTER: &str = "main";

/// Starts PostgreSQL and Redis unless they already run.
pub fn ensure_running() -> Result<()> {
    ensure_postgres().context("cannot start PostgreSQL")?;
    ensure_redis().context("cannot start Redis")
}

fn ensure_postgres() -> Result<()> {
    let clusters = Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .context("pg_lsclusters not found; run `cargo xtask setup`")?;
    let clusters = String::from_utf8_lossy(&clusters.stdout);
    let ours = clusters.lines().find(|line| {
        let mut fields = line.split_whitespace();
        fields.next() == Some(PG_VERSION) && fields.next() == Some(PG_CLUSTER)
    });
    match ours {
        // Fields: version, cluster, port, status, ...
        Some(line) if line.split_whitespace().nth(3) == Some("online") => Ok(()),
        Some(_) => {
            run_checked(Command::new("pg_ctlcluster").args([PG_VERSION, PG_CLUSTER, "start"]))
        }
        // The package's post-install step creates it, but not in every image.
        None => {
            run_checked(Command::new("pg_createcluster").args([PG_VERSION, PG_CLUSTER, "--start"]))
        }
    }
}

fn ensure_redis() -> Result<()> {
    let answers = Command::new("redis-cli")
        .arg("ping")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"PONG"));
    if answers {
        return Ok(());
    }
    run_checked(Command::new("redis-server").args([
        "--daemonize",
        "yes",
        "--bind",
        "127.0.0.1",
        "--port",
        "6379",
    ]))
}
