//! `tracery-fuzz-seeds DIR TARGET...`: writes each target's seeds to `DIR/TARGET/seed-N`
//! (existing files are kept: the corpus grows across runs).

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: tracery-fuzz-seeds DIR TARGET...");
        return ExitCode::from(2);
    };
    for name in args {
        let name = name.to_string_lossy();
        let Some(target) = tracery_fuzz::target(&name) else {
            eprintln!("no fuzz target `{name}`");
            return ExitCode::from(2);
        };
        let out = dir.join(target.name);
        if let Err(e) = std::fs::create_dir_all(&out) {
            eprintln!("cannot create {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        for (i, seed) in (target.seeds)().iter().enumerate() {
            let path = out.join(format!("seed-{i}"));
            if let Err(e) = std::fs::write(&path, seed) {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
