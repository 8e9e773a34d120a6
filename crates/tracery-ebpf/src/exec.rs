//! Reports every exec so the agent can arm breakpoints on processes that start later,
//! without polling /proc.

use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel, bpf_probe_read_kernel_str},
    macros::map,
    maps::RingBuf,
    programs::TracePointContext,
    EbpfContext,
};
use tracery_common::exec::{ExecEvent, EXEC_PATH_MAX, EXEC_RING_BYTES};

#[map(name = "EXECS")]
static EXECS: RingBuf = RingBuf::with_byte_size(EXEC_RING_BYTES, 0);

/// Offsets in the tracepoint record (`events/sched/sched_process_exec/format`; the layout
/// has been stable since the tracepoint was added in Linux 3.4).
const FILENAME_LOC: usize = 8;
const PID: usize = 12;

pub fn try_exec(ctx: &TracePointContext) -> Result<u32, u32> {
    let base = ctx.as_ptr() as *const u8;
    let mut loc = 0u32;
    let mut pid = 0u32;
    // SAFETY: both reads stay inside the tracepoint record, whose layout is fixed above.
    unsafe {
        if bpf_probe_read_kernel(
            (&mut loc as *mut u32).cast(),
            4,
            base.add(FILENAME_LOC).cast(),
        ) != 0
            || bpf_probe_read_kernel((&mut pid as *mut u32).cast(), 4, base.add(PID).cast()) != 0
        {
            return Err(1);
        }
    }
    let Some(mut entry) = EXECS.reserve::<ExecEvent>(0) else {
        // A full ring only delays re-arming to the agent's next scan; nothing to count here.
        return Err(1);
    };
    let ev = entry.as_mut_ptr();
    // `__data_loc`: the low 16 bits are the offset of the string in the record.
    let off = (loc & 0xffff) as usize;
    // SAFETY: `ev` is the reserved entry; the string read is bounded by EXEC_PATH_MAX and
    // stops at the NUL the kernel wrote.
    let n = unsafe {
        (*ev).pid = pid;
        bpf_probe_read_kernel_str(
            (*ev).path.as_mut_ptr().cast(),
            EXEC_PATH_MAX as u32,
            base.add(off).cast(),
        )
    };
    // SAFETY: as above.
    unsafe { (*ev).path_len = if n > 0 { (n - 1) as u32 } else { 0 } };
    entry.submit(0);
    Ok(0)
}
