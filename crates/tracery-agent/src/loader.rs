//! Loading the embedded eBPF object and checking what the kernel offers.

use aya::{programs::UProbe, Ebpf, EbpfLoader};
use tracery_common::names;

use crate::{error::AgentError, sys};

/// The eBPF object built by `build.rs` with Debian's rustc (see EBPF-TOOLCHAIN.md).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracery.bpf.o"));

/// Checks the kernel features the capture path needs, with a message per missing one.
pub fn check_features() -> Result<(), AgentError> {
    let f = aya::features();
    if !f.bpf_cookie() {
        return Err(AgentError::Feature(
            "uprobe attach cookies are unavailable (Linux >= 5.15 needed)".into(),
        ));
    }
    if !std::path::Path::new("/sys/bus/event_source/devices/uprobe").exists() {
        return Err(AgentError::Feature(
            "the uprobe perf PMU is missing (CONFIG_UPROBE_EVENTS)".into(),
        ));
    }
    Ok(())
}

/// Loads the object and both uprobe programs into the kernel (not yet attached).
pub fn load() -> Result<Ebpf, AgentError> {
    // Kernels before 5.11 charge maps to RLIMIT_MEMLOCK; newer ones ignore it.
    if let Err(e) = sys::raise_memlock_limit() {
        tracing::debug!("cannot raise RLIMIT_MEMLOCK: {e}");
    }
    check_features()?;
    let mut ebpf = EbpfLoader::new()
        .load(OBJECT)
        .map_err(|e| AgentError::Load(Box::new(e)))?;
    for name in [names::CAPTURE, names::EMPTY] {
        let prog: &mut UProbe = ebpf
            .program_mut(name)
            .ok_or(AgentError::Feature(format!(
                "program {name} missing from the object"
            )))?
            .try_into()
            .map_err(|e| AgentError::Program {
                program: name_static(name),
                source: Box::new(e),
            })?;
        prog.load().map_err(|e| AgentError::Program {
            program: name_static(name),
            source: Box::new(e),
        })?;
    }
    Ok(ebpf)
}

fn name_static(name: &str) -> &'static str {
    if name == names::CAPTURE {
        names::CAPTURE
    } else {
        names::EMPTY
    }
}
