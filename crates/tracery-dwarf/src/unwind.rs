//! Unwinding a captured user stack: registers plus a copy of the stack bytes, never a live
//! process.
//!
//! framehop does the work: it reads `.eh_frame_hdr` + `.eh_frame`, or `.debug_frame` when
//! there is no `.eh_frame` (Go binaries), turns CFI rows into cached rules, and falls back
//! to the rbp chain where no CFI covers an address. It tracks only rsp, rbp and the return
//! address, which is what CFI for x86-64 user code uses; a frame whose CFA is computed
//! from another register falls back to frame pointers too.

use framehop::{
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
    ExplicitModuleSectionInfo, Module, Unwinder as _,
};
use tracery_common::regs::{pt, NUM_REGS};

use crate::{
    address::{LoadBias, ProcAddr},
    binary::Binary,
    bytes::Bytes,
};

/// How to find each caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwindMethod {
    /// Call-frame information, with frame pointers where it is missing (the default).
    Cfi,
    /// Frame pointers only: for code whose CFI is missing or known to be wrong.
    FramePointers,
}

/// One binary as mapped in one process, ready to unwind its stacks.
///
/// Building it indexes `.debug_frame` when the binary has no `.eh_frame_hdr` (a few ms for
/// a Go binary); keep one per binary and load bias.
pub struct StackUnwinder {
    unwinder: UnwinderX86_64<Bytes>,
    bias: LoadBias,
    /// Object-address ranges of the executable segments.
    code: Vec<(u64, u64)>,
}

impl std::fmt::Debug for StackUnwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackUnwinder")
            .field("bias", &self.bias)
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

/// Whether every FDE pointer in the `.eh_frame_hdr` search table lies at or after the
/// `.eh_frame` it points into. framehop trusts the table: an entry below `eh_frame_ptr`
/// underflows in gimli's `pointer_to_offset` (a panic in debug builds, a wild offset in
/// release). A corrupt header is dropped; `.eh_frame` alone, or frame pointers, remain.
/// Costs one pass over the table, once per unwinder.
fn eh_frame_hdr_is_sound(
    hdr_addr: crate::ObjAddr,
    hdr: &Bytes,
    eh_frame: Option<&(crate::ObjAddr, Bytes)>,
) -> bool {
    let mut bases = gimli::BaseAddresses::default().set_eh_frame_hdr(hdr_addr.0);
    if let Some((addr, _)) = eh_frame {
        bases = bases.set_eh_frame(addr.0);
    }
    let section = gimli::EhFrameHdr::new(hdr, gimli::LittleEndian);
    let Ok(parsed) = section.parse(&bases, 8) else {
        return false;
    };
    let Ok(eh_frame_ptr) = parsed.eh_frame_ptr().direct() else {
        return false;
    };
    let Some(table) = parsed.table() else {
        return true;
    };
    let mut entries = table.iter(&bases);
    loop {
        match entries.next() {
            Ok(None) => return true,
            Ok(Some((_, fde))) => {
                if !fde.direct().is_ok_and(|p| p >= eh_frame_ptr) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

impl StackUnwinder {
    /// An unwinder for `binary` loaded with `bias`, using its CFI.
    pub fn new(binary: &Binary, bias: LoadBias) -> Self {
        Self::with_method(binary, bias, UnwindMethod::Cfi)
    }

    /// An unwinder for `binary` loaded with `bias`, using `method`.
    pub fn with_method(binary: &Binary, bias: LoadBias, method: UnwindMethod) -> Self {
        let fs = binary.frame_sections();
        let range = |(a, d): &(crate::ObjAddr, Bytes)| a.0..a.0.saturating_add(d.len() as u64);
        let mut info = ExplicitModuleSectionInfo::<Bytes> {
            base_svma: 0,
            ..Default::default()
        };
        if method == UnwindMethod::Cfi {
            info.text_svma = fs.text.map(|(a, size)| a.0..a.0.saturating_add(size));
            info.eh_frame_svma = fs.eh_frame.as_ref().map(range);
            info.eh_frame = fs.eh_frame.as_ref().map(|s| s.1.clone());
            let hdr = fs
                .eh_frame_hdr
                .as_ref()
                .filter(|(addr, hdr)| eh_frame_hdr_is_sound(*addr, hdr, fs.eh_frame.as_ref()));
            info.eh_frame_hdr_svma = hdr.map(range);
            info.eh_frame_hdr = hdr.map(|s| s.1.clone());
            info.debug_frame = fs.debug_frame.clone();
        }
        let segs = binary.segments();
        let lo = segs.iter().map(|s| s.vaddr).min().unwrap_or(0);
        let hi = segs
            .iter()
            .map(|s| s.vaddr.saturating_add(s.memsz))
            .max()
            .unwrap_or(0);
        let module = Module::new(
            binary.path().display().to_string(),
            bias.0.wrapping_add(lo)..bias.0.wrapping_add(hi),
            // Where object address 0 lands: framehop works in offsets from there.
            bias.0,
            info,
        );
        let mut unwinder = UnwinderX86_64::new();
        unwinder.add_module(module);
        let code = segs
            .iter()
            .filter(|s| s.executable)
            .map(|s| (s.vaddr, s.vaddr.saturating_add(s.memsz)))
            .collect();
        Self {
            unwinder,
            bias,
            code,
        }
    }

    /// The pc, then return addresses, innermost first (see [`unwind`]).
    pub fn unwind(
        &self,
        regs: &[u64; NUM_REGS],
        stack_base: u64,
        stack: &[u8],
        max_frames: usize,
    ) -> Vec<ProcAddr> {
        let pc = regs[pt::RIP as usize];
        let mut out = Vec::new();
        if max_frames == 0 {
            return out;
        }
        out.push(ProcAddr(pc));
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let off = usize::try_from(addr.checked_sub(stack_base).ok_or(())?).map_err(|_| ())?;
            let bytes = stack.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
        };
        let mut cache = CacheX86_64::new();
        let uregs = UnwindRegsX86_64::new(pc, regs[pt::RSP as usize], regs[pt::RBP as usize]);
        let mut frames = self
            .unwinder
            .iter_frames(pc, uregs, &mut cache, &mut read_stack);
        // The first item is the pc itself.
        if !matches!(frames.next(), Ok(Some(_))) {
            return out;
        }
        while out.len() < max_frames {
            // Stops when a read leaves the copied stack, at the root, or on bad CFI.
            let Ok(Some(frame)) = frames.next() else {
                break;
            };
            let ret = frame.address();
            if !self.is_code(ProcAddr(ret)) {
                // Into a shared library or garbage: not ours to unwind or name.
                break;
            }
            out.push(ProcAddr(ret));
        }
        out
    }

    fn is_code(&self, a: ProcAddr) -> bool {
        let obj = self.bias.to_obj(a).0;
        self.code.iter().any(|&(lo, hi)| obj >= lo && obj < hi)
    }
}

/// Unwinds a captured stack of `binary` loaded with `bias`: the pc (`regs[RIP]`, the probe's
/// process address) first, then return addresses. Memory comes only from `stack`, a copy of
/// the user stack starting at process address `stack_base`. Stops when a read falls outside
/// it, when a return address leaves the binary's executable segments, or at `max_frames`.
///
/// Builds a [`StackUnwinder`] each call; keep one instead when unwinding many stacks.
pub fn unwind(
    binary: &Binary,
    bias: LoadBias,
    regs: &[u64; NUM_REGS],
    stack_base: u64,
    stack: &[u8],
    max_frames: usize,
) -> Vec<ProcAddr> {
    StackUnwinder::new(binary, bias).unwind(regs, stack_base, stack, max_frames)
}

#[cfg(test)]
mod tests {
    use object::{Object, ObjectSection};

    use super::*;
    use crate::ObjAddr;

    /// Found by the fuzzer: an `.eh_frame_hdr` whose table points below `.eh_frame` made
    /// framehop's gimli subtract past zero (a panic with overflow checks).
    #[test]
    fn eh_frame_hdr_pointing_below_eh_frame_does_not_panic() {
        let dir = std::env::temp_dir().join(format!("tracery-unwind-hdr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("orders");
        let status = std::process::Command::new("gcc")
            .args(["-g", "-O0", "-o"])
            .arg(&path)
            .arg(tracery_tests::fixture_source("c"))
            .status()
            .unwrap();
        assert!(status.success());
        let mut bytes = std::fs::read(&path).unwrap();
        let (start, count, hdr_addr) = {
            let file = object::File::parse(&*bytes).unwrap();
            let hdr = file.section_by_name(".eh_frame_hdr").unwrap();
            let data = hdr.data().unwrap();
            // version 1, eh_frame_ptr pcrel|sdata4, fde_count udata4, table datarel|sdata4.
            assert_eq!(&data[..4], &[1, 0x1b, 0x03, 0x3b]);
            let count = u32::from_le_bytes(data[8..12].try_into().unwrap()) as usize;
            (hdr.file_range().unwrap().0 as usize, count, hdr.address())
        };
        // Every FDE pointer at address 0, below `.eh_frame` (datarel: from the header).
        let zero = i32::try_from(hdr_addr).unwrap().wrapping_neg();
        for i in 0..count {
            let at = start + 12 + 8 * i + 4;
            bytes[at..at + 4].copy_from_slice(&zero.to_le_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();

        let binary = Binary::open(&path).unwrap();
        let fs = binary.frame_sections();
        let (addr, hdr) = fs.eh_frame_hdr.as_ref().unwrap();
        assert!(!eh_frame_hdr_is_sound(*addr, hdr, fs.eh_frame.as_ref()));
        let pc: ObjAddr = binary.symbol_address("process_order").unwrap();
        let mut regs = [0u64; NUM_REGS];
        regs[pt::RIP as usize] = pc.0;
        regs[pt::RSP as usize] = 0x7ffd_0000_0000;
        let stack = [0u8; 256];
        let _ = unwind(&binary, LoadBias(0), &regs, 0x7ffd_0000_0000, &stack, 8);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_sound_eh_frame_hdr_is_kept() {
        let binary = Binary::open(tracery_tests::fixture("c-O0")).unwrap();
        let fs = binary.frame_sections();
        let (addr, hdr) = fs.eh_frame_hdr.as_ref().unwrap();
        assert!(eh_frame_hdr_is_sound(*addr, hdr, fs.eh_frame.as_ref()));
    }
}
