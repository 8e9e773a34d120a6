//! `tracery-ctl probe` on a CPython process: a `.py:LINE` location, or a function of a
//! python process (`module.function`), armed with hardware watchpoints on its bytecode.

use std::{
    io::Write,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use tracery_agent::{python::PythonRuntime, BreakpointSpec, ProbeTable, Target};
use tracery_dwarf::CaptureLimits;

use super::probe::Args;
use crate::{output, OutputFormat};

/// True when `probe` should take the Python path for these arguments.
pub fn applies(pid: u32, at: &str) -> bool {
    tracery_agent::python::is_python_location(at) || tracery_agent::python::is_python_process(pid)
}

/// Runs `probe` on a Python process.
pub fn run(args: &Args, limits: CaptureLimits) -> anyhow::Result<()> {
    let mut table = ProbeTable::load()?;
    let mut rt = PythonRuntime::start(&mut table)?;
    let spec = BreakpointSpec {
        id: 1,
        target: Target::Pid(args.pid),
        location: args.at.clone(),
        when: args.when.clone(),
        hit_limit: args.count,
        rate_per_sec: 0,
        expires_at: None,
        limits,
        scope: Default::default(),
        freeze: None,
        capture_paths: Vec::new(),
    };
    let status = rt.add(&mut table, spec, vec![args.pid], true)?;
    let sites: usize = status.processes.iter().map(|p| p.1).sum();
    eprintln!(
        "attached at {} in Python process {} ({} site{}, {} watchpoint{})",
        args.at,
        args.pid,
        sites,
        if sites == 1 { "" } else { "s" },
        rt.watchpoints(1, args.pid),
        if rt.watchpoints(1, args.pid) == 1 {
            ""
        } else {
            "s"
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    while seen < args.count && !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        for snap in rt.wait(&mut table, Duration::from_millis(200)) {
            if seen == args.count {
                break;
            }
            seen += 1;
            let mut out = stdout.lock();
            match args.output {
                OutputFormat::Json => writeln!(out, "{}", snap.to_json())?,
                OutputFormat::Text => writeln!(
                    out,
                    "{}",
                    output::snapshot_text(&format!("hit #{seen}"), &snap)
                )?,
            }
            out.flush()?;
        }
        if !std::path::Path::new(&format!("/proc/{}", args.pid)).exists() {
            break;
        }
    }
    let filtered = rt.status_of(1).map_or(0, |s| s.filtered);
    rt.remove(&mut table, 1);
    eprintln!(
        "detached: {seen} hit{} captured, {filtered} filtered by --when",
        if seen == 1 { "" } else { "s" }
    );
    if seen == 0 {
        eprintln!(
            "no hits within {}s: is the code at {} running?",
            args.timeout, args.at
        );
    }
    Ok(())
}
