//! The Manager's hook for Node.js breakpoints: `.js`/`.ts` locations go to
//! [`crate::node::NodeRuntime`], which arms them through the inspector, not uprobes.

use super::{cluster, BreakpointSpec, BreakpointStatus, Manager, Target};
use crate::{error::AgentError, exec_watch::Exec};

impl Manager {
    /// A `.js`/`.ts` location: armed in Node processes through their inspector.
    pub(super) fn add_node(
        &mut self,
        spec: BreakpointSpec,
    ) -> Result<BreakpointStatus, AgentError> {
        let (pids, fail_fast) = self.runtime_targets(&spec)?;
        let node = match &mut self.node {
            Some(n) => n,
            None => self.node.insert(crate::node::NodeRuntime::start()?),
        };
        Ok(node.add(spec, pids, fail_fast)?)
    }

    /// The processes a runtime (Node, Python) breakpoint is armed in now, after removing the
    /// breakpoint it replaces; and whether one failure fails it (a single PID target).
    pub(super) fn runtime_targets(
        &mut self,
        spec: &BreakpointSpec,
    ) -> Result<(Vec<u32>, bool), AgentError> {
        let pids = match &spec.target {
            Target::Pid(pid) if !crate::process::pid_exists(*pid) => {
                return Err(AgentError::NoSuchProcess { pid: *pid });
            }
            Target::Pid(pid) => vec![*pid],
            Target::Matching(m) => m.find(),
            Target::Pods(selector) => self.find_pods(spec.id, selector)?,
        };
        self.remove(spec.id)?;
        Ok((pids, matches!(spec.target, Target::Pid(_))))
    }

    /// The Node breakpoints, when one was ever added (for tests and diagnostics).
    pub fn node(&mut self) -> Option<&mut crate::node::NodeRuntime> {
        self.node.as_mut()
    }

    /// A process that just started: Node breakpoints whose target selects it are armed
    /// in it once Node is ready (a few ticks later).
    pub(super) fn node_exec(&mut self, e: &Exec) {
        let pods = self.pods.as_ref();
        if let Some(node) = self.node.as_mut() {
            node.on_exec(e.pid, |target| cluster::selects_exec(target, pods, e));
        }
    }
}
