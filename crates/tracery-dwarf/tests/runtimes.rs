//! The runtime offsets the kernel side follows goroutines and tokio tasks with, read from
//! real binaries' DWARF (the Go fixture and this workspace's `demo-orders`).

use tracery_dwarf::{binary::TlsBlock, Executable};

#[test]
fn go_runtime_has_the_status_and_the_creating_goroutine() {
    let exe = Executable::open(tracery_tests::fixture("go")).unwrap();
    let rt = exe
        .go_runtime()
        .expect("runtime.g in the Go fixture's DWARF");
    let (g_m, m_curg) = rt.curg.expect("runtime.g.m and runtime.m.curg");
    // Go 1.19+ layouts: `atomicstatus` and `m` after the stack bounds and `_panic`/`_defer`;
    // `curg` after `g0`, `morebuf`, `divmod`, `procid` and `gsignal` (exact values vary
    // by release, so bounds only).
    assert!((64..512).contains(&rt.g_status), "{rt:?}");
    assert!((32..256).contains(&g_m), "{rt:?}");
    assert!((64..512).contains(&m_curg), "{rt:?}");
}

#[test]
fn tokio_runtime_finds_the_thread_local_task_id_and_the_header_id() {
    let exe = Executable::open(tracery_tests::held::orders_bin()).unwrap();
    let rt = exe
        .tokio_runtime()
        .expect("tokio's types in demo-orders' DWARF (a debug build)");
    // `Header` is `repr(C)`: state, queue_next, then vtable.
    assert_eq!(rt.header_vtable, 16, "{rt:?}");
    // `Vtable` is eight function pointers, then the trailer, scheduler and id offsets.
    assert!(rt.vtable_id_offset >= 64, "{rt:?}");
    let tls = exe.binary().tls_block().expect("PT_TLS");
    let below = tls.offset_below_thread_pointer() as i64;
    assert!(
        (-below..0).contains(&rt.task_id_tp_offset),
        "the task id lies inside the executable's TLS block: {rt:?} {tls:?}"
    );
    assert_eq!(rt.task_id_tp_offset % 8, 0, "an aligned u64: {rt:?}");
}

#[test]
fn a_tls_block_sits_below_the_thread_pointer_at_its_alignment() {
    // Aligned start: the block is its size, rounded up to its alignment, below TP.
    let b = TlsBlock {
        vaddr: 0x3d000,
        memsz: 0x1b8,
        align: 8,
    };
    assert_eq!(b.offset_below_thread_pointer(), 0x1b8);
    // Unaligned start (glibc keeps `vaddr % align` in the placed block).
    let b = TlsBlock {
        vaddr: 0x1004,
        memsz: 0x10,
        align: 16,
    };
    let off = b.offset_below_thread_pointer();
    assert_eq!(off, 28);
    assert_eq!((0u64.wrapping_sub(off)) % 16, 0x1004 % 16);
}

#[test]
fn go_goroutine_creation_has_one_queueing_call() {
    let exe = Executable::open(tracery_tests::fixture("go")).unwrap();
    let calls = exe
        .binary()
        .call_sites("runtime.newproc.func1", "runtime.runqput")
        .expect("both functions in the Go fixture");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let returns = exe.binary().return_addresses("runtime.newproc1").unwrap();
    assert!(!returns.is_empty());
}
