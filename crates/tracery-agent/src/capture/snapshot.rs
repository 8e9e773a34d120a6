//! Snapshots: one decoded breakpoint hit, ready to print, store or send.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value as Json};
use tracery_dwarf::{SourceLanguage, VarKind, Variable};

/// Where a breakpoint hit: the probe site in source terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub function: String,
    pub file: String,
    pub line: u32,
    /// Instruction address in the process.
    pub address: u64,
}

/// One frame of a snapshot's stack, innermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackFrame {
    /// Demangled function name.
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// Address in the process: the probe address, then return addresses.
    pub address: u64,
    /// True for a frame the compiler inlined into the next one.
    pub inlined: bool,
}

/// One breakpoint hit: variables and stack at the moment of the hit.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Breakpoint the hit belongs to (0 for `tracery-ctl probe`).
    pub breakpoint_id: u64,
    pub pid: u32,
    pub tid: u32,
    /// Wall-clock time of the hit (converted from the kernel's monotonic clock).
    pub time: SystemTime,
    pub location: Location,
    pub variables: Vec<Variable>,
    /// Innermost frame first, inline frames expanded.
    pub stack: Vec<StackFrame>,
    /// W3C trace id of the request, when the thread's request is known.
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    /// Source language of the probed code, for rendering.
    pub language: SourceLanguage,
}

impl Snapshot {
    /// The JSON object printed by `--output json` (one per line) and stored by the controller.
    pub fn to_json(&self) -> Json {
        let variables: Vec<Json> = self
            .variables
            .iter()
            .map(|v| {
                let mut o = json!({
                    "name": v.name,
                    "kind": match v.kind { VarKind::Arg => "arg", VarKind::Local => "local" },
                    "type": v.type_name,
                    "value": v.value.to_json(),
                });
                if let Some(f) = &v.frame {
                    o["frame"] = json!(f);
                }
                o
            })
            .collect();
        let stack: Vec<Json> = self
            .stack
            .iter()
            .map(|f| {
                json!({
                    "function": f.function,
                    "file": f.file,
                    "line": f.line,
                    "address": format!("{:#x}", f.address),
                    "inlined": f.inlined,
                })
            })
            .collect();
        let mut o = json!({
            "breakpoint_id": self.breakpoint_id,
            "pid": self.pid,
            "tid": self.tid,
            "time": humantime::format_rfc3339_nanos(self.time).to_string(),
            "location": {
                "function": self.location.function,
                "file": self.location.file,
                "line": self.location.line,
                "address": format!("{:#x}", self.location.address),
            },
            "variables": variables,
            "stack": stack,
        });
        if let Some(t) = &self.trace_id {
            o["trace_id"] = json!(t);
        }
        if let Some(s) = &self.span_id {
            o["span_id"] = json!(s);
        }
        o
    }
}

/// Converts the kernel's monotonic timestamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds, sampled once.
    offset_ns: i128,
}

impl Clock {
    /// Samples both clocks now.
    pub fn new() -> Self {
        let mono = crate::sys::monotonic_ns();
        let real = crate::sys::realtime_ns();
        Self {
            offset_ns: i128::from(real) - i128::from(mono),
        }
    }

    /// Wall-clock time of a `bpf_ktime_get_ns` value.
    pub fn wall(&self, ktime_ns: u64) -> SystemTime {
        let ns = (i128::from(ktime_ns) + self.offset_ns).max(0) as u128;
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Formats a trace or span id from the kernel; `None` when all zero (unknown).
pub fn hex_id(bytes: &[u8]) -> Option<String> {
    if bytes.iter().all(|b| *b == 0) {
        None
    } else {
        Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}
