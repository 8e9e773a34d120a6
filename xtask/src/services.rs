//! The database servers that tests use, on loopback: PostgreSQL 15 and Redis. PostgreSQL
//! also serves the demo's node network (10.77.0.0/16, see `tracery_tests::node`) over TCP.

use std::{
    fs,
    process::{Command, Stdio},
};

use anyhow::{Context, Result};

use crate::run_checked;

const PG_VERSION: &str = "15";
const PG_CLUSTER: &str = "main";
/// Tests run as root and connect as role `root` over the unix socket (peer auth, no
/// password): `postgres://root@localhost/tracery_test?host=/var/run/postgresql`.
const PG_TEST_ROLE: &str = "root";
const PG_TEST_DATABASE: &str = "tracery_test";
/// The demo's orders service keeps its orders in this database.
const PG_DEMO_DATABASE: &str = "tracery_demo";
/// The demo database over TCP loopback, for checks run on the host (tests, the demo's
/// evidence queries). TCP rather than the socket: what a node sees is TCP too.
pub const PG_DEMO_TCP_URL: &str = "postgres://root@127.0.0.1:5432/tracery_demo?sslmode=disable";
/// The demo database as node-a's orders service reaches it: the host's side of node-a's
/// veth. TCP, because the message hold works on TCP sockets only; no TLS, so the held
/// bytes are the query itself.
pub const PG_DEMO_NODE_URL: &str = "postgres://root@10.77.1.1:5432/tracery_demo?sslmode=disable";
/// The demo's node network (every node and the host side of each veth).
const DEMO_SUBNET: &str = "10.77.0.0/16";
/// Marks the pg_hba.conf lines the demo added.
const HBA_MARKER: &str = "# tracery demo";

/// Starts PostgreSQL and Redis unless they already run.
pub fn ensure_running() -> Result<()> {
    ensure_postgres().context("cannot start PostgreSQL")?;
    ensure_databases().context("cannot prepare the PostgreSQL test and demo databases")?;
    ensure_demo_tcp_access().context("cannot open PostgreSQL to the demo's nodes over TCP")?;
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

/// The pg_hba.conf rules for the demo database over TCP.
fn demo_hba_rules() -> [String; 2] {
    [DEMO_SUBNET, "127.0.0.1/32"]
        .map(|from| format!("host    {PG_DEMO_DATABASE}    {PG_TEST_ROLE}    {from}    trust"))
}

/// Lets the demo's role reach the demo database over TCP, from loopback and from the
/// demo's nodes, changing (and reloading or restarting PostgreSQL) only what is missing.
fn ensure_demo_tcp_access() -> Result<()> {
    let hba_path = psql_query("SHOW hba_file")?.trim().to_string();
    let hba = fs::read_to_string(&hba_path).with_context(|| format!("cannot read {hba_path}"))?;
    let rules = demo_hba_rules();
    if !rules.iter().all(|r| hba.lines().any(|l| l.trim() == r)) {
        // First match wins, so the rules go before the stock ones (which ask loopback
        // for a password). Trust, without a password, is scoped to the one demo database
        // and role, and to loopback and the demo's private node subnet.
        let mut block =
            format!("{HBA_MARKER}: orders in network namespace tracery-node-a connects over TCP\n");
        for rule in &rules {
            block.push_str(rule);
            block.push('\n');
        }
        let kept: Vec<&str> = hba
            .lines()
            .filter(|l| !l.starts_with(HBA_MARKER) && !rules.iter().any(|r| l.trim() == r))
            .collect();
        let is_comment = |l: &&str| l.trim_start().starts_with('#');
        let first_rule = kept
            .iter()
            .position(|l| !l.trim().is_empty() && !is_comment(l))
            .unwrap_or(kept.len());
        // Above the comment that introduces the first rule, not between the two.
        let at = kept[..first_rule]
            .iter()
            .rposition(|l| !is_comment(l))
            .map_or(0, |i| i + 1);
        let mut text = String::new();
        for line in &kept[..at] {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&block);
        text.push('\n');
        for line in &kept[at..] {
            text.push_str(line);
            text.push('\n');
        }
        fs::write(&hba_path, text).with_context(|| format!("cannot write {hba_path}"))?;
        psql_query("SELECT pg_reload_conf()")?;
    }
    // '*', not 10.77.1.1: that address exists only while the demo's veth does, and
    // PostgreSQL binds its addresses once, at start. pg_hba still admits only loopback and
    // the demo subnet.
    if psql_query("SHOW listen_addresses")?.trim() != "*" {
        psql_command("ALTER SYSTEM SET listen_addresses = '*'")?;
        run_checked(Command::new("pg_ctlcluster").args([PG_VERSION, PG_CLUSTER, "restart"]))?;
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
    // Test and demo data need no persistence. With the default snapshots, a server whose
    // working directory went away (a removed clone) refuses every write (MISCONF).
    run_checked(Command::new("redis-server").current_dir("/").args([
        "--daemonize",
        "yes",
        "--bind",
        "127.0.0.1",
        "--port",
        "6379",
        "--save",
        "",
        "--appendonly",
        "no",
    ]))
}
