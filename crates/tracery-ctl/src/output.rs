//! Text rendering of snapshots for people.

use std::fmt::Write;

use tracery_model::Snapshot;

/// A snapshot as a readable block: `title` (e.g. `hit #3`), variables as a tree, then the
/// stack.
pub fn snapshot_text(title: &str, s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{title}  pid {} tid {}  {}",
        s.pid,
        s.tid,
        humantime::format_rfc3339_micros(s.time)
    );
    let _ = writeln!(
        out,
        "  at {} ({}:{})  {:#x}",
        s.location.function, s.location.file, s.location.line, s.location.address
    );
    if let Some(t) = &s.trace_id {
        let _ = writeln!(out, "  trace {t}");
    }
    let _ = writeln!(out, "  variables:");
    if s.variables.is_empty() {
        let _ = writeln!(out, "    (none in scope)");
    }
    for line in tracery_model::render_text(&s.variables, s.language.language()).lines() {
        let _ = writeln!(out, "    {line}");
    }
    let _ = writeln!(out, "  stack:");
    for (i, f) in s.stack.iter().enumerate() {
        let loc = match (&f.file, f.line) {
            (Some(file), Some(line)) => format!(" at {file}:{line}"),
            (Some(file), None) => format!(" at {file}"),
            _ => String::new(),
        };
        let inl = if f.inlined { " [inlined]" } else { "" };
        let _ = writeln!(out, "    #{i:<2} {}{loc}{inl}", f.function);
    }
    out
}
