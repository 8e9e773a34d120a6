//! CPython breakpoints: the site the kernel watches, the interpreter offsets it follows and
//! the record it emits.
//!
//! A Python breakpoint is a hardware data watchpoint on one bytecode word of one live code
//! object (`co_code_adaptive[i]`): the interpreter reads that word exactly when it is about
//! to run the instruction, so only that instruction of that code object traps, and every
//! other line and function of the process runs at full speed. The `perf_event` program
//! then reads the frame (locals, stack) from the interpreter's memory with bounded copies;
//! user space decodes the objects.

/// Most frames of the Python stack copied per hit (one bounded loop).
pub const PY_MAX_FRAMES: usize = 16;
/// Most local slots (`localsplus`) captured per hit.
pub const PY_MAX_LOCALS: usize = 16;
/// Most objects copied per hit, locals and their elements together (breadth first). With
/// [`PY_OBJ_BYTES`] it sizes the record, which must stay under the 32 KiB per-CPU value cap.
pub const PY_MAX_OBJECTS: usize = 48;
/// Bytes copied from the start of each object: a compact str of about 120 ASCII characters,
/// an int of about 1000 bits, a tuple of 16 elements.
pub const PY_OBJ_BYTES: usize = 176;
/// Bytes of a type's name (`tp_name`) copied.
pub const PY_NAME_BYTES: usize = 32;
/// Most elements (list, tuple, dict items, attributes) followed per container.
pub const PY_MAX_CHILDREN: usize = 8;
/// Most sites (watched instructions in processes) one agent arms at once.
pub const PY_MAX_SITES: u32 = 256;
/// Ring buffer for Python hits: about a hundred records.
pub const PY_RING_BYTES: u32 = 1 << 20;

/// `parent` of an object that is a local (its `slot` is the local's index).
pub const PY_NO_PARENT: u16 = u16::MAX;
/// `slot` of an instance's `__dict__` (a dict object), under the instance.
pub const PY_SLOT_DICT: u16 = u16::MAX;

/// Map and program names in the eBPF object.
pub mod names {
    /// Hash map: [`super::PySiteKey`] -> [`super::PySite`].
    pub const PY_SITES: &str = "PY_SITES";
    /// Ring buffer of [`super::PyHit`] records.
    pub const PY_HITS: &str = "PY_HITS";
    /// The `perf_event` program run by a watchpoint on a bytecode word.
    pub const PY_WATCH: &str = "tracery_py_watch";
}

/// Offsets into one CPython version's structures, in bytes. User space fills them from a
/// per-version table checked against the interpreter at attach; the kernel only follows them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyOffsets {
    /// Process address of `_PyRuntime.gilstate.tstate_current` (the thread holding the GIL).
    pub tstate_current: u64,
    pub tstate_cframe: u32,
    pub cframe_current_frame: u32,
    pub frame_code: u32,
    pub frame_previous: u32,
    pub frame_prev_instr: u32,
    pub frame_localsplus: u32,
    pub code_nlocalsplus: u32,
    pub code_adaptive: u32,
    pub object_type: u32,
    pub var_size: u32,
    pub type_name: u32,
    pub type_flags: u32,
    pub type_dictoffset: u32,
    pub heaptype_cached_keys: u32,
    pub list_items: u32,
    pub tuple_items: u32,
    pub dict_keys: u32,
    pub dict_values: u32,
    pub keys_log2_index_bytes: u32,
    pub keys_kind: u32,
    pub keys_nentries: u32,
    pub keys_indices: u32,
    /// Bytes before an object where its managed dict pointer is (3.11: 3 words).
    pub managed_dict_before: u32,
    /// Bytes before an object where its managed values pointer is (3.11: 4 words).
    pub managed_values_before: u32,
}

/// Key of a watched site: the process and the bytecode word's address (the watchpoint's
/// `bp_addr`, which the kernel hands the program as the sample address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PySiteKey {
    pub pid: u32,
    pub _pad: u32,
    pub addr: u64,
}

/// One watched instruction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PySite {
    pub breakpoint_id: u64,
    /// The code object whose instruction is watched: a hit in another frame is dropped.
    pub code: u64,
    /// Records to emit before going quiet; 0 for no limit.
    pub hit_limit: u64,
    /// Hits claimed so far (the kernel adds atomically).
    pub claimed: u64,
    /// Traps that were not a fetch of the instruction by its own frame (a write, another
    /// code object's frame), dropped in the kernel.
    pub spurious: u64,
    /// `[start, end)` of the interpreter loop (`_PyEval_EvalFrameDefault`): only a trap
    /// there is a fetch; one elsewhere is a write (quickening, specialization).
    pub eval_start: u64,
    pub eval_end: u64,
    /// Levels of elements followed below a local (0: the locals only).
    pub max_depth: u32,
    /// Elements followed per container (at most [`PY_MAX_CHILDREN`]).
    pub max_children: u32,
    pub offsets: PyOffsets,
    /// Bit set of `ProbeConfig::FLAG_*` (only `FLAG_SCOPED` is used here).
    pub flags: u32,
    /// `--header` filters a hit's request must have carried, as for native probes.
    pub header_bits: u32,
    /// With `FLAG_SCOPED`: the trace a hit's request must belong to.
    pub scope_trace: [u8; 16],
    /// Rate limit as for native probes (`ProbeConfig::set_rate`); 0 for none.
    pub rate_interval_ns: u64,
    pub rate_burst_ns: u64,
    /// Theoretical arrival time of the next admitted hit (kernel-owned).
    pub rate_tat: u64,
    /// Fetches dropped because their request was not in the trace scope.
    pub out_of_scope: u64,
    /// Fetches dropped by the rate limit.
    pub rate_limited: u64,
}

/// One copied object.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PyObjCopy {
    pub addr: u64,
    pub type_addr: u64,
    pub type_flags: u64,
    /// Index of the container it belongs to, or [`PY_NO_PARENT`] for a local.
    pub parent: u16,
    /// Local index, element index, `2*i` (key) / `2*i+1` (value) of a dict or attribute
    /// item, or [`PY_SLOT_DICT`].
    pub slot: u16,
    /// 0: copied; 1: unreadable; 2: only the first 32 bytes were readable.
    pub status: u8,
    pub depth: u8,
    /// Items the container holds, copied or not (set for list, tuple, dict, instance dict).
    pub len_hint: u16,
    pub data: [u8; PY_OBJ_BYTES],
    pub type_name: [u8; PY_NAME_BYTES],
}

/// One frame of the Python stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PyFrameRec {
    pub code: u64,
    /// The last instruction the frame started (`prev_instr`), for its line.
    pub prev_instr: u64,
}

/// A hit, as the kernel emits it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PyHit {
    pub breakpoint_id: u64,
    pub site_addr: u64,
    pub time_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// The request the thread serves (all zero when unknown or untraced).
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub n_frames: u32,
    pub n_objects: u32,
    /// Local slots of the frame (`co_nlocalsplus`), captured or not.
    pub n_locals: u32,
    /// Objects that would have been copied beyond [`PY_MAX_OBJECTS`].
    pub objects_dropped: u32,
    pub frames: [PyFrameRec; PY_MAX_FRAMES],
    pub objects: [PyObjCopy; PY_MAX_OBJECTS],
}

/// `tp_flags` bits of CPython's builtin types (stable since 3.0, `Include/object.h`).
pub mod type_flags {
    pub const MANAGED_DICT: u64 = 1 << 4;
    pub const HEAPTYPE: u64 = 1 << 9;
    pub const LONG: u64 = 1 << 24;
    pub const LIST: u64 = 1 << 25;
    pub const TUPLE: u64 = 1 << 26;
    pub const BYTES: u64 = 1 << 27;
    pub const UNICODE: u64 = 1 << 28;
    pub const DICT: u64 = 1 << 29;
    pub const TYPE: u64 = 1 << 31;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `repr(C)` integers with explicit padding fields; any bytes are valid.
    unsafe impl aya::Pod for super::PySiteKey {}
    // SAFETY: as above; `PyOffsets` is all integers.
    unsafe impl aya::Pod for super::PySite {}
}
