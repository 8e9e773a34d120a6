//! Python (CPython 3.11) breakpoints by `file.py:LINE` or `module.function`, with no code
//! change and no restart.
//!
//! Mechanism: a hardware data watchpoint (a `perf_event` breakpoint, read/write, 2 bytes)
//! on the bytecode word of the line's first instruction in the live code object
//! (`co_code_adaptive`). The interpreter reads that word only when it is about to run that
//! instruction, so only that line of that function traps: every other line and function of
//! the process runs at full speed, with no USDT semaphore and no process-wide slow path.
//! One watchpoint per thread that exists at attach; threads they start inherit it. A thread
//! has 4 debug registers, so a process takes at most 4 sites.
//!
//! - [`interpreter`]: finds the interpreter in the process, its version, the offset table,
//!   and checks the table against the live interpreter;
//! - [`locate`]: walks `sys.modules` for the code objects of a file or function, and the
//!   line table ([`code`]) for the instruction that starts the line;
//! - the kernel program (`tracery-ebpf/src/python.rs`) keeps only fetches by that code
//!   object's own frame and copies the stack and the locals breadth first;
//! - [`decode`] turns the copied objects into values; [`runtime`] owns it all.
//!
//! The program runs in the agent's one eBPF object, so it finds the request a thread serves
//! where the trace tracker keeps it (one request per thread, as in threaded servers):
//! `--trace-id` and `--header` filter in the kernel, and snapshots carry the trace id.
//! asyncio tasks are not attributed (many requests share one thread); `--freeze` is
//! refused (a Python thread stopped at a hit holds the GIL, stopping the whole process).

pub mod code;
pub mod decode;
mod error;
pub mod interpreter;
pub mod locate;
pub mod memory;
mod new_processes;
mod runtime;

pub use error::PythonError;
pub use interpreter::Interpreter;
pub use runtime::{KernelCounters, PythonRuntime, DEBUG_REGISTERS};

/// True when `location` is a `file.py:LINE`, which only CPython runs.
pub fn is_python_location(location: &str) -> bool {
    locate::parse_line_location(location).is_some()
}

/// True when `pid` runs a CPython interpreter (`python3.11`, `python3`, ...): a function
/// location for it is a Python `module.function`.
pub fn is_python_process(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("python"))
        })
        .unwrap_or(false)
}
