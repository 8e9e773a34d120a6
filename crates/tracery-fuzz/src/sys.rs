//! The one `unsafe` of the fuzz targets: a global allocator that refuses huge requests.

use std::alloc::{GlobalAlloc, Layout, System};

/// Largest single allocation a target may make. Every input is a few KiB (the ELF seeds a
/// few tens of KiB), so a request this large means a size was read from the input and
/// trusted: the "unbounded allocation" bug the fuzzers look for. libFuzzer's own
/// `-malloc_limit_mb` needs a sanitizer's malloc hooks, which stable Rust does not have.
pub const MAX_ALLOCATION: usize = 256 << 20;

/// [`System`], but an allocation over [`MAX_ALLOCATION`] aborts the process (a crash that
/// libFuzzer saves), instead of succeeding or failing softly.
pub struct BoundedAlloc;

fn check(size: usize) {
    if size > MAX_ALLOCATION {
        // No allocation here: we are inside the allocator.
        let msg = b"tracery-fuzz: allocation over MAX_ALLOCATION (a size trusted from input)\n";
        // SAFETY: writes a static buffer to stderr; abort never returns.
        unsafe {
            libc_write(2, msg.as_ptr(), msg.len());
        }
        std::process::abort();
    }
}

extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, count: usize) -> isize;
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, after a
// size check that aborts and so never returns a wrong pointer.
unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract for `alloc` is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout` (every allocation goes through it).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: as `dealloc`; `new_size` is the caller's, checked above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
