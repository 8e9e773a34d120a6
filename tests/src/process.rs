//! Running a fixture and reading what it prints.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver},
    thread,
    time::{Duration, Instant},
};

use crate::fixture::fixture;

/// How long a fixture may take to print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a spawn retries while its freshly copied binary is "busy".
const BUSY_RETRY: Duration = Duration::from_secs(5);

/// Spawns `cmd`, retrying ETXTBSY. A test that copies a fixture and runs it races every
/// other test thread's fork: a child forked while the copy's write fd was open keeps it
/// until its own exec, and exec of a file open for writing fails (Go's os/exec retries
/// for the same reason).
fn spawn_retrying_busy(cmd: &mut Command) -> std::io::Result<Child> {
    let deadline = Instant::now() + BUSY_RETRY;
    loop {
        match cmd.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// A running fixture that printed `ready`. Killed and reaped on drop.
pub struct FixtureProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl FixtureProcess {
    /// Builds `variant` if needed, runs it with `args` (a mode such as `["hot"]`), and
    /// waits for `ready`.
    pub fn spawn(variant: &str, args: &[&str]) -> Self {
        Self::spawn_path(&fixture(variant), args)
    }

    /// Runs the service at `path` with `args` and waits for it to print `ready ADDR`;
    /// returns the process and the address it listens on.
    pub fn spawn_service(path: &Path, args: &[&str]) -> (Self, String) {
        let mut cmd = Command::new(path);
        cmd.args(args);
        Self::spawn_service_command(cmd)
    }

    /// Like [`FixtureProcess::spawn_service`], for a command prepared by the caller (e.g.
    /// to run inside a demo node: [`crate::node::Node::command`]).
    pub fn spawn_service_command(cmd: Command) -> (Self, String) {
        let path = PathBuf::from(cmd.get_program());
        let path = path.as_path();
        let mut process = Self::start_command(cmd);
        match process.read_line(READY_TIMEOUT) {
            Some(line) if line.starts_with("ready ") => {
                let addr = line["ready ".len()..].trim().to_string();
                (process, addr)
            }
            Some(line) => panic!(
                "{} printed {line:?} instead of `ready ADDR`",
                path.display()
            ),
            None => panic!(
                "{} did not print `ready ADDR` within {READY_TIMEOUT:?}",
                path.display()
            ),
        }
    }

    /// Runs the program at `path` with `args` and waits for `ready`.
    pub fn spawn_path(path: &Path, args: &[&str]) -> Self {
        let mut process = Self::start(path, args);
        match process.read_line(READY_TIMEOUT) {
            Some(line) if line == "ready" => process,
            Some(line) => panic!("{} printed {line:?} instead of `ready`", path.display()),
            None => panic!(
                "{} did not print `ready` within {READY_TIMEOUT:?}",
                path.display()
            ),
        }
    }

    /// Starts `path` with piped stdio and a thread forwarding its stdout lines.
    fn start(path: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(path);
        cmd.args(args);
        Self::start_command(cmd)
    }

    /// Starts `cmd` with piped stdio and a thread forwarding its stdout lines.
    fn start_command(mut cmd: Command) -> Self {
        let path = PathBuf::from(cmd.get_program());
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = spawn_retrying_busy(&mut cmd)
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        // A thread, so reads can time out; it ends when the process closes stdout.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, or `None` after `timeout` or when stdout is closed.
    pub fn read_line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The rest of the next line that starts with `prefix` (e.g. `"rate "`), skipping other
    /// lines. Panics after `timeout`.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_line(left) {
                Some(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                None => panic!(
                    "pid {} printed no line starting with {prefix:?} within {timeout:?}",
                    self.pid()
                ),
            }
        }
    }

    /// Writes one line to the fixture's stdin. Bench modes start their timed loop on it.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin was already closed");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to pid {}: {e}", self.child.id()));
    }

    /// Closes the fixture's stdin (bench modes also start on end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the fixture to exit by itself. Panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => panic!("pid {} did not exit within {timeout:?}", self.pid()),
                Err(e) => panic!("cannot wait for pid {}: {e}", self.pid()),
            }
        }
    }
}

impl Drop for FixtureProcess {
    fn drop(&mut self) {
        // Either may fail if the process already exited; there is nothing left to do then.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
