//! Opening a running Node process's inspector: SIGUSR1 (`process._debugProcess`), then the
//! WebSocket address from `/json/list`. Every connection is made from a thread that joined
//! the process's network namespace, so the inspector, which listens on the process's own
//! loopback, is never exposed beyond it.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use super::NodeError;

/// How long the inspector may take to listen after SIGUSR1 before the agent says why not.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(3);

/// Port Node's inspector listens on unless `--inspect-port` says otherwise.
pub const DEFAULT_PORT: u16 = 9229;

const SIGUSR1_BIT: u64 = 1 << (libc::SIGUSR1 - 1);

/// A Node process's open inspector.
#[derive(Clone, Debug)]
pub struct Inspector {
    /// The Node process.
    pub pid: u32,
    /// Where it listens, in the process's network namespace.
    pub addr: SocketAddr,
    /// The session WebSocket from `/json/list`.
    pub ws_url: String,
    /// True when the agent opened it (SIGUSR1), so the agent closes it again on detach;
    /// an inspector the process opened itself (`--inspect`) is left open.
    pub opened_by_agent: bool,
}

/// True when `pid` runs Node (its executable is `node` or `nodejs`, or a versioned copy).
pub fn is_node(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| {
            n == "node" || n == "nodejs" || n.starts_with("node-") || n.starts_with("node2")
        })
}

/// Opens (or finds) the inspector of Node process `pid`.
pub fn open(pid: u32) -> Result<Inspector, NodeError> {
    let args = node_args(pid);
    let port = inspect_port(&args).unwrap_or(DEFAULT_PORT);
    let before = listening_ports(pid);
    if before.contains(&port) {
        // Opened already (`--inspect`, or a debugger earlier): use it and leave it open.
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let ws_url = ws_url(pid, addr)?;
        return Ok(Inspector {
            pid,
            addr,
            ws_url,
            opened_by_agent: false,
        });
    }
    if args.iter().any(|a| a == "--disable-sigusr1") {
        return Err(NodeError::SignalDisabled {
            pid,
            reason: "it runs with --disable-sigusr1".into(),
        });
    }
    if !catches_sigusr1(pid)? {
        // Its default action would terminate the process.
        return Err(NodeError::SignalDisabled {
            pid,
            reason: "it does not handle SIGUSR1 (the signal would terminate it)".into(),
        });
    }
    crate::sys::tgkill(pid, pid, libc::SIGUSR1).map_err(|source| NodeError::Io {
        action: "sending SIGUSR1 to the Node process",
        source,
    })?;
    let deadline = Instant::now() + OPEN_TIMEOUT;
    loop {
        let now = listening_ports(pid);
        if let Some(p) = now
            .difference(&before)
            .copied()
            .find(|p| *p == port)
            .or_else(|| now.difference(&before).copied().next())
        {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, p));
            let ws_url = ws_url(pid, addr)?;
            return Ok(Inspector {
                pid,
                addr,
                ws_url,
                opened_by_agent: true,
            });
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    if let Some(owner) = port_owner(pid, port) {
        return Err(NodeError::PortTaken { pid, port, owner });
    }
    Err(NodeError::NotOpened {
        pid,
        after: OPEN_TIMEOUT,
    })
}

/// Connects to `addr` from inside `pid`'s network namespace.
pub fn connect(pid: u32, addr: SocketAddr) -> Result<TcpStream, NodeError> {
    let io = |action: &'static str| move |source| NodeError::Io { action, source };
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(io("opening the process's network namespace"))?;
    let same = same_file(
        Path::new("/proc/self/ns/net"),
        &format!("/proc/{pid}/ns/net"),
    );
    // A thread of its own joins the namespace and ends: the socket stays in the namespace
    // it was made in, and the agent's other threads never leave theirs.
    std::thread::scope(|s| {
        s.spawn(|| {
            if !same {
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&netns),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| NodeError::Io {
                    action: "joining the process's network namespace",
                    source: e.into(),
                })?;
            }
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                .map_err(io("connecting to the inspector"))?;
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .map_err(io("connecting to the inspector"))?;
            Ok(stream)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NodeError::Io {
                action: "connecting to the inspector",
                source: std::io::Error::other("the connecting thread panicked"),
            })
        })
    })
}

fn same_file(a: &Path, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.ino() == y.ino() && x.dev() == y.dev(),
        _ => false,
    }
}

/// The `webSocketDebuggerUrl` of `/json/list` at `addr`.
fn ws_url(pid: u32, addr: SocketAddr) -> Result<String, NodeError> {
    // One GET on the process's loopback: a plain HTTP/1.0 exchange, no client library.
    let mut last = String::new();
    for _ in 0..20 {
        match get_json_list(pid, addr) {
            Ok(body) => {
                let list: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| NodeError::Protocol {
                        method: "/json/list".into(),
                        reason: e.to_string(),
                    })?;
                if let Some(url) = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|t| t["webSocketDebuggerUrl"].as_str())
                {
                    // The inspector names itself `localhost`, which may not resolve in the
                    // namespace; the address is the one it listens on.
                    let path = url.split_once("://").map_or(url, |(_, r)| r);
                    let path = path.find('/').map_or("", |i| &path[i..]);
                    return Ok(format!("ws://{addr}{path}"));
                }
                last = "no target in /json/list".into();
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(NodeError::Protocol {
        method: "/json/list".into(),
        reason: last,
    })
}

fn get_json_list(pid: u32, addr: SocketAddr) -> Result<String, NodeError> {
    let mut s = connect(pid, addr)?;
    let io = |source| NodeError::Io {
        action: "reading the inspector's /json/list",
        source,
    };
    s.write_all(
        format!("GET /json/list HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(io)?;
    // The inspector may keep the connection open: read up to Content-Length.
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let body = &buf[head_end + 4..];
            if len.is_some_and(|l| body.len() >= l) {
                return Ok(String::from_utf8_lossy(body).into_owned());
            }
        }
        let n = s.read(&mut chunk).map_err(io)?;
        if n == 0 {
            let at = buf
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(buf.len(), |i| i + 4);
            return Ok(String::from_utf8_lossy(&buf[at..]).into_owned());
        }
        if buf.len() + n > MAX_LIST_BYTES {
            return Err(io(std::io::Error::other("/json/list answer too large")));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Most bytes read of a `/json/list` answer (one target: well under 2 KiB).
const MAX_LIST_BYTES: usize = 64 * 1024;

/// The process's command line and `NODE_OPTIONS`, split into words.
fn node_args(pid: u32) -> Vec<String> {
    let mut args: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    for var in environ.split(|b| *b == 0) {
        if let Some(v) = var.strip_prefix(b"NODE_OPTIONS=") {
            args.extend(
                String::from_utf8_lossy(v)
                    .split_whitespace()
                    .map(str::to_owned),
            );
        }
    }
    args
}

/// The port `--inspect-port=N` or `--inspect[-brk]=[host:]N` chooses.
pub fn inspect_port(args: &[String]) -> Option<u16> {
    args.iter().find_map(|a| {
        let v = a
            .strip_prefix("--inspect-port=")
            .or_else(|| a.strip_prefix("--inspect="))
            .or_else(|| a.strip_prefix("--inspect-brk="))?;
        v.rsplit(':').next()?.parse().ok()
    })
}

/// True when `pid` has a handler for SIGUSR1 (`SigCgt` in its status).
fn catches_sigusr1(pid: u32) -> Result<bool, NodeError> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|source| NodeError::Io {
            action: "reading the process's signal handlers",
            source,
        })?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|mask| mask & SIGUSR1_BIT != 0))
}

/// Listening TCP sockets of the namespace of `pid`: (port, socket inode).
fn listeners(pid: u32) -> Vec<(u16, u64)> {
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st .. inode (field 9)
            if f.len() > 9 && f[3] == "0A" {
                let port = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                if let (Some(port), Ok(inode)) = (port, f[9].parse::<u64>()) {
                    out.push((port, inode));
                }
            }
        }
    }
    out
}

/// Socket inodes among `pid`'s open files.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Ports `pid` itself listens on.
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let mine = socket_inodes(pid);
    listeners(pid)
        .into_iter()
        .filter(|(_, inode)| mine.contains(inode))
        .map(|(port, _)| port)
        .collect()
}

/// Who else listens on `port` in `pid`'s namespace: a PID, or 0 when the socket's owner is
/// not visible from here.
fn port_owner(pid: u32, port: u16) -> Option<u32> {
    let inodes: BTreeSet<u64> = listeners(pid)
        .into_iter()
        .filter(|(p, _)| *p == port)
        .map(|(_, i)| i)
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let owner = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| *p != pid && !socket_inodes(*p).is_disjoint(&inodes));
    Some(owner.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inspect_port_comes_from_the_command_line() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            inspect_port(&args(&["node", "--inspect-port=9333", "app.js"])),
            Some(9333)
        );
        assert_eq!(
            inspect_port(&args(&["node", "--inspect=0.0.0.0:9444"])),
            Some(9444)
        );
        assert_eq!(inspect_port(&args(&["node", "app.js"])), None);
    }
}
