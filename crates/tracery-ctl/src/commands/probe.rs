//! `tracery-ctl probe`: attach, print each hit, detach after N hits or the timeout.

use std::{
    io::Write,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use tracery_agent::{ArmOptions, Session};
use tracery_dwarf::CaptureLimits;

use crate::{output, OutputFormat};

/// Arguments of `tracery-ctl probe`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Process to probe.
    #[arg(long)]
    pid: u32,
    /// Where: FILE:LINE (file matched by path suffix) or a function name.
    #[arg(long, value_name = "LOCATION")]
    at: String,
    /// Stop after this many hits.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Stop after this many seconds even without hits.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    timeout: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    /// Most bytes captured per string.
    #[arg(long, default_value_t = CaptureLimits::default().max_string)]
    max_string: u16,
    /// Most elements captured per array, slice or Vec.
    #[arg(long, default_value_t = CaptureLimits::default().max_elements)]
    max_elements: u16,
}

/// Runs `probe`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    tracery_agent::privilege::check()?;
    let limits = CaptureLimits {
        max_string: args.max_string,
        max_elements: args.max_elements,
        ..CaptureLimits::default()
    };
    let bp = tracery_agent::prepare(args.pid, &args.at, &limits)?;
    let mut session = Session::start()?;
    let opts = ArmOptions {
        breakpoint_id: 0,
        // Each site stops in the kernel after `count`; user space stops at `count` overall.
        hit_limit: args.count,
        rate_per_sec: 0,
    };
    let slots = session.arm(&bp, &opts)?;
    for (site, _) in &bp.sites {
        eprintln!(
            "attached at {} ({}:{}, {}) in PID {} ({})",
            site.function,
            site.file.display(),
            site.line,
            bp.bias.to_proc(site.address),
            args.pid,
            bp.target.exe().display()
        );
        if let Some(note) = &site.note {
            eprintln!("  note: {note}");
        }
    }
    eprintln!(
        "waiting for {} hit{} (timeout {}s, Ctrl-C to stop)",
        args.count,
        if args.count == 1 { "" } else { "s" },
        args.timeout
    );

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    let mut lost_target = false;
    while seen < args.count && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = (deadline - now).min(Duration::from_millis(200));
        for snap in session.poll(wait)? {
            if seen == args.count {
                break;
            }
            seen += 1;
            let mut out = stdout.lock();
            match args.output {
                OutputFormat::Json => writeln!(out, "{}", snap.to_json())?,
                OutputFormat::Text => writeln!(out, "{}", output::snapshot_text(seen, &snap))?,
            }
            out.flush()?;
        }
        if !bp.target.is_alive() {
            lost_target = true;
            break;
        }
    }
    let dropped = session.dropped();
    for slot in slots {
        session.disarm(slot)?;
    }
    eprintln!(
        "detached: {seen} hit{} captured, {dropped} dropped",
        if seen == 1 { "" } else { "s" }
    );
    if lost_target && seen < args.count {
        anyhow::bail!(
            "process {} exited after {seen} of {} hits",
            args.pid,
            args.count
        );
    }
    if seen == 0 {
        eprintln!(
            "no hits within {}s: is the code at {} running?",
            args.timeout, args.at
        );
    }
    Ok(())
}
