//! The database servers that tests use, on loopback: PostgreSQL 15 and Redis.

use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::run_checked;

const PG_VERSION: &str = "15";
const PG_CLUSTER: &str = "main";
/// Tests run as root and connect as role `root` over the unix socket (peer auth, no
/// password): `postgres://root@localhost/tracery_test?host=/var/run/postgresql`.
const PG_TEST_ROLE: &str = "root";
const PG_TEST_DATABASE: &str = "tracery_test";
/// The demo's orders service keeps its orders here.
pub const PG_DEMO_URL: &str = "postgres://root@localhost/tracery_demo?host=/var/run/postgresql";
const PG_DEMO_DATABASE: &str = "tracery_demo";

/// Starts PostgreSQL and Redis unless they already run.
pub fn ensure_running() -> Result<()> {
    ensure_postgres().context("cannot start PostgreSQL")?;
    ensure_databases().context("cannot prepare the PostgreSQL test and demo databases")?;
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

/// Creates the test role and the test and demo databases unless they exist.
fn ensure_databases() -> Result<()> {
    let role_exists = psql_query(&format!(
        "SELECT 1 FROM pg_roles WHERE rolname = '{PG_TEST_ROLE}'"
    ))?;
    if role_exists.trim().is_empty() {
        psql_command(&format!("CREATE ROLE \"{PG_TEST_ROLE}\" SUPERUSER LOGIN"))?;
    } else {
        psql_command(&format!("ALTER ROLE \"{PG_TEST_ROLE}\" SUPERUSER LOGIN"))?;
    }
    for db in [PG_TEST_DATABASE, PG_DEMO_DATABASE] {
        let database_exists =
            psql_query(&format!("SELECT 1 FROM pg_database WHERE datname = '{db}'"))?;
        if database_exists.trim().is_empty() {
            psql_command(&format!(
                "CREATE DATABASE \"{db}\" OWNER \"{PG_TEST_ROLE}\""
            ))?;
        }
    }
    Ok(())
}

/// `psql` as the `postgres` OS user, the cluster's superuser through peer auth.
fn psql(sql: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t"])
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        // postgres cannot read root's working directory.
        .current_dir("/");
    cmd
}

fn psql_command(sql: &str) -> Result<()> {
    run_checked(&mut psql(sql))
}

fn psql_query(sql: &str) -> Result<String> {
    let out = psql(sql)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run psql through runuser")?;
    anyhow::ensure!(
        out.status.success(),
        "psql -c {sql:?} failed ({})",
        out.status
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
