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
use tracery_agent::{
    capture::when::{compile_when, parse_when, when_holds},
    ArmOptions, Session,
};
use tracery_dwarf::CaptureLimits;

use crate::{output, OutputFormat};

/// Arguments of `tracery-ctl probe`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Process to probe.
    #[arg(long)]
    pub(crate) pid: u32,
    /// Where: FILE:LINE (file matched by path suffix) or a function name.
    #[arg(long, value_name = "LOCATION")]
    pub(crate) at: String,
    /// Stop after this many hits.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: u64,
    /// Stop after this many seconds even without hits.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub(crate) timeout: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) output: OutputFormat,
    /// Most bytes captured per string.
    #[arg(long, default_value_t = CaptureLimits::default().max_string)]
    max_string: u16,
    /// Most elements captured per array, slice or Vec.
    #[arg(long, default_value_t = CaptureLimits::default().max_elements)]
    max_elements: u16,
    /// Keep only hits where this holds, e.g. `order.qty > 10 && status == "pending"`.
    /// Integer comparisons joined by `&&` are checked in the kernel; the rest per hit.
    #[arg(long, value_name = "EXPR")]
    pub(crate) when: Option<String>,
}

/// Runs `probe`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    // Before anything that needs privileges: a typo should not need root to be reported.
    let when = parse_when(args.when.as_deref())?;
    tracery_agent::privilege::check()?;
    let limits = CaptureLimits {
        max_string: args.max_string,
        max_elements: args.max_elements,
        ..CaptureLimits::default()
    };
    if super::probe_python::applies(args.pid, &args.at) {
        return super::probe_python::run(&args, limits);
    }
    let mut bp = tracery_agent::prepare(args.pid, &args.at, &limits)?;
    // Per site: what the kernel checks, and whether user space checks anything more.
    let compiled = compile_when(when.as_ref(), &mut bp.sites)?;
    let mut session = Session::start()?;
    let opts = ArmOptions {
        breakpoint_id: 0,
        // Each site stops in the kernel after `count`; user space stops at `count` overall.
        hit_limit: compiled.kernel_hit_limit(args.count),
        rate_per_sec: 0,
        // `probe` captures every hit and never freezes.
        scope_trace: None,
        header_bits: 0,
        freeze: None,
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
    for (i, split) in compiled.splits.iter().enumerate() {
        let kernel: Vec<String> = split.kernel.iter().map(|c| format!("`{c}`")).collect();
        let kernel = if kernel.is_empty() {
            "nothing".to_string()
        } else {
            kernel.join(", ")
        };
        let user = split
            .rest
            .as_ref()
            .map_or("nothing".to_string(), |e| format!("`{e}`"));
        let at = if compiled.splits.len() > 1 {
            format!(" at site {}", i + 1)
        } else {
            String::new()
        };
        eprintln!("  --when{at}: the kernel checks {kernel}; user space checks {user}");
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
    let mut user_filtered = 0u64;
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
            if !when_holds(when.as_ref(), &snap.variables) {
                user_filtered += 1;
                continue;
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
        if !bp.target.is_alive() {
            lost_target = true;
            break;
        }
    }
    let dropped = session.dropped();
    // Read before disarming: the slot's counters go with it.
    let kernel_filtered: u64 = slots
        .iter()
        .filter_map(|s| session.counters(*s).ok())
        .map(|c| c.cond_false)
        .sum();
    for slot in slots {
        session.disarm(slot)?;
    }
    eprintln!(
        "detached: {seen} hit{} captured, {dropped} dropped",
        if seen == 1 { "" } else { "s" }
    );
    if let Some(expr) = &when {
        eprintln!(
            "--when `{expr}` filtered {kernel_filtered} hits in the kernel and {user_filtered} in user space"
        );
    }
    if lost_target && seen < args.count {
        anyhow::bail!(
            "process {} exited after {seen} of {} hits",
            args.pid,
            args.count
        );
    }
    if seen == 0 && kernel_filtered + user_filtered > 0 {
        eprintln!(
            "no hit matched --when within {}s: the code ran, but the condition never held",
            args.timeout
        );
    } else if seen == 0 {
        eprintln!(
            "no hits within {}s: is the code at {} running?",
            args.timeout, args.at
        );
    }
    Ok(())
}
