//! The demo behind `cargo xtask demo`: three services (gateway in Go, orders in Rust with
//! PostgreSQL, payments in Go), standalone Tracery, a breakpoint set by service name and
//! source line, one request through the gateway, and the snapshot it produced.
//!
//! Usage: tracery-demo --bin-dir DIR --database URL
//! (DIR holds tracery-ctl, tracery-agent and demo-orders, as cargo built them.)

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use tracery_tests::{demo::DemoServices, fixture, marker_line};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let (bin_dir, database) = args()?;
    let ctl = bin_dir.join("tracery-ctl");
    let work = std::env::temp_dir().join(format!("tracery-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    step("starting the services: gateway (Go) -> orders (Rust, PostgreSQL) -> payments (Go)");
    let orders_bin = bin_dir.join("demo-orders");
    let services = DemoServices::start(&orders_bin, &database);
    let (gateway, orders, payments) = (&services.gateway, &services.orders, &services.payments);
    for (name, s) in [
        ("gateway ", gateway),
        ("orders  ", orders),
        ("payments", payments),
    ] {
        println!("    {name} {}  (PID {})", s.addr, s.process.pid());
    }

    step("starting standalone Tracery (controller + agent, SQLite store)");
    let config = work.join("tracery.toml");
    let exe = |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    std::fs::write(
        &config,
        format!(
            "[services.orders]\nexe = {:?}\n\n[services.gateway]\nexe = {:?}\n\n[services.payments]\nexe = {:?}\n",
            exe(&orders_bin)?,
            exe(&fixture("demo-gateway"))?,
            exe(&fixture("demo-payments"))?,
        ),
    )
    .map_err(|e| e.to_string())?;
    print!(
        "{}",
        indent(&std::fs::read_to_string(&config).unwrap_or_default())
    );
    let listen = free_port()?;
    let controller = format!("http://{listen}");
    let mut tracery = Command::new(bin_dir.join("tracery-agent"))
        .args(["standalone", "--config"])
        .arg(&config)
        .arg("--store")
        .arg(format!("sqlite://{}", work.join("tracery.db").display()))
        .args(["--listen", &listen])
        .spawn()
        .map_err(|e| format!("cannot start tracery-agent: {e}"))?;
    let result = demo(&ctl, &controller, &gateway.addr);
    let _ = tracery.kill();
    let _ = tracery.wait();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn demo(ctl: &Path, controller: &str, gateway: &str) -> Result<(), String> {
    wait_for_controller(ctl, controller)?;
    let (file, line) = marker_line("demo_priced");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let source = std::fs::read_to_string(&file).unwrap_or_default();
    let code = source.lines().nth(line as usize - 1).unwrap_or("").trim();
    let location = format!("{name}:{line}");
    step(&format!(
        "setting a breakpoint on service orders at {location}"
    ));
    println!("    {line} | {code}");
    let id = ctl_out(
        ctl,
        controller,
        &[
            "breakpoint",
            "set",
            "--service",
            "orders",
            "--at",
            &location,
        ],
    )?;
    let id = id.trim().to_string();
    println!("    breakpoint {id}");
    wait_armed(ctl, controller, &id)?;

    step("sending a request through the gateway");
    let body = r#"{"customer":"ana","item":"lamp","qty":3,"unit_cents":1250,"coupon":"TENOFF"}"#;
    let reply = post(gateway, "/checkout", body)?;
    println!("    POST /checkout -> {reply}");

    step("the snapshot the request left at the breakpoint");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = ctl_out(
            ctl,
            controller,
            &["snapshot", "list", "--breakpoint", &id, "--output", "json"],
        )?;
        if let Some(first) = list.lines().next() {
            let v: serde_json::Value = serde_json::from_str(first).map_err(|e| e.to_string())?;
            let snap = v["id"].to_string();
            ctl_show(ctl, controller, &["snapshot", "view", &snap])?;
            break;
        }
        if Instant::now() > deadline {
            return Err("no snapshot within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    step("what Tracery is doing");
    ctl_show(ctl, controller, &["status"])?;
    ctl_show(ctl, controller, &["breakpoint", "list"])?;
    println!("\nthe services kept running throughout; stopping everything.");
    Ok(())
}

fn step(what: &str) {
    println!("\n== {what}");
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

fn args() -> Result<(PathBuf, String), String> {
    let mut bin_dir = None;
    let mut database = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--bin-dir", Some(v)) => bin_dir = Some(PathBuf::from(v)),
            ("--database", Some(v)) => database = Some(v),
            _ => return Err("usage: tracery-demo --bin-dir DIR --database URL".into()),
        }
    }
    Ok((
        bin_dir.ok_or("--bin-dir is required")?,
        database.ok_or("--database is required")?,
    ))
}

fn free_port() -> Result<String, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.to_string())
}

/// Waits until an agent reports breakpoint `id` armed in a process: on a busy machine,
/// loading a large binary's DWARF can outlast the controller's wait when setting it, and a
/// request sent before would pass unseen.
fn wait_armed(ctl: &Path, controller: &str, id: &str) -> Result<(), String> {
    let id_number: Option<u64> = id.parse().ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(out) = ctl_out(ctl, controller, &["status", "--output", "json"]) {
            let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
            let armed = v["agents"].as_array().into_iter().flatten().any(|a| {
                a["processes"].as_array().into_iter().flatten().any(|p| {
                    p["breakpoints"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|b| b.as_u64() == id_number)
                })
            });
            if armed {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "breakpoint {id} was not armed within 60 s; see `tracery-ctl status`"
    ))
}

fn wait_for_controller(ctl: &Path, controller: &str) -> Result<(), String> {
    // Ready means the agent is connected too: a breakpoint set before that waits, pending,
    // and the demo's request would pass before it is armed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(out) = ctl_out(ctl, controller, &["status", "--output", "json"]) {
            let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
            let agents = v["agents"].as_array().cloned().unwrap_or_default();
            if agents.iter().any(|a| a["connected"] == true) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "standalone Tracery at {controller} had no connected agent within 30 s"
    ))
}

fn ctl_out(ctl: &Path, controller: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(ctl)
        .arg("--controller")
        .arg(controller)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run tracery-ctl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn ctl_show(ctl: &Path, controller: &str, args: &[&str]) -> Result<(), String> {
    println!("$ tracery-ctl {}", args.join(" "));
    print!("{}", ctl_out(ctl, controller, args)?);
    Ok(())
}

/// One HTTP/1.1 POST over std's TcpStream (the demo needs no HTTP client crate).
fn post(addr: &str, path: &str, body: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(body
        .lines()
        .rfind(|l| l.trim_start().starts_with('{'))
        .unwrap_or(body)
        .trim()
        .to_string())
}
