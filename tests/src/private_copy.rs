//! A private copy of a fixture binary, removed on drop.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use crate::fixture::fixture;

/// A fixture copied to a directory of its own. Tests run in parallel, and a service
/// matched by executable must see only its own test's processes, as separate
/// deployments would.
pub struct PrivateCopy {
    dir: PathBuf,
    path: PathBuf,
}

impl PrivateCopy {
    /// Copies fixture `variant` to `<tmp>/<prefix>-<pid>-<n>/orders`.
    pub fn of(variant: &str, prefix: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let path = dir.join("orders");
        let source = fixture(variant);
        std::fs::copy(&source, &path).unwrap_or_else(|e| {
            panic!(
                "cannot copy {} to {}: {e}",
                source.display(),
                path.display()
            )
        });
        Self { dir, path }
    }

    /// The copied executable.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        // Unlinking a binary that still runs is fine.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
