//! Bytes of a binary, shared without copies: the file itself is mapped, and each DWARF or
//! call-frame section is a range of that mapping. Only compressed sections get a buffer of
//! their own.
//!
//! Mapping rather than reading keeps a large binary out of the agent's private memory: the
//! pages are the page cache's, read on first touch and given back under pressure.

use std::{fmt, fs::File, io, ops::Deref, path::Path, sync::Arc};

/// A shared range of a mapped file or of an owned buffer. Cloning shares the bytes.
#[derive(Clone)]
pub struct Bytes {
    owner: Arc<Backing>,
    start: usize,
    len: usize,
}

enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Box<[u8]>),
}

impl Backing {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Owned(b) => b,
        }
    }
}

impl Bytes {
    /// Maps the whole file at `path`, read-only.
    pub(crate) fn map(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        // SAFETY: the mapping is read-only, so nothing here can break Rust's aliasing rules
        // through it. Another process writing the file in place would change the bytes under
        // us (and truncating it would fault at the next read); executables are not updated
        // that way (builds and package managers write a new file and rename it over the
        // old), and addr2line, blazesym and gdb accept the same trade for mapped binaries.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        let len = map.len();
        Ok(Self {
            owner: Arc::new(Backing::Mapped(map)),
            start: 0,
            len,
        })
    }

    /// Drops this process's hold on the mapped pages (the whole mapping, not only this
    /// range): they leave its resident set but stay in the page cache, and the next read
    /// of one maps it again from there. For after a pass over a whole binary. A no-op for
    /// owned bytes.
    pub(crate) fn release_pages(&self) {
        if let Backing::Mapped(m) = &*self.owner {
            // SAFETY: the mapping is a read-only shared mapping of a file, never written
            // through, so MADV_DONTNEED only drops page-table entries: a later (or
            // concurrent) read faults the same file bytes back in from the page cache, and
            // no reference into the mapping sees different contents. A failure changes
            // nothing, so it is ignored.
            let _ = unsafe { m.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }

    /// An empty range (a section the file does not have).
    pub(crate) fn empty() -> Self {
        Self::from(Vec::new())
    }

    /// The range `inner` of these bytes, when `inner` is a subslice of them: how a section
    /// that `object` returned as a borrowed slice becomes a shared range of the mapping.
    pub(crate) fn subslice(&self, inner: &[u8]) -> Option<Self> {
        let outer = self.as_ref().as_ptr() as usize;
        let at = (inner.as_ptr() as usize).checked_sub(outer)?;
        (at.checked_add(inner.len())? <= self.len).then(|| Self {
            owner: self.owner.clone(),
            start: self.start + at,
            len: inner.len(),
        })
    }
}

impl Default for Bytes {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        let len = v.len();
        Self {
            owner: Arc::new(Backing::Owned(v.into_boxed_slice())),
            start: 0,
            len,
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // In bounds by construction: `start + len` never exceeds the backing's length.
        &self.owner.as_slice()[self.start..self.start + self.len]
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match *self.owner {
            Backing::Mapped(_) => "mapped",
            Backing::Owned(_) => "owned",
        };
        write!(f, "Bytes({kind}, {} bytes)", self.len)
    }
}

// SAFETY: the bytes live in the mapping or the boxed buffer behind the `Arc`, not in `Bytes`
// itself: moving a `Bytes` does not move them, and neither mappings nor boxed slices are
// ever moved, resized or written while the `Arc` holds them.
unsafe impl gimli::StableDeref for Bytes {}
// SAFETY: a clone shares the same `Arc` and range, so it dereferences to the same address.
unsafe impl gimli::CloneStableDeref for Bytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subslices_share_the_owner() {
        let b = Bytes::from(vec![1, 2, 3, 4, 5]);
        let inner = b.subslice(&b[1..4]).unwrap();
        assert_eq!(&*inner, &[2, 3, 4]);
        assert_eq!(inner.as_ptr(), b[1..].as_ptr());
        let innermost = inner.subslice(&inner[2..]).unwrap();
        assert_eq!(&*innermost, &[4]);
        assert!(inner.subslice(&b[..2]).is_none(), "outside the range");
        assert!(b.subslice(&[9u8, 9][..]).is_none(), "another buffer");
        assert!(Bytes::empty().is_empty());
    }

    #[test]
    fn maps_files() {
        let path = std::env::temp_dir().join(format!("tracery-bytes-{}", std::process::id()));
        std::fs::write(&path, b"hello").unwrap();
        let b = Bytes::map(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&*b, b"hello");
        assert_eq!(format!("{b:?}"), "Bytes(mapped, 5 bytes)");
    }
}
