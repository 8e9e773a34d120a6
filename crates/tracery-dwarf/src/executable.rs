//! One executable and everything derived from its DWARF, built on first use and kept.
//!
//! An [`Executable`] is the context a caller owns for as long as it probes processes that
//! run one file (as addr2line's `Context` is): every process and every breakpoint of that
//! file shares it. What it costs, and when:
//!
//! - opening maps the file and reads its headers and ELF symbols (milliseconds; the
//!   mapping's pages belong to the page cache, not to the caller);
//! - the first [`Executable::resolve`] builds the [`DebugIndex`]: one walk of every unit,
//!   tens of milliseconds to a few seconds, and a few bytes per line-table row and function;
//! - [`Executable::plan`] compiles a plan by parsing the one unit that holds the address;
//! - the first [`Executable::stack`] builds the symbolizer, whose per-unit tables then
//!   fill as addresses are looked up; unwinders are built per load bias.
//!
//! Resolved locations and compiled plans are remembered (a bounded number of each), so a
//! second process of the same file arms without any DWARF work.

use std::{
    collections::VecDeque,
    path::Path,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
};

use tracery_common::{regs::NUM_REGS, HitHeader};

use crate::{
    address::{LoadBias, ObjAddr, ProcAddr},
    binary::Binary,
    error::BinaryError,
    fetch_plan::{cfa::cfa_at, compile_plan_in, CaptureLimits, CapturePlan, PlanError},
    go_runtime::{go_runtime, GoRuntime},
    index::DebugIndex,
    render::SourceLanguage,
    resolve::{join_notes, ProbeSite, ResolveError},
    step_free,
    symbolize::{Frame, Symbolizer},
    tokio_runtime::{tokio_runtime, TokioRuntime},
    unwind::StackUnwinder,
    value::Variable,
};

/// Locations remembered per executable.
const RESOLVED_CAP: usize = 64;
/// Plans remembered per executable (a plan is a few KiB).
const PLANS_CAP: usize = 256;
/// Unwinders kept per executable: one per load bias, so one per PIE process.
const UNWINDERS_CAP: usize = 32;

/// An executable with its index, symbolizer and unwinders, built lazily (see the module
/// docs for the cost). `Send` and `Sync`: share it behind an `Arc`.
pub struct Executable {
    binary: Binary,
    index: OnceLock<DebugIndex>,
    symbolizer: OnceLock<Mutex<Symbolizer>>,
    go_runtime: OnceLock<Option<GoRuntime>>,
    tokio_runtime: OnceLock<Option<TokioRuntime>>,
    unwinders: Mutex<Memo<LoadBias, Arc<StackUnwinder>>>,
    resolved: Mutex<Memo<String, Vec<ProbeSite>>>,
    plans: Mutex<Memo<(ObjAddr, CaptureLimits), Arc<CapturePlan>>>,
}

impl std::fmt::Debug for Executable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executable")
            .field("binary", &self.binary)
            .field("indexed", &self.index.get().is_some())
            .field("symbolizer", &self.symbolizer.get().is_some())
            .finish_non_exhaustive()
    }
}

impl From<Binary> for Executable {
    fn from(binary: Binary) -> Self {
        Self {
            binary,
            index: OnceLock::new(),
            symbolizer: OnceLock::new(),
            go_runtime: OnceLock::new(),
            tokio_runtime: OnceLock::new(),
            unwinders: Mutex::new(Memo::new(UNWINDERS_CAP)),
            resolved: Mutex::new(Memo::new(RESOLVED_CAP)),
            plans: Mutex::new(Memo::new(PLANS_CAP)),
        }
    }
}

impl Executable {
    /// Opens `path` and finds its DWARF (see [`Binary::open`]); nothing is indexed yet.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BinaryError> {
        Binary::open(path).map(Self::from)
    }

    /// The loaded file.
    pub fn binary(&self) -> &Binary {
        &self.binary
    }

    /// The index of files, lines and functions, built on first use.
    pub fn index(&self) -> &DebugIndex {
        self.index.get_or_init(|| {
            let index = DebugIndex::new(&self.binary);
            // Indexing read every unit; later work reads a few.
            self.binary.release_pages();
            index
        })
    }

    /// The probe sites of `location` (`FILE:LINE` or a function), as [`crate::resolve`]
    /// finds them; remembered per location.
    pub fn resolve(&self, location: &str) -> Result<Vec<ProbeSite>, ResolveError> {
        if let Some(sites) = lock(&self.resolved).get(location) {
            return Ok(sites.clone());
        }
        let sites = self.index().resolve(&self.binary, location)?;
        lock(&self.resolved).insert(location.to_string(), sites.clone());
        Ok(sites)
    }

    /// The fetch plan for `address` with `limits`, as [`crate::compile_plan`] compiles it;
    /// remembered per address and limits.
    pub fn plan(&self, address: ObjAddr, limits: &CaptureLimits) -> Result<CapturePlan, PlanError> {
        let key = (address, *limits);
        if let Some(plan) = lock(&self.plans).get(&key) {
            return Ok(CapturePlan::clone(plan));
        }
        // The index, when built already, says which unit to parse.
        let hint = self.index.get().and_then(|i| i.function_die(address.0));
        let plan = compile_plan_in(&self.binary, address, hint, limits);
        // Reading every unit header touched pages all over `.debug_info`.
        self.binary.release_pages();
        let plan = plan?;
        lock(&self.plans).insert(key, Arc::new(plan.clone()));
        Ok(plan)
    }

    /// `site` moved onto a later instruction of its line that the kernel emulates, with the
    /// plan compiled there, when the instructions it passes cannot change anything `plan`
    /// reads (see `step_free.rs`): a hit then costs one trap instead of a trap and a single
    /// step. `None` keeps the site where it is.
    pub fn step_free(
        &self,
        site: &ProbeSite,
        plan: &CapturePlan,
    ) -> Option<(ProbeSite, CapturePlan)> {
        let start = site.address.0;
        let index = self.index();
        let row = index.lines.row_at(start)?;
        let (file, line) = (row.file, row.line());
        let chain = index.functions.chain_at(start);
        let in_line = |a: u64| {
            index
                .lines
                .row_at(a)
                .is_some_and(|r| r.file == file && r.line() == line)
                && index.functions.chain_at(a) == chain
        };
        // 16 instructions of at most 15 bytes; less near the end of the file.
        let code = [240, 64, 16]
            .into_iter()
            .find_map(|n| self.binary.bytes_at(site.address, n))?;
        let cfa = cfa_at(self.binary.frame_sections(), start).ok()?;
        let frame = step_free::Frame {
            cfa_reg: cfa.reg,
            cfa_offset: cfa.offset,
            go: plan.language() == SourceLanguage::Go,
        };
        let (to, effects) = step_free::emulated_successor(code, start, &frame, in_line)?;
        if !step_free::plan_unaffected(&plan.config, &effects) {
            return None;
        }
        let moved = self.plan(ObjAddr(to), plan.limits()).ok()?;
        let n = usize::from(plan.config.n_ops);
        let same = moved.config.n_ops == plan.config.n_ops
            && moved.config.ops[..n] == plan.config.ops[..n]
            && moved.config.data_size == plan.config.data_size
            && moved.variables().eq(plan.variables());
        if !same {
            return None;
        }
        let file_offset = self.binary.file_offset(ObjAddr(to))?;
        let text = format!(
            "probed {} instruction{} into the line, where the kernel emulates the trap instead \
             of single-stepping it (about 1 µs a hit instead of up to 18 µs on a VM); nothing \
             the capture reads changes before it",
            effects.skipped,
            if effects.skipped == 1 { "" } else { "s" }
        );
        let note = join_notes(site.note.clone(), Some(text));
        Some((
            ProbeSite {
                address: ObjAddr(to),
                file_offset,
                note,
                ..site.clone()
            },
            moved,
        ))
    }

    /// Decodes one hit of `plan` (see [`crate::decode()`]).
    pub fn decode(&self, plan: &CapturePlan, header: &HitHeader, data: &[u8]) -> Vec<Variable> {
        crate::decode::decode(&self.binary, plan, header, data)
    }

    /// Unwinds a captured stack of a process that loaded this file with `bias` and names
    /// its frames, innermost first (see [`crate::unwind()`] for `regs`, `stack_base` and
    /// `stack`).
    pub fn stack(
        &self,
        bias: LoadBias,
        regs: &[u64; NUM_REGS],
        stack_base: u64,
        stack: &[u8],
        max_frames: usize,
    ) -> Vec<Frame> {
        let pcs = self
            .unwinder(bias)
            .unwind(regs, stack_base, stack, max_frames);
        self.symbolize(bias, &pcs)
    }

    /// The frames of an unwound stack (`pcs[0]` the pc, the rest return addresses).
    pub fn symbolize(&self, bias: LoadBias, pcs: &[ProcAddr]) -> Vec<Frame> {
        let symbolizer = self.symbolizer.get_or_init(|| {
            // DWARF addr2line cannot index still has ELF symbols to name frames by.
            let symbolizer = Symbolizer::new(&self.binary)
                .unwrap_or_else(|_| Symbolizer::symbols_only(&self.binary));
            // addr2line read every unit's header and ranges.
            self.binary.release_pages();
            Mutex::new(symbolizer)
        });
        lock(symbolizer).stack(bias, pcs)
    }

    /// The unwinder for a process that loaded this file with `bias`.
    pub fn unwinder(&self, bias: LoadBias) -> Arc<StackUnwinder> {
        let mut unwinders = lock(&self.unwinders);
        if let Some(u) = unwinders.get(&bias) {
            return u.clone();
        }
        let u = Arc::new(StackUnwinder::new(&self.binary, bias));
        unwinders.insert(bias, u.clone());
        u
    }

    /// Offsets into the Go runtime's structures, for a Go binary (see [`go_runtime()`]).
    pub fn go_runtime(&self) -> Option<GoRuntime> {
        *self.go_runtime.get_or_init(|| go_runtime(&self.binary))
    }

    /// Where tokio keeps the current task, for a tokio binary with full debug info (see
    /// [`tokio_runtime()`]).
    pub fn tokio_runtime(&self) -> Option<TokioRuntime> {
        *self
            .tokio_runtime
            .get_or_init(|| tokio_runtime(&self.binary))
    }
}

/// A poisoned lock only means another thread panicked while filling a cache: what it
/// holds is still whole (entries are inserted complete).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A few remembered results, the oldest forgotten first. Lookups are linear: these hold
/// tens of entries.
struct Memo<K, V> {
    cap: usize,
    entries: VecDeque<(K, V)>,
}

impl<K: PartialEq, V> Memo<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            entries: VecDeque::new(),
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: PartialEq + ?Sized,
    {
        self.entries
            .iter()
            .find(|(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    fn insert(&mut self, key: K, value: V) {
        self.entries.retain(|(k, _)| *k != key);
        if self.entries.len() >= self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_forgets_the_oldest() {
        let mut m = Memo::new(2);
        m.insert("a".to_string(), 1);
        m.insert("b".to_string(), 2);
        m.insert("a".to_string(), 3);
        assert_eq!(m.get("a"), Some(&3));
        m.insert("c".to_string(), 4);
        assert_eq!(m.get("b"), None, "b was the oldest");
        assert_eq!((m.get("a"), m.get("c")), (Some(&3), Some(&4)));
    }

    #[test]
    fn executables_can_be_shared() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Executable>();
    }
}
