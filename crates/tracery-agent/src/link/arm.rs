//! `ArmResult`s: what arming a breakpoint did in each process, as the controller hears it.

use tracery_proto::v1::{self, arm_result};

use crate::manager::BreakpointStatus;

/// One `ArmResult` per process armed or failed. Pid 0 stands for the executable file:
/// with probes, they are bound to it for every process that runs it, now and later; with
/// none, no process matches yet (the breakpoint is kept and armed when one starts).
pub fn arm_results(st: &BreakpointStatus) -> Vec<v1::ArmResult> {
    let file_sites: usize = st.files.iter().map(|(_, n)| n).sum();
    let file = (file_sites > 0).then(|| v1::ArmResult {
        breakpoint_id: st.id,
        pid: 0,
        result: Some(arm_result::Result::Probes(
            u32::try_from(file_sites).unwrap_or(u32::MAX),
        )),
    });
    let mut out: Vec<v1::ArmResult> = file
        .into_iter()
        .chain(st.processes.iter().map(|(pid, probes)| v1::ArmResult {
            breakpoint_id: st.id,
            pid: *pid,
            result: Some(arm_result::Result::Probes(
                u32::try_from(*probes).unwrap_or(u32::MAX),
            )),
        }))
        .collect();
    out.extend(
        st.errors
            .iter()
            .map(|(pid, e)| arm_error(st.id, *pid, e.clone())),
    );
    if out.is_empty() {
        out.push(v1::ArmResult {
            breakpoint_id: st.id,
            pid: 0,
            result: Some(arm_result::Result::Probes(0)),
        });
    }
    out
}

/// A failed arm, with why.
pub fn arm_error(id: u64, pid: u32, error: String) -> v1::ArmResult {
    v1::ArmResult {
        breakpoint_id: id,
        pid,
        result: Some(arm_result::Result::Error(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breakpoint_waiting_for_its_process_reports_zero_probes() {
        let st = BreakpointStatus {
            id: 4,
            files: vec![],
            processes: vec![],
            hits: 0,
            filtered: 0,
            kernel_drops: 0,
            over_limit: 0,
            errors: vec![(77, "no DWARF".into())],
            exited: vec![],
            ended: None,
        };
        let r = arm_results(&st);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].pid, 77);
        let r = arm_results(&BreakpointStatus {
            errors: vec![],
            ..st.clone()
        });
        assert_eq!(r[0].result, Some(arm_result::Result::Probes(0)));
        // Bound to the file: armed, though no process runs it yet.
        let r = arm_results(&BreakpointStatus {
            errors: vec![],
            files: vec![("/srv/orders".into(), 2)],
            ..st
        });
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].pid, &r[0].result),
            (0, &Some(arm_result::Result::Probes(2)))
        );
    }
}
