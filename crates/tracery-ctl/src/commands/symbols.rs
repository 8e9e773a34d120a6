//! `tracery-ctl symbols`: what can be probed in a binary.

use std::{io::Write, path::PathBuf};

use tracery_dwarf::Binary;

use crate::{DebugFileArg, OutputFormat};

/// Arguments of `tracery-ctl symbols`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The executable to read.
    binary: PathBuf,
    /// List functions whose name contains this (or matches this glob).
    #[arg(long, value_name = "PATTERN", num_args = 0..=1, default_missing_value = "")]
    functions: Option<String>,
    /// List the lines with code in this source file (matched by path suffix).
    #[arg(long, value_name = "FILE")]
    lines: Option<String>,
    #[command(flatten)]
    debug: DebugFileArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

/// Runs `symbols`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let binary = Binary::open_with_debug_file(&args.binary, args.debug.debug_file.as_deref())?;
    let mut out = std::io::stdout().lock();
    if let Some(file) = &args.lines {
        let lines = tracery_dwarf::lines(&binary, file)?;
        match args.output {
            OutputFormat::Json => {
                for l in &lines {
                    writeln!(out, "{}", serde_json::to_string(l)?)?;
                }
            }
            OutputFormat::Text => {
                for l in &lines {
                    let addrs: Vec<String> = l.addresses.iter().map(|a| a.to_string()).collect();
                    writeln!(out, "{:>6}  {:<40} {}", l.line, l.function, addrs.join(" "))?;
                }
            }
        }
        return Ok(());
    }
    let pattern = args.functions.as_deref().filter(|p| !p.is_empty());
    let functions = tracery_dwarf::functions(&binary, pattern);
    if functions.is_empty() {
        anyhow::bail!(
            "no functions{} in {}",
            pattern
                .map(|p| format!(" matching {p:?}"))
                .unwrap_or_default(),
            args.binary.display()
        );
    }
    for f in &functions {
        match args.output {
            OutputFormat::Json => writeln!(out, "{}", serde_json::to_string(f)?)?,
            OutputFormat::Text => {
                let loc = match (&f.file, f.line) {
                    (Some(file), Some(line)) => format!("{}:{line}", file.display()),
                    _ => String::new(),
                };
                writeln!(out, "{}  {:<50} {}", f.address, f.name, loc)?;
            }
        }
    }
    Ok(())
}
