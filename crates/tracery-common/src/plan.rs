//! Fetch plans: the bounded list of reads the kernel performs when a breakpoint hits.
//!
//! User space compiles DWARF location expressions into [`FetchOp`]s. The kernel runs them in
//! order into a data area; an op may take its base address from a pointer an earlier op
//! captured, which is how dereference chains and string payloads are followed without any
//! loop the verifier cannot bound.

use crate::{MAX_CONDS, MAX_OPS};

/// Most nodes one [`OpKind::Chain`] or [`OpKind::RbTree`] op visits. Each visit is one or a
/// few `bpf_probe_read_user` calls inside a `bpf_loop`, so this bounds the hit's cost; the
/// op's `len` usually stops it sooner.
pub const MAX_CHAIN: u32 = 256;

/// Most parent or child links one red-black-tree step follows. libstdc++ trees are balanced
/// (height at most 2 log2(n + 1)), so 64 covers any tree that fits in memory.
pub const MAX_TREE_DEPTH: u32 = 64;

/// Where a fetch op's address (or value) comes from.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseKind {
    /// `regs[reg] + offset`.
    Reg = 0,
    /// The `u64` an earlier op stored at `data[base_slot]`, plus `offset`. Skipped when
    /// op `base_op` did not succeed or the pointer is null.
    PtrAt = 1,
    /// `offset` itself: an absolute process address (globals, with the load bias applied).
    Absolute = 2,
}

/// What a fetch op does with its address.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Store the base value itself (`regs[reg] + offset`) as 8 little-endian bytes.
    Value = 0,
    /// Copy `len` bytes (or a dynamic length, see [`FetchOp::FLAG_DYNAMIC_LEN`]) from the address.
    Copy = 1,
    /// Copy a NUL-terminated string of at most `len` bytes from the address.
    CStr = 2,
    /// Walk linked nodes from the address: copy `len_scale` bytes of each node to
    /// `out + k * len_scale`, then go to the pointer at node offset `len_slot`; stop at a
    /// null pointer, a fault, [`MAX_CHAIN`] nodes, or when the next node would pass
    /// `len` bytes. Never combined with a dynamic length (`len_slot` is the link offset).
    /// Serves singly linked lists (C++ `std::unordered_map` nodes, Go overflow buckets).
    Chain = 3,
    /// In-order walk of a libstdc++ red-black tree (`std::map`, `std::set`, multi forms):
    /// the address is the tree's header node; each node's `len_scale` bytes go to
    /// `out + k * len_scale`, up to `len` bytes and [`MAX_CHAIN`] nodes. Each step is
    /// `_Rb_tree_increment`, with its climbs bounded by [`MAX_TREE_DEPTH`].
    RbTree = 4,
    /// Pre-order walk of a Rust `BTreeMap`'s nodes (layout: [`btree_node`]): the address
    /// is the root node, the tree's height is the `u64` at `data[len_slot]` (written by op
    /// `len_op`), and `offset` holds the node's field offsets ([`btree_node::pack`]), not
    /// an address offset. Each node's first `len_scale` bytes (its `LeafNode` part) go to
    /// `out + k * len_scale`, up to `len` bytes and [`MAX_CHAIN`] nodes; a node's children
    /// follow it. Steps up use `parent`/`parent_idx`, so the walk needs no stack; a height
    /// over [`MAX_TREE_DEPTH`] is refused.
    BTree = 5,
}

/// Node layout of Rust's `alloc::collections::btree::node`: a `LeafNode<K, V>` holds
/// `parent`, `parent_idx`, `len`, `keys` and `vals` (order chosen by rustc, so offsets come
/// from DWARF); `InternalNode` is `#[repr(C)] { data: LeafNode, edges: [_; CAPACITY + 1] }`.
pub mod btree_node {
    /// Entries per node (`CAPACITY`, `2 * B - 1` with `B = 6`).
    pub const CAPACITY: u64 = 11;

    /// Packs the offsets of `parent`, `parent_idx`, `len` and an internal node's `edges`
    /// into a [`super::OpKind::BTree`] op's `offset`.
    pub const fn pack(parent: u16, parent_idx: u16, len: u16, edges: u16) -> i64 {
        (parent as u64 | (parent_idx as u64) << 16 | (len as u64) << 32 | (edges as u64) << 48)
            as i64
    }

    /// The offsets [`pack`] packed: `(parent, parent_idx, len, edges)`.
    pub const fn unpack(offset: i64) -> (u64, u64, u64, u64) {
        let o = offset as u64;
        (o & 0xffff, (o >> 16) & 0xffff, (o >> 32) & 0xffff, o >> 48)
    }
}

/// Node layout of libstdc++'s `_Rb_tree_node_base`: `{ color: u32, parent, left, right }`.
pub mod rb_node {
    /// Offset of `_M_parent`.
    pub const PARENT: u64 = 8;
    /// Offset of `_M_left`.
    pub const LEFT: u64 = 16;
    /// Offset of `_M_right`.
    pub const RIGHT: u64 = 24;
    /// Offset of the stored value in `_Rb_tree_node<T>`.
    pub const VALUE: u64 = 32;
}

/// One bounded read. 24 bytes; [`MAX_OPS`] of them make a plan.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchOp {
    /// Added to the base register or pointer.
    pub offset: i64,
    /// A [`BaseKind`] as `u8`.
    pub base: u8,
    /// An [`OpKind`] as `u8`.
    pub kind: u8,
    /// `pt_regs` index when `base` is [`BaseKind::Reg`].
    pub reg: u8,
    /// Bit set of `FLAG_*`.
    pub flags: u8,
    /// Index of the op whose output holds the base pointer ([`BaseKind::PtrAt`]).
    pub base_op: u8,
    /// Index of the op whose output holds the element count (dynamic length).
    pub len_op: u8,
    /// Data offset of the base pointer ([`BaseKind::PtrAt`]).
    pub base_slot: u16,
    /// Data offset this op writes to.
    pub out: u16,
    /// Most bytes this op writes (a cap, at most [`crate::MAX_COPY`]).
    pub len: u16,
    /// Data offset of a `u64` element count (dynamic length).
    pub len_slot: u16,
    /// Bytes per element for a dynamic length.
    pub len_scale: u16,
}

impl FetchOp {
    /// The length is `min(len, u64 at data[len_slot] * len_scale)`.
    pub const FLAG_DYNAMIC_LEN: u8 = 1;
    /// With a dynamic length: the copy ends at the address instead of starting there (it
    /// reads `[addr - len, addr)`). hashbrown stores its buckets below the control bytes.
    pub const FLAG_BACKWARD: u8 = 2;
    /// With a dynamic length: the count is `1 << (byte at data[len_slot])`, not the word
    /// (Go's map header holds `B`, the log2 of its bucket count).
    pub const FLAG_POW2_COUNT: u8 = 4;
    /// With a dynamic length: the count is the stored word plus one (hashbrown's
    /// `bucket_mask`).
    pub const FLAG_COUNT_PLUS_ONE: u8 = 8;

    /// An op that does nothing; fills unused plan entries.
    pub const EMPTY: Self = Self {
        offset: 0,
        base: BaseKind::Absolute as u8,
        kind: OpKind::Value as u8,
        reg: 0,
        flags: 0,
        base_op: 0,
        len_op: 0,
        base_slot: 0,
        out: 0,
        len: 0,
        len_slot: 0,
        len_scale: 0,
    };
}

/// Comparison used by an in-kernel [`Condition`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Ne = 1,
    Lt = 2,
    Le = 3,
    Gt = 4,
    Ge = 5,
}

/// A scalar comparison the kernel checks before emitting a record: `data[slot] OP value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    /// Constant to compare against (sign-extended when `signed`).
    pub value: i64,
    /// Data offset of the scalar.
    pub slot: u16,
    /// Width of the scalar in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// Non-zero when the scalar is signed.
    pub signed: u8,
    /// A [`CmpOp`] as `u8`.
    pub op: u8,
    /// Op that produced the scalar; the condition is false when that op failed.
    pub op_index: u8,
    pub _pad: [u8; 2],
}

impl Condition {
    pub const EMPTY: Self = Self {
        value: 0,
        slot: 0,
        size: 8,
        signed: 0,
        op: CmpOp::Eq as u8,
        op_index: 0,
        _pad: [0; 2],
    };
}

/// Everything the kernel needs to serve one attached probe. Indexed by attach cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    /// Breakpoint this probe belongs to, copied into every record.
    pub breakpoint_id: u64,
    /// Records to emit before the probe goes quiet; 0 means no limit.
    pub hit_limit: u64,
    /// Records per second; 0 means no limit. Set with [`ProbeConfig::set_rate`], which also
    /// fills the interval and burst the kernel uses.
    pub rate_per_sec: u32,
    /// Ops to run in order, at most [`MAX_OPS`].
    pub n_ops: u8,
    /// Ops to run before the conditions are checked (they feed the conditions).
    pub cond_ops: u8,
    /// Conditions in use, at most [`MAX_CONDS`].
    pub n_conds: u8,
    /// Bit set of `FLAG_*`.
    pub flags: u8,
    /// Bytes of data area the plan writes (the stack copy follows it).
    pub data_size: u16,
    /// Most bytes of stack to copy; 0 for none.
    pub stack_bytes: u16,
    /// `--header` filters a hit's request must have carried (bits of `HEADER_FILTERS`).
    pub header_bits: u32,
    /// Where the main thread's frames end, or 0 when unknown. The stack copy stops there
    /// instead of copying argv and envp, or faulting past the mapping.
    pub stack_top: u64,
    /// Nanoseconds between admitted hits under the rate limit; 0 for no limit.
    pub rate_interval_ns: u64,
    /// How far ahead of schedule hits may run: the burst the rate limit tolerates.
    pub rate_burst_ns: u64,
    /// With [`Self::FLAG_FREEZE`]: how long the hit's trace stays frozen (its messages held)
    /// unless resumed earlier.
    pub freeze_ns: u64,
    /// With [`Self::FLAG_SHARED`]: the site's link-time address. The hit's instruction
    /// pointer minus it is the process's load bias, added to absolute addresses.
    pub link_address: u64,
    /// With [`Self::FLAG_IN_CGROUP`]: the cgroup v2 id (its directory's inode) a hitting
    /// task must be in, at [`Self::cgroup_level`] or below.
    pub cgroup_id: u64,
    /// Depth of [`Self::cgroup_id`] below the cgroup v2 root (the root is level 0).
    pub cgroup_level: u32,
    pub _pad: u32,
    /// With [`Self::FLAG_IN_CGROUP_SET`]: the set in `CGROUP_SETS` whose cgroups (or
    /// their descendants) a hitting task must be in.
    pub cgroup_set: u64,
    /// With [`Self::FLAG_SCOPED`]: the trace a hit's request must belong to.
    pub scope_trace: [u8; 16],
    pub conds: [Condition; MAX_CONDS],
    pub ops: [FetchOp; MAX_OPS],
}

impl ProbeConfig {
    /// Burst a rate limit tolerates, as time: hits may run this far ahead of schedule.
    pub const RATE_BURST_NS: u64 = 100_000_000;

    /// Limits records to `per_sec` per second (0: no limit), spaced evenly with a burst of
    /// at most [`Self::RATE_BURST_NS`] worth (a generic cell rate algorithm). A fixed
    /// one-second window would admit each second's quota in one burst and overflow the
    /// ring buffer although the average rate is sustainable.
    pub fn set_rate(&mut self, per_sec: u32) {
        self.rate_per_sec = per_sec;
        if per_sec == 0 {
            self.rate_interval_ns = 0;
            self.rate_burst_ns = 0;
        } else {
            self.rate_interval_ns = (1_000_000_000 / u64::from(per_sec)).max(1);
            self.rate_burst_ns = Self::RATE_BURST_NS;
        }
    }

    /// Emit nothing: the probe only counts hits (benchmark baseline, disabled probes).
    pub const FLAG_COUNT_ONLY: u8 = 1;
    /// The target is Go: look its trace up by goroutine (`g` in R14), not by thread.
    pub const FLAG_GO: u8 = 2;
    /// Only hits of requests of trace `scope_trace` count.
    pub const FLAG_SCOPED: u8 = 4;
    /// Stop the hitting thread (SIGCONT trap) when the agent has seized it.
    pub const FLAG_FREEZE: u8 = 8;
    /// One probe for every process of the executable (attached to its inode): absolute
    /// addresses are relocated per hit, from the instruction pointer and `link_address`.
    pub const FLAG_SHARED: u8 = 16;
    /// Only tasks in cgroup `cgroup_id` or below it count (a node's processes).
    pub const FLAG_IN_CGROUP: u8 = 32;
    /// Only tasks in a cgroup of set `cgroup_set`, or below one, count (chosen pods).
    pub const FLAG_IN_CGROUP_SET: u8 = 64;

    /// A config with no ops and no limits.
    pub const EMPTY: Self = Self {
        breakpoint_id: 0,
        hit_limit: 0,
        rate_per_sec: 0,
        n_ops: 0,
        cond_ops: 0,
        n_conds: 0,
        flags: 0,
        data_size: 0,
        stack_bytes: 0,
        header_bits: 0,
        stack_top: 0,
        rate_interval_ns: 0,
        rate_burst_ns: 0,
        freeze_ns: 0,
        link_address: 0,
        cgroup_id: 0,
        cgroup_level: 0,
        _pad: 0,
        cgroup_set: 0,
        scope_trace: [0; 16],
        conds: [Condition::EMPTY; MAX_CONDS],
        ops: [FetchOp::EMPTY; MAX_OPS],
    };
}

/// Counters the kernel keeps per probe slot. User space reads them for status and drops.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeState {
    /// Times the uprobe fired.
    pub fired: u64,
    /// Hits that passed conditions and rate limit and claimed a hit-limit slot.
    pub claimed: u64,
    /// Records written to the ring buffer.
    pub emitted: u64,
    /// Records lost because the ring buffer was full.
    pub dropped: u64,
    /// Hits skipped by the rate limit.
    pub rate_limited: u64,
    /// Hits skipped because a condition was false.
    pub cond_false: u64,
    /// Theoretical arrival time of the next admitted hit (ktime ns), for the rate limit.
    pub rate_tat: u64,
    /// Hits skipped because their request was not in the breakpoint's trace scope.
    pub out_of_scope: u64,
}

/// Key of `CGROUP_SETS`: one cgroup (by id, its directory's inode) in one set. A shared
/// probe site with [`ProbeConfig::FLAG_IN_CGROUP_SET`] admits a task in, or below, any
/// cgroup of its set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CgroupSetKey {
    pub set: u64,
    pub cgroup: u64,
}

/// Most cgroups in all sets together (pods chosen by breakpoints, on one node).
pub const MAX_SET_CGROUPS: u32 = 4096;

/// Deepest cgroup level the set filter looks at (kubelet's pod groups sit at 2 to 4, a
/// few more under a nested node such as kind).
pub const MAX_CGROUP_DEPTH: i32 = 16;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), two integers, no padding.
    unsafe impl aya::Pod for super::CgroupSetKey {}
    // SAFETY: all are repr(C), Copy, contain only integers and have no padding the kernel
    // could leave uninitialised (explicit `_pad` fields), so any bit pattern is valid.
    unsafe impl aya::Pod for super::ProbeConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProbeState {}
    // SAFETY: as above; records are only read from kernel-written bytes.
    unsafe impl aya::Pod for crate::record::HitHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::exec::ExecEvent {}
}

// The kernel's per-CPU value cap is 32 KiB; keep configs small enough to copy cheaply.
const _: () = assert!(core::mem::size_of::<FetchOp>() == 24);
const _: () = assert!(core::mem::size_of::<Condition>() == 16);
const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 112 + 16 * MAX_CONDS + 24 * MAX_OPS);
