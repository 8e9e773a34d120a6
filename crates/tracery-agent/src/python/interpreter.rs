//! The CPython interpreter of a process: which file holds it (the executable or a mapped
//! libpython), where its symbols are, its version, and the offsets Tracery follows in it,
//! checked against the live interpreter before anything is armed.

use std::path::{Path, PathBuf};

use object::{Object, ObjectSymbol};
use tracery_common::python::PyOffsets;

use super::{memory::Mem, PythonError};

/// The CPython versions with an offset table.
pub const SUPPORTED: &[&str] = &["3.11"];

/// Offsets of CPython 3.11 (x86-64), from its headers (`Include/internal/pycore_*.h`,
/// `Include/cpython/*.h`, built with `Py_BUILD_CORE`); py-spy's `v3_11_0.rs` agrees.
/// They hold for every 3.11.x release: CPython freezes struct layouts within a minor version.
#[derive(Clone, Copy, Debug)]
pub struct Offsets311 {
    pub runtime_interpreters_head: u64,
    pub runtime_tstate_current: u64,
    pub interp_threads_head: u64,
    pub interp_modules: u64,
    pub tstate_next: u64,
    pub tstate_interp: u64,
    pub tstate_native_thread_id: u64,
    pub code_consts: u64,
    pub code_filename: u64,
    pub code_name: u64,
    pub code_qualname: u64,
    pub code_linetable: u64,
    pub code_firstlineno: u64,
    pub code_argcount: u64,
    pub code_localsplusnames: u64,
    pub code_localspluskinds: u64,
    pub code_firsttraceable: u64,
    pub func_code: u64,
    pub module_dict: u64,
    pub type_dict: u64,
    pub unicode_state: u64,
    pub ascii_data: u64,
    pub compact_data: u64,
    pub long_digits: u64,
    pub float_value: u64,
    pub bytes_data: u64,
    pub dict_used: u64,
    pub kernel: PyOffsets,
}

/// The 3.11 table.
pub const V3_11: Offsets311 = Offsets311 {
    runtime_interpreters_head: 40,
    runtime_tstate_current: 576,
    interp_threads_head: 16,
    interp_modules: 888,
    tstate_next: 8,
    tstate_interp: 16,
    tstate_native_thread_id: 160,
    code_consts: 24,
    code_filename: 112,
    code_name: 120,
    code_qualname: 128,
    code_linetable: 136,
    code_firstlineno: 72,
    code_argcount: 56,
    code_localsplusnames: 96,
    code_localspluskinds: 104,
    code_firsttraceable: 168,
    func_code: 48,
    module_dict: 16,
    type_dict: 264,
    unicode_state: 32,
    ascii_data: 48,
    compact_data: 72,
    long_digits: 24,
    float_value: 16,
    bytes_data: 32,
    dict_used: 16,
    kernel: PyOffsets {
        tstate_current: 0,
        tstate_cframe: 56,
        cframe_current_frame: 8,
        frame_code: 32,
        frame_previous: 48,
        frame_prev_instr: 56,
        frame_localsplus: 72,
        code_nlocalsplus: 76,
        code_adaptive: 184,
        object_type: 8,
        var_size: 16,
        type_name: 24,
        type_flags: 168,
        type_dictoffset: 288,
        heaptype_cached_keys: 872,
        list_items: 24,
        tuple_items: 24,
        dict_keys: 32,
        dict_values: 40,
        keys_log2_index_bytes: 9,
        keys_kind: 10,
        keys_nentries: 24,
        keys_indices: 32,
        managed_dict_before: 24,
        managed_values_before: 32,
    },
};

/// A process's CPython, found and checked.
#[derive(Clone, Debug)]
pub struct Interpreter {
    pub pid: u32,
    /// The file holding the interpreter (the executable, or libpython).
    pub path: PathBuf,
    /// `major.minor.micro`.
    pub version: String,
    /// Process address of `_PyRuntime`.
    pub runtime: u64,
    /// `[start, end)` of `_PyEval_EvalFrameDefault` in the process.
    pub eval_loop: (u64, u64),
    pub offsets: Offsets311,
}

impl Interpreter {
    /// Finds the interpreter of `pid`, reads its version and checks the offsets against
    /// the live interpreter state.
    pub fn open(pid: u32) -> Result<Self, PythonError> {
        let exe =
            std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|source| PythonError::Read {
                pid,
                action: "read the executable",
                source,
            })?;
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|source| {
            PythonError::Read {
                pid,
                action: "read the memory maps",
                source,
            }
        })?;
        let mut candidates = vec![exe.clone()];
        for line in maps.lines() {
            if let Some(path) = line.split_whitespace().nth(5) {
                let name = path.rsplit('/').next().unwrap_or(path);
                if name.starts_with("libpython") && !candidates.iter().any(|c| c == Path::new(path))
                {
                    candidates.push(PathBuf::from(path));
                }
            }
        }
        for path in candidates {
            let syms = match Symbols::read(&path) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => return Err(e),
            };
            let bias = if syms.pie {
                load_base(&maps, &path).ok_or_else(|| PythonError::Read {
                    pid,
                    action: "find the interpreter's mapping",
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })?
            } else {
                0
            };
            let mem = Mem::new(pid);
            let version = match syms.py_version {
                Some(addr) => {
                    let hex = mem.u64(bias + addr).map_err(|source| PythonError::Read {
                        pid,
                        action: "read Py_Version",
                        source,
                    })?;
                    format!(
                        "{}.{}.{}",
                        hex >> 24 & 0xff,
                        hex >> 16 & 0xff,
                        hex >> 8 & 0xff
                    )
                }
                // Py_Version appeared in 3.11; older ones say it in their file name.
                None => version_from_name(&path).unwrap_or_else(|| "older than 3.11".into()),
            };
            let minor = version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
            if !SUPPORTED.contains(&minor.as_str()) {
                return Err(PythonError::UnsupportedVersion {
                    pid,
                    version,
                    path: path.display().to_string(),
                });
            }
            let (eval, eval_size) = syms.eval_loop.ok_or_else(|| PythonError::OffsetMismatch {
                pid,
                version: version.clone(),
                path: path.display().to_string(),
                check: "no _PyEval_EvalFrameDefault symbol".into(),
            })?;
            let interp = Interpreter {
                pid,
                path: path.clone(),
                version,
                runtime: bias + syms.runtime,
                eval_loop: (bias + eval, bias + eval + eval_size),
                offsets: V3_11,
            };
            interp.check(&mem)?;
            return Ok(interp);
        }
        Err(PythonError::NotPython {
            pid,
            exe: exe.display().to_string(),
        })
    }

    /// The offsets the kernel follows, with this process's `tstate_current` address.
    pub fn kernel_offsets(&self) -> PyOffsets {
        PyOffsets {
            tstate_current: self.runtime + self.offsets.runtime_tstate_current,
            ..self.offsets.kernel
        }
    }

    /// Checks the table against the live interpreter: the main interpreter's threads point
    /// back at it, each is a thread of the process, and `sys.modules` is a dict.
    fn check(&self, mem: &Mem) -> Result<(), PythonError> {
        let o = &self.offsets;
        let fail = |check: String| PythonError::OffsetMismatch {
            pid: self.pid,
            version: self.version.clone(),
            path: self.path.display().to_string(),
            check,
        };
        let interp = mem
            .u64(self.runtime + o.runtime_interpreters_head)
            .map_err(|e| fail(format!("_PyRuntime.interpreters.head unreadable: {e}")))?;
        if interp == 0 {
            return Err(fail("the interpreter is not initialized yet".into()));
        }
        let mut tstate = mem.u64(interp + o.interp_threads_head).unwrap_or(0);
        let tids = threads(self.pid);
        let mut seen = 0;
        for _ in 0..256 {
            if tstate == 0 {
                break;
            }
            let back = mem.u64(tstate + o.tstate_interp).unwrap_or(0);
            if back != interp {
                return Err(fail(format!(
                    "thread state {tstate:#x} points to interpreter {back:#x}, not {interp:#x}"
                )));
            }
            let tid = mem.u64(tstate + o.tstate_native_thread_id).unwrap_or(0);
            if !tids.contains(&(tid as u32)) {
                return Err(fail(format!(
                    "thread state {tstate:#x} names thread {tid}, which PID {} does not have",
                    self.pid
                )));
            }
            seen += 1;
            tstate = mem.u64(tstate + o.tstate_next).unwrap_or(0);
        }
        if seen == 0 {
            return Err(fail("the interpreter has no thread state".into()));
        }
        let modules = mem.u64(interp + o.interp_modules).unwrap_or(0);
        let ty = mem.type_name(modules).unwrap_or_default();
        if ty != "dict" {
            return Err(fail(format!("sys.modules is a {ty:?}, not a dict")));
        }
        Ok(())
    }
}

/// The threads of `pid`.
pub fn threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

struct Symbols {
    pie: bool,
    runtime: u64,
    py_version: Option<u64>,
    eval_loop: Option<(u64, u64)>,
}

impl Symbols {
    /// The symbols of `path`, or `None` when it has no `_PyRuntime` (not an interpreter).
    fn read(path: &Path) -> Result<Option<Self>, PythonError> {
        let elf_err = |source| PythonError::Elf {
            path: path.display().to_string(),
            source,
        };
        let Ok(data) = std::fs::read(path) else {
            return Ok(None);
        };
        let file = object::File::parse(&*data).map_err(elf_err)?;
        let mut runtime = None;
        let mut py_version = None;
        let mut eval_loop = None;
        for sym in file.dynamic_symbols().chain(file.symbols()) {
            match sym.name() {
                Ok("_PyRuntime") => runtime = Some(sym.address()),
                Ok("Py_Version") => py_version = Some(sym.address()),
                Ok("_PyEval_EvalFrameDefault") => eval_loop = Some((sym.address(), sym.size())),
                _ => {}
            }
        }
        let Some(runtime) = runtime else {
            return Ok(None);
        };
        Ok(Some(Self {
            pie: file.kind() == object::ObjectKind::Dynamic,
            runtime,
            py_version,
            eval_loop,
        }))
    }
}

/// Load bias of `path` in the process: its lowest mapping's start minus that mapping's
/// file offset (ELF `p_vaddr` of the first segment is 0 for PIE and shared objects).
fn load_base(maps: &str, path: &Path) -> Option<u64> {
    let path = path.to_str()?;
    maps.lines()
        .filter(|l| l.split_whitespace().nth(5) == Some(path))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let start = u64::from_str_radix(f.next()?.split('-').next()?, 16).ok()?;
            let offset = u64::from_str_radix(f.nth(1)?, 16).ok()?;
            Some(start - offset)
        })
        .min()
}

/// `3.10` from `python3.10` or `libpython3.10.so.1.0`.
fn version_from_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let rest = name
        .strip_prefix("libpython")
        .or(name.strip_prefix("python"))?;
    let v: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let v = v.trim_end_matches('.');
    v.contains('.').then(|| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_file_names() {
        assert_eq!(
            version_from_name(Path::new("/usr/bin/python3.10")).as_deref(),
            Some("3.10")
        );
        assert_eq!(
            version_from_name(Path::new("/x/libpython3.12.so.1.0")).as_deref(),
            Some("3.12")
        );
        assert_eq!(version_from_name(Path::new("/usr/bin/python3")), None);
    }
}
