//! `tracery-ctl certs init`: a development CA, the controller's server certificate and an
//! agent client certificate, laid out as Kubernetes TLS Secrets are (`tls.crt`, `tls.key`,
//! `ca.crt`), so each directory can become a Secret as it is.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Names the controller is reached by: loopback, and its Service in tracery-system.
const CONTROLLER_SANS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "tracery-controller",
    "tracery-controller.tracery-system",
    crate::client::CLUSTER_TLS_NAME,
    "tracery-controller.tracery-system.svc.cluster.local",
];

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write a development CA (DIR/ca.crt, DIR/ca.key), the controller's certificate
    /// (DIR/controller) and an agent client certificate (DIR/agent). Keys are 0600.
    Init {
        /// Where to write them.
        #[arg(long, value_name = "DIR", default_value = "tracery-certs")]
        dir: PathBuf,
        /// Another name or IP address the controller is reached by (repeatable), e.g. the
        /// address a standalone listens on.
        #[arg(long = "san", value_name = "NAME|IP")]
        sans: Vec<String>,
        /// Days the certificates are valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Overwrite certificates already in DIR.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    let Command::Init {
        dir,
        sans,
        days,
        force,
    } = command;
    if dir.join("ca.crt").exists() && !force {
        anyhow::bail!(
            "{} already holds a CA; pass --force to replace it (agents and controllers using \
             the old one must then get new certificates too)",
            dir.display()
        );
    }
    let now = time::OffsetDateTime::now_utc();
    let validity = |p: &mut CertificateParams| {
        // An hour back: clocks of other machines may be a little behind.
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(days);
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "Tracery development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_key = KeyPair::generate()?;
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    write(&dir.join("ca.crt"), &ca_pem, false)?;
    write(&dir.join("ca.key"), &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut names: Vec<String> = CONTROLLER_SANS.iter().map(|s| s.to_string()).collect();
    names.extend(sans);
    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let mut p = CertificateParams::new(names)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut p);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        anyhow::Ok((cert.pem(), key.serialize_pem()))
    };
    let (cert, key) = leaf(
        names,
        "tracery-controller",
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    write_set(&dir.join("controller"), &cert, &key, &ca_pem)?;
    let (cert, key) = leaf(
        vec!["tracery-agent".into()],
        "tracery-agent",
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    write_set(&dir.join("agent"), &cert, &key, &ca_pem)?;
    let d = dir.display();
    println!(
        "wrote a development CA and certificates valid for {days} days to {d}:\n  \
         controller: tracery-controller --tls-dir {d}/controller (or tracery-agent standalone --tls-dir {d}/controller --agent-tls-dir {d}/agent)\n  \
         agents:     tracery-agent run --tls-dir {d}/agent --controller https://HOST:7777\n  \
         tracery-ctl: --tls-ca {d}/ca.crt (or TRACERY_CA) with an https:// --controller\n  \
         Kubernetes: kubectl -n tracery-system create secret generic tracery-controller-tls --from-file={d}/controller\n              \
         kubectl -n tracery-system create secret generic tracery-agent-tls --from-file={d}/agent\n\
         keep {d}/ca.key secret: whoever has it can make agent certificates"
    );
    Ok(())
}

fn write_set(dir: &Path, cert: &str, key: &str, ca: &str) -> anyhow::Result<()> {
    write(&dir.join("tls.crt"), cert, false)?;
    write(&dir.join("tls.key"), key, true)?;
    write(&dir.join("ca.crt"), ca, false)
}

/// Writes `text` to `path`, keys with mode 0600 from the start.
fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}; pass another --dir", parent.display()))?;
    }
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}; pass another --dir", path.display()))
}
