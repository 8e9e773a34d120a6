//! Loading an ELF executable and its DWARF.
//!
//! Opening a [`Binary`] maps the file and reads its headers and symbol table; its sections
//! are ranges of the mapping, except compressed ones (Go's), which are decompressed here.
//! What is derived from the DWARF (indexes, symbolizer) lives in [`crate::Executable`].

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

use crate::{
    address::{FileOffset, LoadBias, ObjAddr},
    bytes::Bytes,
    error::BinaryError,
};

/// The gimli reader used throughout: shared section bytes, usually a range of the mapping.
pub type Reader = gimli::EndianReader<gimli::RunTimeEndian, Bytes>;

/// One PT_LOAD segment.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub executable: bool,
}

/// The PT_TLS segment: the template of each thread's copy of the executable's
/// thread-locals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsBlock {
    pub vaddr: u64,
    pub memsz: u64,
    pub align: u64,
}

impl TlsBlock {
    /// How far below the thread pointer the executable's block starts (x86-64, TLS variant
    /// II: the executable is the first module, placed as glibc's `_dl_determine_tlsoffset`
    /// and static linking do).
    /// Wraps instead of failing on a block no valid ELF file has; [`Binary::tls_block`]
    /// returns only blocks for which it is exact.
    pub fn offset_below_thread_pointer(&self) -> u64 {
        self.checked_offset().unwrap_or_else(|| {
            let align = self.align.max(1);
            let firstbyte = self.vaddr.wrapping_neg() & (align - 1);
            self.memsz.wrapping_sub(firstbyte).wrapping_add(firstbyte)
        })
    }

    fn checked_offset(&self) -> Option<u64> {
        if !self.align.is_power_of_two() {
            return None;
        }
        let firstbyte = self.vaddr.wrapping_neg() & (self.align - 1);
        self.memsz
            .checked_sub(firstbyte)?
            .checked_next_multiple_of(self.align)?
            .checked_add(firstbyte)
    }
}

/// An ELF symbol, for names when DWARF has none and for `symbols --functions`.
#[derive(Clone, Debug)]
pub struct Symbol {
    pub address: ObjAddr,
    pub size: u64,
    /// The raw (mangled) name.
    pub name: String,
}

/// Raw call-frame sections, for the unwinder.
#[derive(Clone, Debug, Default)]
pub struct FrameSections {
    pub eh_frame: Option<(ObjAddr, Bytes)>,
    pub eh_frame_hdr: Option<(ObjAddr, Bytes)>,
    pub debug_frame: Option<Bytes>,
    pub text: Option<(ObjAddr, u64)>,
}

/// An executable with its debug information loaded.
pub struct Binary {
    path: PathBuf,
    debug_path: PathBuf,
    data: Bytes,
    /// The separate debug file's mapping, when the DWARF came from one.
    debug_data: Option<Bytes>,
    segments: Vec<Segment>,
    is_pie: bool,
    build_id: Option<Vec<u8>>,
    /// Shared with the symbolizer.
    symbols: Arc<[Symbol]>,
    frames: FrameSections,
    dwarf: gimli::Dwarf<Reader>,
}

impl std::fmt::Debug for Binary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binary")
            .field("path", &self.path)
            .field("debug_path", &self.debug_path)
            .field("is_pie", &self.is_pie)
            .finish_non_exhaustive()
    }
}

impl Binary {
    /// Loads `path` and finds its DWARF: in the file itself, through `.gnu_debuglink`, or
    /// through the build id under `/usr/lib/debug`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BinaryError> {
        Self::open_with_debug_file(path, None)
    }

    /// Like [`Binary::open`], with an explicit separate debug file.
    pub fn open_with_debug_file(
        path: impl AsRef<Path>,
        debug_file: Option<&Path>,
    ) -> Result<Self, BinaryError> {
        let path = path.as_ref().to_path_buf();
        let data = read(&path)?;
        let file = object::File::parse(&*data).map_err(|source| BinaryError::Parse {
            path: path.clone(),
            source,
        })?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(BinaryError::Architecture {
                path: path.clone(),
                arch: format!("{:?}", file.architecture()),
            });
        }
        // A segment whose end wraps past 2^64 is corrupt; dropping it here keeps every
        // address translation below free of overflow.
        let segments = file
            .segments()
            .filter(|s| {
                let (offset, filesz) = s.file_range();
                s.address().checked_add(s.size().max(filesz)).is_some()
                    && offset.checked_add(filesz).is_some()
            })
            .map(|s| {
                let (offset, filesz) = s.file_range();
                Segment {
                    vaddr: s.address(),
                    memsz: s.size(),
                    offset,
                    filesz,
                    executable: segment_is_executable(&s),
                }
            })
            .collect();
        let is_pie = file.kind() == object::ObjectKind::Dynamic;
        let build_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
        let symbols = collect_symbols(&file).into();
        let frames = frame_sections(&file, &data);

        let mut debug_data = None;
        let (debug_path, dwarf) = if let Some(d) = debug_file {
            let dd = read(d)?;
            let df = object::File::parse(&*dd).map_err(|source| BinaryError::Parse {
                path: d.to_path_buf(),
                source,
            })?;
            if !has_dwarf(&df) {
                return Err(BinaryError::NoDwarf {
                    path: d.to_path_buf(),
                });
            }
            let dwarf = load_dwarf(&df, &dd, d)?;
            debug_data = Some(dd.clone());
            (d.to_path_buf(), dwarf)
        } else if has_dwarf(&file) {
            (path.clone(), load_dwarf(&file, &data, &path)?)
        } else if let Some(d) = find_debug_file(&path, &file) {
            let dd = read(&d)?;
            let df = object::File::parse(&*dd).map_err(|source| BinaryError::Parse {
                path: d.clone(),
                source,
            })?;
            let dwarf = load_dwarf(&df, &dd, &d)?;
            debug_data = Some(dd.clone());
            (d, dwarf)
        } else {
            return Err(BinaryError::NoDwarf { path: path.clone() });
        };

        Ok(Self {
            path,
            debug_path,
            data,
            debug_data,
            segments,
            is_pie,
            build_id,
            symbols,
            frames,
            dwarf,
        })
    }

    /// Path the binary was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path the DWARF came from (the binary itself or a separate debug file).
    pub fn debug_path(&self) -> &Path {
        &self.debug_path
    }

    /// True for position-independent executables (ET_DYN), whose load bias is non-zero.
    pub fn is_pie(&self) -> bool {
        self.is_pie
    }

    /// The GNU build id, when present.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// PT_LOAD segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// ELF function symbols (mangled), sorted by address.
    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }

    /// Drops this process's hold on the file's pages (see [`Bytes::release_pages`]): after a
    /// pass over all of the DWARF, such as indexing it.
    pub(crate) fn release_pages(&self) {
        self.data.release_pages();
        if let Some(d) = &self.debug_data {
            d.release_pages();
        }
    }

    /// The symbols as one shared list, for a symbolizer to keep without a copy.
    pub(crate) fn shared_symbols(&self) -> Arc<[Symbol]> {
        self.symbols.clone()
    }

    /// Raw call-frame sections for unwinding.
    pub fn frame_sections(&self) -> &FrameSections {
        &self.frames
    }

    /// The loaded DWARF.
    pub fn dwarf(&self) -> &gimli::Dwarf<Reader> {
        &self.dwarf
    }

    /// The file offset a uprobe must use for `addr`, through the PT_LOAD headers.
    pub fn file_offset(&self, addr: ObjAddr) -> Option<FileOffset> {
        self.segments
            .iter()
            .find(|s| addr.0 >= s.vaddr && addr.0 < s.vaddr + s.filesz)
            .map(|s| FileOffset(addr.0 - s.vaddr + s.offset))
    }

    /// The object address of a file offset, through the PT_LOAD headers.
    pub fn obj_addr(&self, off: FileOffset) -> Option<ObjAddr> {
        self.segments
            .iter()
            .find(|s| off.0 >= s.offset && off.0 < s.offset + s.filesz)
            .map(|s| ObjAddr(off.0 - s.offset + s.vaddr))
    }

    /// The address of a symbol of any kind (data included) by exact name. Parses the symbol
    /// table on each call: for rare look-ups such as Go's `runtime.types`.
    pub fn symbol_address(&self, name: &str) -> Option<ObjAddr> {
        let file = object::File::parse(&*self.data).ok()?;
        file.symbols()
            .chain(file.dynamic_symbols())
            .find(|s| s.name() == Ok(name))
            .map(|s| ObjAddr(s.address()))
    }

    /// Names of all symbols (data included) after whichever of `prefixes` they start with,
    /// such as Go's itabs (`go.itab.*errors.errorString,error`). Parses the symbol table
    /// once per call.
    pub(crate) fn symbol_names_after(&self, prefixes: &[&str]) -> Vec<String> {
        let Ok(file) = object::File::parse(&*self.data) else {
            return Vec::new();
        };
        file.symbols()
            .filter_map(|s| {
                let name = s.name().ok()?;
                prefixes
                    .iter()
                    .find_map(|p| name.strip_prefix(p))
                    .map(str::to_string)
            })
            .collect()
    }

    /// Addresses of the `ret` instructions of function `name` (by exact symbol name): where
    /// a uprobe reads its result. `None` if there is no such function or its code does not
    /// decode.
    pub fn return_addresses(&self, name: &str) -> Option<Vec<ObjAddr>> {
        let file = object::File::parse(&*self.data).ok()?;
        let sym = file
            .symbols()
            .find(|s| s.name() == Ok(name) && s.kind() == object::SymbolKind::Text)?;
        let code = self.bytes_at(ObjAddr(sym.address()), usize::try_from(sym.size()).ok()?)?;
        let offsets = crate::insn::return_offsets(code)?;
        // `collect` into `Option`: a corrupt symbol whose code runs past 2^64 has none.
        offsets
            .into_iter()
            .map(|o| sym.address().checked_add(o).map(ObjAddr))
            .collect()
    }

    /// Addresses of the direct calls from function `caller` to function `callee` (exact
    /// symbol names). `None` if either is missing or the code does not decode.
    pub fn call_sites(&self, caller: &str, callee: &str) -> Option<Vec<ObjAddr>> {
        let file = object::File::parse(&*self.data).ok()?;
        let text = |name: &str| {
            file.symbols()
                .find(|s| s.name() == Ok(name) && s.kind() == object::SymbolKind::Text)
        };
        let (from, to) = (text(caller)?, text(callee)?);
        let code = self.bytes_at(ObjAddr(from.address()), usize::try_from(from.size()).ok()?)?;
        let offsets = crate::insn::call_offsets(code, from.address(), to.address())?;
        Some(
            offsets
                .into_iter()
                .map(|o| ObjAddr(from.address() + o))
                .collect(),
        )
    }

    /// The executable's thread-local storage template (PT_TLS), if it has one.
    pub fn tls_block(&self) -> Option<TlsBlock> {
        use object::read::elf::{FileHeader, ProgramHeader};
        let data: &[u8] = &self.data;
        let header = object::elf::FileHeader64::<object::Endianness>::parse(data).ok()?;
        let endian = header.endian().ok()?;
        let tls = header
            .program_headers(endian, data)
            .ok()?
            .iter()
            .find(|p| p.p_type(endian) == object::elf::PT_TLS)?;
        let block = TlsBlock {
            vaddr: tls.p_vaddr(endian),
            memsz: tls.p_memsz(endian),
            align: tls.p_align(endian).max(1),
        };
        // A corrupt header (alignment not a power of two, a size that wraps) has no
        // offset; found by the fuzzer, where it overflowed.
        block.checked_offset().is_some().then_some(block)
    }

    /// The offset within the TLS template of thread-local symbol `name` (exact, mangled),
    /// from the symbol table of the binary or of its separate debug file.
    pub fn tls_symbol_offset(&self, name: &str) -> Option<u64> {
        let find = |data: &[u8]| {
            let file = object::File::parse(data).ok()?;
            file.symbols()
                .find(|s| s.kind() == object::SymbolKind::Tls && s.name() == Ok(name))
                .map(|s| s.address())
        };
        find(&self.data).or_else(|| find(self.debug_data.as_deref()?))
    }

    /// Bytes of code (or data) at an object address, as stored in the file.
    pub fn bytes_at(&self, addr: ObjAddr, len: usize) -> Option<&[u8]> {
        let off = self.file_offset(addr)?.0 as usize;
        self.data.get(off..off.checked_add(len)?)
    }

    /// The load bias of a process that mapped file offset `map_offset` of this binary at
    /// process address `map_start` (one line of `/proc/PID/maps`).
    pub fn load_bias(&self, map_start: u64, map_offset: u64) -> LoadBias {
        let seg = self
            .segments
            .iter()
            .find(|s| map_offset >= s.offset && map_offset < s.offset + s.filesz.max(1))
            .or_else(|| self.segments.first());
        let (vaddr, offset) = seg.map(|s| (s.vaddr, s.offset)).unwrap_or((0, 0));
        LoadBias(
            map_start
                .wrapping_sub(map_offset)
                .wrapping_sub(vaddr.wrapping_sub(offset)),
        )
    }
}

fn read(path: &Path) -> Result<Bytes, BinaryError> {
    Bytes::map(path).map_err(|source| BinaryError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The GNU build id of the ELF file at `path`, without loading its DWARF: what a cache of
/// [`crate::Executable`]s keys on.
pub fn build_id(path: &Path) -> Result<Option<Vec<u8>>, BinaryError> {
    let data = read(path)?;
    let file = object::File::parse(&*data).map_err(|source| BinaryError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(file.build_id().ok().flatten().map(<[u8]>::to_vec))
}

/// Largest ratio of a compressed section's stated size to its stored size: deflate's own
/// maximum (1032:1). DWARF compresses 3 to 10 times with zlib or zstd, so a larger claim
/// is a corrupt header, and trusting it would allocate that much before decompressing.
const MAX_COMPRESSION_RATIO: u64 = 1032;

/// Why a section's bytes could not be had.
enum SectionFault {
    Decompress(object::Error),
    /// The compression header states an impossible uncompressed size.
    Claimed {
        claimed: u64,
        stored: u64,
    },
}

/// A section's bytes: a range of `data` when stored plainly, else decompressed.
fn section_data(data: &Bytes, section: &object::Section<'_, '_>) -> Result<Bytes, SectionFault> {
    let compressed = section
        .compressed_data()
        .map_err(SectionFault::Decompress)?;
    if compressed.format != object::CompressionFormat::None {
        let stored = compressed.data.len() as u64;
        let claimed = compressed.uncompressed_size;
        // The slack covers tiny sections, whose headers outweigh their data.
        if claimed
            > stored
                .saturating_mul(MAX_COMPRESSION_RATIO)
                .saturating_add(1 << 16)
        {
            return Err(SectionFault::Claimed { claimed, stored });
        }
    }
    let uncompressed = section
        .uncompressed_data()
        .map_err(SectionFault::Decompress)?;
    Ok(match uncompressed {
        std::borrow::Cow::Borrowed(b) => {
            data.subslice(b).unwrap_or_else(|| Bytes::from(b.to_vec()))
        }
        std::borrow::Cow::Owned(v) => Bytes::from(v),
    })
}

fn segment_is_executable(s: &object::Segment<'_, '_>) -> bool {
    match s.flags() {
        object::SegmentFlags::Elf { p_flags, .. } => p_flags.0 & object::elf::PF_X.0 != 0,
        _ => false,
    }
}

fn has_dwarf(file: &object::File<'_>) -> bool {
    file.section_by_name(".debug_info")
        .or_else(|| file.section_by_name(".zdebug_info"))
        .is_some_and(|s| s.size() > 0)
}

fn collect_symbols(file: &object::File<'_>) -> Vec<Symbol> {
    let mut syms: Vec<Symbol> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
        // An end past 2^64 is corrupt, and every look-up adds the size to the address.
        .filter(|s| s.address().checked_add(s.size()).is_some())
        .filter_map(|s| {
            Some(Symbol {
                address: ObjAddr(s.address()),
                size: s.size(),
                name: s.name().ok()?.to_string(),
            })
        })
        .collect();
    syms.sort_by(|a, b| a.address.cmp(&b.address).then(a.name.cmp(&b.name)));
    syms.dedup_by(|a, b| a.address == b.address && a.name == b.name);
    syms
}

fn section_bytes(file: &object::File<'_>, data: &Bytes, name: &str) -> Option<(ObjAddr, Bytes)> {
    let s = file.section_by_name(name)?;
    let bytes = section_data(data, &s).ok()?;
    Some((ObjAddr(s.address()), bytes))
}

fn frame_sections(file: &object::File<'_>, data: &Bytes) -> FrameSections {
    FrameSections {
        eh_frame: section_bytes(file, data, ".eh_frame"),
        eh_frame_hdr: section_bytes(file, data, ".eh_frame_hdr"),
        debug_frame: section_bytes(file, data, ".debug_frame").map(|(_, d)| d),
        text: file
            .section_by_name(".text")
            .map(|s| (ObjAddr(s.address()), s.size())),
    }
}

fn load_dwarf(
    file: &object::File<'_>,
    data: &Bytes,
    path: &Path,
) -> Result<gimli::Dwarf<Reader>, BinaryError> {
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Reader, BinaryError> {
        // `section_by_name` also finds Go's and old GNU `.zdebug_*` sections, and
        // `uncompressed_data` handles both SHF_COMPRESSED and `.zdebug` framing.
        let bytes = match file.section_by_name(id.name()) {
            Some(s) => section_data(data, &s).map_err(|fault| match fault {
                SectionFault::Decompress(source) => BinaryError::Section {
                    path: path.to_path_buf(),
                    section: id.name(),
                    source,
                },
                SectionFault::Claimed { claimed, stored } => BinaryError::CompressedSize {
                    path: path.to_path_buf(),
                    section: id.name(),
                    claimed,
                    stored,
                },
            })?,
            None => Bytes::empty(),
        };
        Ok(gimli::EndianReader::new(bytes, endian))
    };
    gimli::Dwarf::load(load)
}

/// Looks for a separate debug file: `.gnu_debuglink` next to the binary, in `.debug/`, or
/// under `/usr/lib/debug`, then `/usr/lib/debug/.build-id/xx/yyyy.debug`.
fn find_debug_file(path: &Path, file: &object::File<'_>) -> Option<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut candidates = Vec::new();
    if let Ok(Some((name, _crc))) = file.gnu_debuglink() {
        let name = String::from_utf8_lossy(name).into_owned();
        candidates.push(dir.join(&name));
        candidates.push(dir.join(".debug").join(&name));
        let rel = dir.strip_prefix("/").unwrap_or(dir);
        candidates.push(Path::new("/usr/lib/debug").join(rel).join(&name));
    }
    if let Ok(Some(id)) = file.build_id() {
        if id.len() > 1 {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            candidates.push(
                Path::new("/usr/lib/debug/.build-id")
                    .join(&hex[..2])
                    .join(format!("{}.debug", &hex[2..])),
            );
        }
    }
    candidates
        .into_iter()
        .find(|c| c.as_path() != path && c.is_file())
}

#[cfg(test)]
mod tests;
