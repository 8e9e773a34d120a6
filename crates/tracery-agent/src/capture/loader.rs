//! Loading the embedded eBPF object and checking what the kernel offers.

use aya::{programs::UProbe, Ebpf, EbpfLoader};
use tracery_common::names;

use crate::{
    error::{AgentError, FeatureError},
    sys,
};

/// The eBPF object built by `build.rs` with Debian's rustc (see docs/ebpf-toolchain.md).
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracery.bpf.o"));

/// Checks, before loading, the kernel features the capture path needs, so an older or
/// locked-down kernel gets one clear message instead of a verifier log.
pub fn check_features() -> Result<(), AgentError> {
    use aya::{
        maps::MapType,
        programs::ProgramType,
        sys::{is_helper_supported, is_map_supported, BpfHelper},
    };
    if !std::path::Path::new("/sys/bus/event_source/devices/uprobe").exists() {
        return Err(AgentError::Feature(FeatureError::NoUprobePmu));
    }
    if !is_map_supported(MapType::RingBuf).unwrap_or(false) {
        return Err(AgentError::Feature(FeatureError::NoRingBuffer));
    }
    if !aya::features().bpf_cookie() {
        return Err(AgentError::Feature(FeatureError::NoAttachCookie));
    }
    let helper = |h: BpfHelper| is_helper_supported(ProgramType::KProbe, h).unwrap_or(false);
    for (h, what) in [
        (BpfHelper::BPF_FUNC_loop, "bpf_loop (Linux >= 5.17)"),
        (
            BpfHelper::BPF_FUNC_probe_read_user,
            "bpf_probe_read_user (Linux >= 5.5)",
        ),
        (
            BpfHelper::BPF_FUNC_get_attach_cookie,
            "bpf_get_attach_cookie (Linux >= 5.15)",
        ),
    ] {
        if !helper(h) {
            return Err(AgentError::Feature(FeatureError::NoHelper { helper: what }));
        }
    }
    Ok(())
}

/// Loads the object and both uprobe programs into the kernel (not yet attached). The exec
/// tracepoint is loaded on demand by [`crate::ProbeTable::watch_execs`].
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
            .ok_or(AgentError::MissingProgram { program: name })?
            .try_into()
            .map_err(|e| AgentError::Program {
                program: name,
                source: Box::new(e),
            })?;
        prog.load().map_err(|e| AgentError::Program {
            program: name,
            source: Box::new(e),
        })?;
    }
    Ok(ebpf)
}
