//! Reading another process's memory (`process_vm_readv`).

/// Reads `buf.len()` bytes at `addr` of process `pid` (`process_vm_readv`). Returns the
/// bytes read, fewer when the range runs into unmapped memory. Never writes the target.
pub fn process_vm_read(pid: u32, addr: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` covers exactly `buf`, which is writable and outlives the call; the
    // remote iovec is only an address in the other process, checked by the kernel.
    let r = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}
