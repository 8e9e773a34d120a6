//! libFuzzer entry point of [`tracery_fuzz::condition`]; built and run by `cargo xtask fuzz`.
#![no_main]

#[global_allocator]
static ALLOC: tracery_fuzz::BoundedAlloc = tracery_fuzz::BoundedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| tracery_fuzz::condition::run(data));
