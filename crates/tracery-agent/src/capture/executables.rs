//! The executables the agent has loaded, shared by every process and breakpoint that runs
//! them.
//!
//! An [`Executable`] costs tens of milliseconds to seconds to index and tens of MiB once it
//! is (see its docs), and a service usually runs as several processes of one file. The cache
//! finds an executable by the file's device, inode, modification time and size (one `stat`),
//! and else by its GNU build id, so copies of one build (another container's path, an
//! identical file deployed again) share one too.
//!
//! It is bounded: past [`CACHE_CAP`] executables, the least recently used one leaves the
//! cache. Sites still armed with it keep it alive through their `Arc`, and while they do, the
//! cache finds it again instead of loading a second copy.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{Arc, Weak},
};

use tracery_dwarf::Executable;

use crate::{capture::debug_file::SeenIn, error::AgentError, process::TargetProcess};

/// Executables the cache keeps alive with no armed site using them.
pub const CACHE_CAP: usize = 8;

/// Which file a process runs, as `stat` tells it: a file changed in place gets a new key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileKey {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    size: u64,
}

impl FileKey {
    /// The file at `path`, following symlinks (as `/proc/PID/exe`).
    pub(crate) fn at(path: &Path) -> Option<Self> {
        Some(Self::of(&fs::metadata(path).ok()?))
    }

    /// True when both are the file a uprobe binds to. The device is left out: overlayfs
    /// reports a device of its own for each container's mount, while a uprobe binds to
    /// the inode beneath, shared by every container of the image (checked here: one file
    /// seen through two overlay mounts has two `st_dev` and one `st_ino`).
    pub(crate) fn same_inode(&self, other: &Self) -> bool {
        (self.ino, self.mtime_ns, self.size) == (other.ino, other.mtime_ns, other.size)
    }

    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            size: meta.size(),
        }
    }
}

struct Entry {
    /// Every file found to hold this executable.
    files: Vec<FileKey>,
    build_id: Option<Vec<u8>>,
    exe: Weak<Executable>,
    /// Held while the entry is among the [`CACHE_CAP`] most recently used.
    kept: Option<Arc<Executable>>,
    last_used: u64,
}

/// Loaded executables by file and build id, bounded (see the module docs).
#[derive(Default)]
pub struct Executables {
    entries: Vec<Entry>,
    clock: u64,
    /// Executables loaded from disk so far (a lookup that found one does not count).
    pub loads: u64,
}

impl std::fmt::Debug for Executables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executables")
            .field("entries", &self.entries.len())
            .field("loads", &self.loads)
            .finish()
    }
}

impl Executables {
    /// The executable `target` runs: the one already loaded for that file or build, else
    /// loaded now (mapped; nothing is indexed until first used).
    pub fn get(&mut self, target: &TargetProcess) -> Result<Arc<Executable>, AgentError> {
        let root = Path::new("/proc")
            .join(target.pid().to_string())
            .join("root");
        let seen = SeenIn {
            root: &root,
            exe: target.exe(),
        };
        self.get_at(&target.exe_path(), seen, Some(target.pid()))
    }

    /// The executable at `path` in the agent's own filesystem, whether or not a process
    /// runs it: for probes armed on a file before its processes start.
    pub fn get_file(&mut self, path: &Path) -> Result<Arc<Executable>, AgentError> {
        let seen = SeenIn {
            root: Path::new("/"),
            exe: path,
        };
        self.get_at(path, seen, None)
    }

    fn get_at(
        &mut self,
        path: &Path,
        seen: SeenIn<'_>,
        pid: Option<u32>,
    ) -> Result<Arc<Executable>, AgentError> {
        let meta = fs::metadata(path).map_err(|source| match pid {
            Some(pid) => AgentError::Executable {
                pid,
                path: path.to_path_buf(),
                source,
            },
            None => AgentError::ExecutableFile {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let file = FileKey::of(&meta);
        self.clock += 1;
        // Forget executables nothing uses any more.
        self.entries
            .retain(|e| e.kept.is_some() || e.exe.strong_count() > 0);
        if let Some(exe) = self.find(|e| e.files.contains(&file)) {
            return Ok(exe);
        }
        let build_id = tracery_dwarf::build_id(path)?;
        if let Some(id) = &build_id {
            if let Some(exe) = self.find(|e| e.build_id.as_ref() == Some(id)) {
                // Found through another file: this one is a copy of the same build.
                self.entries
                    .iter_mut()
                    .filter(|e| e.build_id.as_ref() == Some(id))
                    .for_each(|e| e.files.push(file));
                return Ok(exe);
            }
        }
        let exe = Arc::new(super::debug_file::open(seen, path, build_id.as_deref())?);
        self.loads += 1;
        self.entries.push(Entry {
            files: vec![file],
            build_id,
            exe: Arc::downgrade(&exe),
            kept: Some(exe.clone()),
            last_used: self.clock,
        });
        self.evict();
        Ok(exe)
    }

    /// The executable of a live entry matching `pred`, marked as just used.
    fn find(&mut self, pred: impl Fn(&Entry) -> bool) -> Option<Arc<Executable>> {
        let e = self.entries.iter_mut().find(|e| pred(e))?;
        let exe = e.exe.upgrade()?;
        e.kept = Some(exe.clone());
        e.last_used = self.clock;
        self.evict();
        Some(exe)
    }

    /// Lets go of the least recently used executables past [`CACHE_CAP`].
    fn evict(&mut self) {
        while self.entries.iter().filter(|e| e.kept.is_some()).count() > CACHE_CAP {
            let Some(oldest) = self
                .entries
                .iter_mut()
                .filter(|e| e.kept.is_some())
                .min_by_key(|e| e.last_used)
            else {
                return;
            };
            oldest.kept = None;
        }
    }

    /// Executables held now (by the cache or by armed sites).
    pub fn len(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.exe.strong_count() > 0)
            .count()
    }

    /// True when no executable is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use tracery_tests::{fixture, FixtureProcess};

    use super::*;

    #[test]
    fn processes_and_copies_of_one_build_share_an_executable() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("orders-copy");
        fs::copy(fixture("c-O0"), &copy).unwrap();
        let a = FixtureProcess::spawn_path(&fixture("c-O0"), &["serve"]);
        let b = FixtureProcess::spawn_path(&fixture("c-O0"), &["serve"]);
        let c = FixtureProcess::spawn_path(&copy, &["serve"]);
        let mut cache = Executables::default();
        let get = |cache: &mut Executables, p: &FixtureProcess| {
            cache.get(&TargetProcess::open(p.pid()).unwrap()).unwrap()
        };
        let ea = get(&mut cache, &a);
        let eb = get(&mut cache, &b);
        assert!(Arc::ptr_eq(&ea, &eb), "one file");
        let ec = get(&mut cache, &c);
        assert!(
            Arc::ptr_eq(&ea, &ec),
            "a copy: another inode, the same build id"
        );
        assert_eq!(cache.loads, 1);
        assert_eq!(cache.len(), 1);
        // The copy is now known by its file too: no build id read.
        assert_eq!(cache.entries[0].files.len(), 2);
    }

    #[test]
    fn keeps_the_most_recent_and_finds_those_still_in_use() {
        let path = fixture("c-O0");
        let mut cache = Executables::default();
        let mut held = Vec::new();
        for i in 0..CACHE_CAP as u64 + 3 {
            let exe = Arc::new(Executable::open(&path).unwrap());
            cache.clock += 1;
            cache.entries.push(Entry {
                files: vec![FileKey {
                    dev: 0,
                    ino: i,
                    mtime_ns: 0,
                    size: 0,
                }],
                build_id: None,
                exe: Arc::downgrade(&exe),
                kept: Some(exe.clone()),
                last_used: cache.clock,
            });
            cache.evict();
            if i == 0 {
                held.push(exe);
            }
        }
        let kept: Vec<u64> = cache
            .entries
            .iter()
            .filter(|e| e.kept.is_some())
            .map(|e| e.files[0].ino)
            .collect();
        assert_eq!(kept, (3..CACHE_CAP as u64 + 3).collect::<Vec<_>>());
        // Entry 0 left the cache but is still in use: found, not loaded again.
        assert_eq!(cache.len(), CACHE_CAP + 1);
        let found = cache.find(|e| e.files[0].ino == 0).unwrap();
        assert!(Arc::ptr_eq(&found, &held[0]));
        // Entries 1 and 2 are gone for good.
        assert!(cache.find(|e| e.files[0].ino == 1).is_none());
    }
}
