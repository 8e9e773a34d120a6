//! Compile a plan at a fixture marker, capture it with the emulator, decode it.
#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use tracery_dwarf::{compile_plan, decode, resolve, Binary, CaptureLimits, CapturePlan, Variable};

#[path = "emulator.rs"]
pub mod emulator;

/// Everything one emulated hit produced.
pub struct Snapshot {
    pub binary: Binary,
    pub plan: CapturePlan,
    pub vars: Vec<Variable>,
}

impl Snapshot {
    /// The variable `name` of the probed function (`frame` None) or of an inlined frame.
    pub fn var(&self, name: &str, frame: Option<&str>) -> &Variable {
        self.vars
            .iter()
            .find(|v| v.name == name && v.frame.as_deref() == frame)
            .unwrap_or_else(|| panic!("no variable {name} in frame {frame:?}: {:#?}", self.vars))
    }
}

/// Opens a fixture variant.
pub fn open(variant: &str) -> Binary {
    let path = tracery_tests::fixture(variant);
    Binary::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first probe site of a `@probe:` marker in `binary`.
pub fn site(binary: &Binary, marker: &str) -> tracery_dwarf::ProbeSite {
    let (path, line) = tracery_tests::marker_line(marker);
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let sites =
        resolve(binary, &format!("{file}:{line}")).unwrap_or_else(|e| panic!("{marker}: {e}"));
    sites.into_iter().next().unwrap()
}

/// Compiles the plan at `marker` in `variant`, captures one hit and decodes it.
pub fn snapshot(variant: &str, marker: &str) -> Snapshot {
    snapshot_with(variant, marker, &CaptureLimits::default())
}

/// Like [`snapshot`] with explicit limits.
pub fn snapshot_with(variant: &str, marker: &str, limits: &CaptureLimits) -> Snapshot {
    let binary = open(variant);
    let site = site(&binary, marker);
    let plan = compile_plan(&binary, site.address, limits)
        .unwrap_or_else(|e| panic!("{variant} {marker}: {e}"));
    let hit = emulator::capture(variant, &binary, &plan);
    let vars = decode(&binary, &plan, &hit.header, &hit.data);
    Snapshot { binary, plan, vars }
}
