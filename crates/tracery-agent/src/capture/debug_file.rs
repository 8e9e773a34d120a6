//! Separate debug files of a process's executable, looked up in the process's own
//! filesystem (`/proc/PID/root`): a container's `/usr/lib/debug` is not the host's, and
//! the executable itself is read through `/proc/PID/exe`, whose directory is no place to
//! look for a file next to it.

use std::path::{Path, PathBuf};

use tracery_dwarf::{BinaryError, Executable};

/// The filesystem an executable is seen in: a process's (`/proc/PID/root`, where it is
/// named by the path the process sees) or the agent's own (`/`).
#[derive(Clone, Copy, Debug)]
pub struct SeenIn<'a> {
    pub root: &'a Path,
    /// The executable's path inside `root`.
    pub exe: &'a Path,
}

/// Opens the executable at `path` (a process's `/proc/PID/exe`, or a file) with its DWARF:
/// in the file, else in a separate debug file of the filesystem it is seen in.
pub fn open(
    seen: SeenIn<'_>,
    path: &Path,
    build_id: Option<&[u8]>,
) -> Result<Executable, BinaryError> {
    match Executable::open(path) {
        Err(BinaryError::NoDwarf { .. }) => match find(seen, build_id) {
            Some(file) => {
                tracing::debug!(exe = %seen.exe.display(), debug_file = %file.display(), "separate debug file");
                tracery_dwarf::Binary::open_with_debug_file(path, Some(&file)).map(Executable::from)
            }
            None => Executable::open(path),
        },
        other => other,
    }
}

/// The debug file of an executable inside the root it is seen in: by build id under
/// `/usr/lib/debug/.build-id`, else `NAME.debug` beside the executable, in its `.debug/`,
/// or under `/usr/lib/debug` (the names `objcopy --add-gnu-debuglink` is given by
/// convention). A file found by name must carry the same build id, when there is one.
pub fn find(seen: SeenIn<'_>, build_id: Option<&[u8]>) -> Option<PathBuf> {
    let root = seen.root;
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let mut candidates = Vec::new();
    if let Some(id) = build_id.filter(|id| id.len() > 1) {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        candidates.push(inside(
            &Path::new("/usr/lib/debug/.build-id")
                .join(&hex[..2])
                .join(format!("{}.debug", &hex[2..])),
        ));
    }
    let exe = seen.exe;
    if let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) {
        let name = format!("{}.debug", name.to_string_lossy());
        candidates.push(inside(&dir.join(&name)));
        candidates.push(inside(&dir.join(".debug").join(&name)));
        candidates.push(inside(
            &Path::new("/usr/lib/debug")
                .join(dir.strip_prefix("/").unwrap_or(dir))
                .join(&name),
        ));
    }
    candidates.into_iter().find(|c| {
        c.is_file()
            && build_id.is_none_or(|id| {
                tracery_dwarf::build_id(c).is_ok_and(|found| found.as_deref() == Some(id))
            })
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::process::TargetProcess;

    fn objcopy(args: &[&str]) {
        let status = Command::new("objcopy").args(args).status().unwrap();
        assert!(status.success(), "objcopy {args:?}");
    }

    #[test]
    fn a_stripped_executable_finds_its_debug_file_through_the_process_root() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("orders");
        let debug = dir.path().join("orders.debug");
        std::fs::copy(tracery_tests::fixture("c-O0"), &exe).unwrap();
        let (exe_s, debug_s) = (exe.to_str().unwrap(), debug.to_str().unwrap());
        objcopy(&["--only-keep-debug", exe_s, debug_s]);
        objcopy(&[
            "--strip-debug",
            &format!("--add-gnu-debuglink={debug_s}"),
            exe_s,
        ]);
        let p = tracery_tests::FixtureProcess::spawn_path(&exe, &["serve"]);
        let target = TargetProcess::open(p.pid()).unwrap();
        let path = target.exe_path();
        // Beside /proc/PID/exe there is no debug file: the lookup must use the process's
        // own view of where its executable is.
        assert!(matches!(
            Executable::open(&path),
            Err(BinaryError::NoDwarf { .. })
        ));
        let build_id = tracery_dwarf::build_id(&path).unwrap();
        let root = Path::new("/proc").join(p.pid().to_string()).join("root");
        let seen = SeenIn {
            root: &root,
            exe: target.exe(),
        };
        let opened = open(seen, &path, build_id.as_deref()).unwrap();
        let want = Path::new("/proc")
            .join(p.pid().to_string())
            .join("root")
            .join(debug.strip_prefix("/").unwrap());
        assert_eq!(opened.binary().debug_path(), want);
        assert!(!opened.resolve("level3").unwrap().is_empty());
        // A file of another build under the right name is not taken.
        std::fs::copy(tracery_tests::fixture("c-O2"), &debug).unwrap();
        assert_eq!(find(seen, build_id.as_deref()), None);
    }
}
