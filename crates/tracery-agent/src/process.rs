//! A target process: its executable, its identity across PID reuse, and its load bias.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use tracery_dwarf::{Binary, LoadBias};

use crate::error::AgentError;

/// A running process that probes attach to.
#[derive(Clone, Debug)]
pub struct TargetProcess {
    pid: u32,
    /// The executable's path as the process sees it (for people).
    exe: PathBuf,
    /// Start time in clock ticks since boot: tells a restarted process from a reused PID.
    start_time: u64,
    /// Inode of the executable, to find its mappings.
    inode: u64,
}

impl TargetProcess {
    /// Looks up `pid`; fails with [`AgentError::NoSuchProcess`] when it is not running.
    pub fn open(pid: u32) -> Result<Self, AgentError> {
        let proc_dir = proc_dir(pid);
        let start_time = read_start_time(pid).ok_or(AgentError::NoSuchProcess { pid })?;
        let exe_link = proc_dir.join("exe");
        let exe = fs::read_link(&exe_link).map_err(|source| AgentError::Executable {
            pid,
            path: exe_link.clone(),
            source,
        })?;
        let inode = fs::metadata(&exe_link)
            .map_err(|source| AgentError::Executable {
                pid,
                path: exe_link,
                source,
            })?
            .ino();
        Ok(Self {
            pid,
            exe,
            start_time,
            inode,
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The executable's path as the process sees it (inside its mount namespace).
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The path through which the agent reads and attaches to the executable. It reaches
    /// the right inode even inside a container or after the file was replaced on disk.
    pub fn exe_path(&self) -> PathBuf {
        proc_dir(self.pid).join("exe")
    }

    /// True while the same process (not a later one with a reused PID) is running.
    pub fn is_alive(&self) -> bool {
        read_start_time(self.pid) == Some(self.start_time)
    }

    /// Where the process mapped `binary`, from `/proc/PID/maps` matched by inode.
    pub fn load_bias(&self, binary: &Binary) -> Result<LoadBias, AgentError> {
        if !binary.is_pie() {
            return Ok(LoadBias(0));
        }
        let maps_path = proc_dir(self.pid).join("maps");
        let maps = fs::read_to_string(&maps_path).map_err(|source| AgentError::Io {
            action: "reading /proc/PID/maps",
            source,
        })?;
        maps.lines()
            .filter_map(parse_maps_line)
            .filter(|m| m.inode == self.inode)
            .min_by_key(|m| m.offset)
            .map(|m| binary.load_bias(m.start, m.offset))
            .ok_or(AgentError::NotMapped {
                pid: self.pid,
                exe: self.exe.clone(),
            })
    }
}

impl TargetProcess {
    /// Where the main thread's frames end: the stack pointer the process started with
    /// (`startstack`, field 28 of `/proc/PID/stat`). Above it are only argv, envp and the
    /// aux vector, which no unwinder needs and which would cost a copy on every hit.
    pub fn main_stack_top(&self) -> Option<u64> {
        let stat = fs::read_to_string(proc_dir(self.pid).join("stat")).ok()?;
        let after_comm = &stat[stat.rfind(')')? + 1..];
        // Fields 3.. follow the command name; startstack is field 28, the 26th of these.
        let start: u64 = after_comm.split_whitespace().nth(25)?.parse().ok()?;
        // Include the argc word the initial stack pointer points at.
        (start != 0).then_some(start + 8)
    }
}

fn proc_dir(pid: u32) -> PathBuf {
    Path::new("/proc").join(pid.to_string())
}

/// Field 22 of `/proc/PID/stat`; the command name before it may contain spaces and parens.
fn read_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(proc_dir(pid).join("stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After ")" come fields 3.. ; start time is field 22, the 20th of these.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

struct Mapping {
    start: u64,
    offset: u64,
    inode: u64,
}

fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut f = line.split_whitespace();
    let range = f.next()?;
    let _perms = f.next()?;
    let offset = u64::from_str_radix(f.next()?, 16).ok()?;
    let _dev = f.next()?;
    let inode = f.next()?.parse().ok()?;
    let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
    Some(Mapping {
        start,
        offset,
        inode,
    })
}

/// True while a process numbered `pid` exists (any process: the number may have been
/// reused; [`TargetProcess::is_alive`] tells the same process).
pub fn pid_exists(pid: u32) -> bool {
    proc_dir(pid).exists()
}

/// True when `pid` has exited: gone, or a zombie not yet reaped (its `/proc` entry stays,
/// but it has no memory or executable left to arm).
pub fn has_exited(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(proc_dir(pid).join("stat")) else {
        return true;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X") | None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_has_exited_though_its_proc_entry_stays() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        assert!(!has_exited(std::process::id()));
        // Not reaped yet: a zombie once it has run.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !has_exited(pid) {
            assert!(std::time::Instant::now() < deadline, "{pid} never exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(pid_exists(pid), "a zombie keeps its /proc entry");
        child.wait().unwrap();
        assert!(has_exited(pid));
    }

    #[test]
    fn parses_maps_lines() {
        let m =
            parse_maps_line("55d0c1a00000-55d0c1a01000 r--p 00001000 fe:00 1234567   /usr/bin/x y")
                .unwrap();
        assert_eq!(m.start, 0x55d0c1a00000);
        assert_eq!(m.offset, 0x1000);
        assert_eq!(m.inode, 1234567);
        assert!(parse_maps_line("garbage").is_none());
    }

    #[test]
    fn main_stack_top_lies_in_the_stack_mapping() {
        let me = TargetProcess::open(std::process::id()).unwrap();
        let top = me.main_stack_top().expect("startstack");
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps.lines().find(|l| l.ends_with("[stack]")).unwrap();
        let (lo, hi) = line
            .split_whitespace()
            .next()
            .unwrap()
            .split_once('-')
            .unwrap();
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).unwrap(),
            u64::from_str_radix(hi, 16).unwrap(),
        );
        assert!(lo < top && top <= hi, "{top:#x} not in {lo:#x}-{hi:#x}");
    }

    #[test]
    fn own_process_is_alive_and_pid_zero_is_not() {
        let me = TargetProcess::open(std::process::id()).unwrap();
        assert!(me.is_alive());
        assert!(matches!(
            TargetProcess::open(u32::MAX),
            Err(AgentError::NoSuchProcess { .. })
        ));
    }
}
