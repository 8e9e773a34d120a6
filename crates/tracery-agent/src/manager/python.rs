//! The Manager's hook for Python breakpoints: `.py` locations, and function locations in
//! python processes, go to [`crate::python::PythonRuntime`] (hardware watchpoints on
//! bytecode), not uprobes.

use super::{BreakpointSpec, BreakpointStatus, Manager, Target};
use crate::error::AgentError;

impl Manager {
    /// True when `spec` is a Python breakpoint: a `file.py:LINE`, or a PID target that runs
    /// python (its function locations are `module.function`).
    pub(super) fn is_python(&self, spec: &BreakpointSpec) -> bool {
        crate::python::is_python_location(&spec.location)
            || matches!(spec.target, Target::Pid(pid) if crate::python::is_python_process(pid))
    }

    /// A Python location: armed in CPython processes through watchpoints.
    pub(super) fn add_python(
        &mut self,
        spec: BreakpointSpec,
    ) -> Result<BreakpointStatus, AgentError> {
        let (pids, fail_fast) = self.runtime_targets(&spec)?;
        let python = match &mut self.python {
            Some(p) => p,
            None => self.python.insert(crate::python::PythonRuntime::start()?),
        };
        Ok(python.add(spec, pids, fail_fast)?)
    }

    /// The Python breakpoints, when one was ever added (for tests and diagnostics).
    pub fn python(&mut self) -> Option<&mut crate::python::PythonRuntime> {
        self.python.as_mut()
    }
}
