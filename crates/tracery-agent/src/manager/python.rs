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
        let table = self.session.table();
        let python = match &mut self.python {
            Some(p) => p,
            None => self
                .python
                .insert(crate::python::PythonRuntime::start(table)?),
        };
        Ok(python.add(table, spec, pids, fail_fast)?)
    }

    /// Removes Python breakpoint `id`; false if there is none.
    pub(super) fn remove_python(&mut self, id: u64) -> bool {
        let table = self.session.table();
        self.python.as_mut().is_some_and(|p| p.remove(table, id))
    }

    /// The Python breakpoints' snapshots since the last tick (see [`PythonRuntime::tick`]).
    ///
    /// [`PythonRuntime::tick`]: crate::python::PythonRuntime::tick
    pub(super) fn tick_python(&mut self) -> Vec<crate::capture::snapshot::Snapshot> {
        let table = self.session.table();
        match &mut self.python {
            Some(p) => p.tick(table),
            None => Vec::new(),
        }
    }

    /// A process that just started: Python breakpoints whose target selects it are armed in
    /// it once its code is loaded (a few ticks later).
    pub(super) fn python_exec(&mut self, e: &crate::exec_watch::Exec) {
        let pods = self.pods.as_ref();
        if let Some(python) = self.python.as_mut() {
            python.on_exec(e.pid, |target| {
                super::cluster::selects_exec(target, pods, e)
            });
        }
    }

    /// The Python breakpoints, when one was ever added (for tests and diagnostics).
    pub fn python(&mut self) -> Option<&mut crate::python::PythonRuntime> {
        self.python.as_mut()
    }
}
