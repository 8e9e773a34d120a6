//! The demo behind `cargo xtask demo`: starts the Rust sample service, sets a breakpoint on
//! the source line after its order total is computed, and prints the snapshot twice: for
//! people, then as JSON.

use std::{
    path::PathBuf,
    process::{Command, ExitCode},
};

use tracery_tests::{marker_line, FixtureProcess};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let ctl = match (args.next().as_deref(), args.next()) {
        (Some("--ctl"), Some(path)) => PathBuf::from(path),
        _ => {
            eprintln!("usage: tracery-demo --ctl PATH/TO/tracery-ctl");
            return ExitCode::FAILURE;
        }
    };
    println!("starting the sample service (tests/fixtures/rust/orders.rs, debug build)...");
    let service = FixtureProcess::spawn("rust-debug", &["serve"]);
    let (file, line) = marker_line("rust_after_total");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let location = format!("{name}:{line}");
    let source = std::fs::read_to_string(&file).unwrap_or_default();
    let code = source.lines().nth(line as usize - 1).unwrap_or("").trim();
    println!(
        "service PID {} is running; breakpoint at {location}:",
        service.pid()
    );
    println!("    {line} | {code}");
    println!();
    for output in ["text", "json"] {
        println!(
            "$ tracery-ctl probe --pid {} --at {location} --output {output}",
            service.pid()
        );
        let status = Command::new(&ctl)
            .args([
                "probe",
                "--pid",
                &service.pid().to_string(),
                "--at",
                &location,
            ])
            .args(["--count", "1", "--timeout", "30", "--output", output])
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("tracery-ctl failed ({s})");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("cannot run {}: {e}", ctl.display());
                return ExitCode::FAILURE;
            }
        }
        println!();
    }
    println!("the service kept running throughout; stopping it.");
    ExitCode::SUCCESS
}
