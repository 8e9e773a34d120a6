//! Snapshots: one decoded breakpoint hit, ready to print, store or send.

use std::time::SystemTime;

use crate::database::DatabaseRead;
use crate::render::SourceLanguage;
use crate::value::Variable;
use serde_json::{json, Value as Json};

/// Where a breakpoint hit: the probe site in source terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Demangled name of the probed function.
    pub function: String,
    /// Source file, as the DWARF line table names it.
    pub file: String,
    /// Source line.
    pub line: u32,
    /// Instruction address in the process.
    pub address: u64,
}

/// One frame of a snapshot's stack, innermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackFrame {
    /// Demangled function name.
    pub function: String,
    /// Source file, when the line table knows it.
    pub file: Option<String>,
    /// Source line, when the line table knows it.
    pub line: Option<u32>,
    /// Address in the process: the probe address, then return addresses.
    pub address: u64,
    /// True for a frame the compiler inlined into the next one.
    pub inlined: bool,
}

/// Where a process runs in a Kubernetes cluster (cluster mode only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name in the pod spec.
    pub container: String,
    /// The node the pod runs on.
    pub node: String,
}

/// One breakpoint hit: variables and stack at the moment of the hit.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Breakpoint the hit belongs to (0 for `tracery-ctl probe`).
    pub breakpoint_id: u64,
    /// Process that hit.
    pub pid: u32,
    /// Thread that hit.
    pub tid: u32,
    /// Wall-clock time of the hit (converted from the kernel's monotonic clock).
    pub time: SystemTime,
    /// Where it hit.
    pub location: Location,
    /// Decoded arguments and locals.
    pub variables: Vec<Variable>,
    /// Innermost frame first, inline frames expanded.
    pub stack: Vec<StackFrame>,
    /// W3C trace id of the request, when the thread's request is known.
    pub trace_id: Option<String>,
    /// Span id of the request, when known.
    pub span_id: Option<String>,
    /// Source language of the probed code, for rendering.
    pub language: SourceLanguage,
    /// The breakpoint's `--capture` queries, read by the controller at the hit.
    pub databases: Vec<DatabaseRead>,
    /// Cluster mode: the pod and container of the process, when it runs in a known pod.
    pub pod: Option<PodRef>,
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
                    "kind": v.kind.as_str(),
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
            "databases": self.databases.iter().map(DatabaseRead::to_json).collect::<Vec<_>>(),
            "language": self.language.as_str(),
        });
        if let Some(t) = &self.trace_id {
            o["trace_id"] = json!(t);
        }
        if let Some(s) = &self.span_id {
            o["span_id"] = json!(s);
        }
        if let Some(p) = &self.pod {
            o["pod"] = json!({
                "namespace": p.namespace,
                "pod": p.pod,
                "container": p.container,
                "node": p.node,
            });
        }
        o
    }
}
