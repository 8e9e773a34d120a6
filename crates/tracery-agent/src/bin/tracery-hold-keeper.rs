//! `tracery-hold-keeper`: keeps the held messages of frozen traces for the agent, and
//! lets them go if the agent dies. Started by the agent only; see `tracery_agent::freeze::keeper`.

use clap::Parser;

/// Keeps held messages for the Tracery agent (started by the agent, not by hand).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Hold slots to create: sockets that can hold bytes at once.
    #[arg(long, default_value_t = 64)]
    slots: u32,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = tracery_agent::freeze::keeper::run(args.slots) {
        eprintln!("tracery-hold-keeper: {e:#}");
        std::process::exit(1);
    }
}
