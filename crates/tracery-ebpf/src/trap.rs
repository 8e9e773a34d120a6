//! Freeze traps: which processes the agent has seized (only their threads may be sent
//! `tracery_common::FREEZE_SIGNAL`), and the goroutines waiting to be trapped at their
//! next system call. Set by the capture probe, acted on by the syscall hooks (`trace`).

use aya_ebpf::{macros::map, maps::HashMap};
use tracery_common::trace::GoKey;

/// Processes whose threads the agent has ptrace-seized, all of them, including threads
/// created later (it follows clones): only these are sent the freeze trap. A thread that
/// escaped seizing would take the signal's default action, which is to carry on.
#[map(name = "SEIZED")]
static SEIZED: HashMap<u32, u32> = HashMap::with_max_entries(4096, 0);

#[map(name = "GO_SUSPEND")]
pub static GO_SUSPEND: HashMap<GoKey, u64> = HashMap::with_max_entries(1024, 0);

/// True when the agent has seized the threads of process `tgid`.
#[inline(always)]
pub fn seized(tgid: u32) -> bool {
    SEIZED.get_ptr(tgid).is_some()
}
