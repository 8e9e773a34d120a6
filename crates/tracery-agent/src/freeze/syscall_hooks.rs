//! The tracker's system-call hooks, attached only while some process is tracked, so a
//! node with nothing armed runs none of them.
//!
//! They go on the `syscalls/sys_{enter,exit}_*` tracepoints of the few system calls the
//! tracker acts on: every other system call on the node (futex, epoll_wait, mmap, ...)
//! runs no program. Receives are hooked at neither end when the `sock_recv_length`
//! tracepoint is attached: it runs only for socket receives, and from inside the call it
//! sees the bytes already received, so it parses them (`RECV_AT_SOCK` tells the programs).
//! A read of a pipe or a file then runs no program. Sends' exits are left unhooked too
//! while `sock_send_length` is attached: it ends the hold's send context at the end of
//! the call's message.
//!
//! The `sock_{send,recv}_length` tracepoints run for every socket message on the node, so
//! they are attached raw: the kernel then builds no perf record for each message before
//! the program can tell that its process is not tracked.
//!
//! A kernel without the per-syscall tracepoints (no `CONFIG_FTRACE_SYSCALLS`) or without
//! `bpf_task_pt_regs` gets the raw `sys_enter`/`sys_exit` tracepoints instead, which run
//! for every system call, with a warning saying so.
//!
//! `TRACERY_SYSCALL_HOOKS=raw` chooses the raw tracepoints from the start: one run per
//! system call, but cheaper per run than the per-syscall tracepoints' perf path (see
//! `cargo xtask bench freeze`), for a node whose processes mostly do socket I/O.

use aya::{
    maps::{Array, MapData},
    programs::{
        raw_trace_point::RawTracePointLinkId, trace_point::TracePointLinkId, RawTracePoint,
        TracePoint,
    },
    Ebpf,
};
use tracery_common::{
    names,
    trace::{
        SOCK_RECV_COVERS_ENTER, SOCK_RECV_COVERS_EXIT, SOCK_SEND_COVERS_EXIT,
        WATCHED_SYSCALLS_ENTER, WATCHED_SYSCALLS_EXIT,
    },
};

use crate::error::AgentError;

enum Link {
    PerSyscall(&'static str, TracePointLinkId),
    Raw(&'static str, RawTracePointLinkId),
}

/// The attached hooks, and which kind this kernel takes.
pub struct SyscallHooks {
    links: Vec<Link>,
    /// The message-event tracepoints (raw `sock_{send,recv}_length`), attached with the
    /// hooks when the kernel has them.
    sock_links: Vec<Link>,
    /// The per-syscall tracepoints are not used here (chosen, or they failed once).
    raw_only: bool,
    /// `RECV_AT_SOCK`: non-zero while receives are parsed at `sock/sock_recv_length`.
    recv_at_sock: Array<MapData, u64>,
}

/// The environment variable that chooses the raw tracepoints (`raw`).
pub const HOOKS_ENV: &str = "TRACERY_SYSCALL_HOOKS";

impl SyscallHooks {
    /// Takes the hooks' map out of `ebpf`; the kind of hooks comes from [`HOOKS_ENV`].
    pub fn new(ebpf: &mut Ebpf) -> Result<Self, AgentError> {
        let recv_at_sock = super::messages::take(ebpf, names::RECV_AT_SOCK)?;
        let raw_only = match std::env::var(HOOKS_ENV).as_deref() {
            Ok("raw") => true,
            Ok("per-syscall") | Err(_) => false,
            Ok(other) => {
                tracing::warn!(
                    "{HOOKS_ENV}={other:?} is not `raw` or `per-syscall`; using per-syscall \
                     tracepoints"
                );
                false
            }
        };
        Ok(Self {
            links: Vec::new(),
            sock_links: Vec::new(),
            raw_only,
            recv_at_sock,
        })
    }

    /// Attaches the hooks unless they are attached already, and the message-event
    /// tracepoints (without them the node reports no message events, with a warning).
    /// Those go first: what they see inside socket receives needs no syscall hook.
    pub fn attach(&mut self, ebpf: &mut Ebpf) -> Result<(), AgentError> {
        if self.sock_links.is_empty() {
            for (program, tracepoint) in [
                (names::SOCK_SEND, "sock_send_length"),
                (names::SOCK_RECV, "sock_recv_length"),
            ] {
                match attach_raw(ebpf, program, tracepoint) {
                    Ok(link) => self.sock_links.push(Link::Raw(program, link)),
                    Err(e) => {
                        tracing::warn!(
                            "no message events from this node (no happens-before edges in \
                             trace views): {}",
                            tracery_model::error::chain(&e)
                        );
                        break;
                    }
                }
            }
        }
        // Before the system-call hooks: from here on, their receives' exits leave the parse
        // to the `sock` tracepoint.
        let at_sock = self.sock_attached(names::SOCK_RECV);
        self.recv_at_sock
            .set(0, u64::from(at_sock), 0)
            .map_err(|e| AgentError::Map {
                map: names::RECV_AT_SOCK,
                source: Some(Box::new(e)),
            })?;
        self.attach_syscalls(ebpf)
    }

    /// True when the `sock` tracepoint run by `program` is attached.
    fn sock_attached(&self, program: &str) -> bool {
        self.sock_links
            .iter()
            .any(|l| matches!(l, Link::Raw(name, _) if *name == program))
    }

    fn attach_syscalls(&mut self, ebpf: &mut Ebpf) -> Result<(), AgentError> {
        if !self.links.is_empty() {
            return Ok(());
        }
        if !self.raw_only {
            match self.attach_per_syscall(ebpf) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.detach(ebpf);
                    let why = tracery_model::error::chain(&e);
                    tracing::warn!(
                        "every system call on this node pays the trace tracker while a \
                         breakpoint is armed: the per-syscall tracepoints are unavailable \
                         ({why}); using the raw sys_enter/sys_exit tracepoints"
                    );
                    self.raw_only = true;
                }
            }
        }
        for (name, tracepoint) in [
            (names::SYS_ENTER, "sys_enter"),
            (names::SYS_EXIT, "sys_exit"),
        ] {
            match attach_raw(ebpf, name, tracepoint) {
                Ok(link) => self.links.push(Link::Raw(name, link)),
                Err(e) => {
                    self.detach(ebpf);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn attach_per_syscall(&mut self, ebpf: &mut Ebpf) -> Result<(), AgentError> {
        let recv = self.sock_attached(names::SOCK_RECV);
        let send = self.sock_attached(names::SOCK_SEND);
        let hooks = WATCHED_SYSCALLS_ENTER
            .iter()
            .filter(|s| !(recv && SOCK_RECV_COVERS_ENTER.contains(s)))
            .map(|s| (names::SYSCALL_ENTER, "enter", *s))
            .chain(
                WATCHED_SYSCALLS_EXIT
                    .iter()
                    .filter(|s| !(recv && SOCK_RECV_COVERS_EXIT.contains(s)))
                    .filter(|s| !(send && SOCK_SEND_COVERS_EXIT.contains(s)))
                    .map(|s| (names::SYSCALL_EXIT, "exit", *s)),
            );
        for (program, side, syscall) in hooks {
            let link =
                attach_tracepoint(ebpf, program, "syscalls", &format!("sys_{side}_{syscall}"))?;
            self.links.push(Link::PerSyscall(program, link));
        }
        Ok(())
    }

    /// Detaches every hook: system calls on the node stop paying them.
    pub fn detach(&mut self, ebpf: &mut Ebpf) {
        let sock = std::mem::take(&mut self.sock_links);
        for link in self.links.drain(..).chain(sock) {
            match link {
                Link::PerSyscall(name, link) => {
                    if let Some(Ok(p)) = ebpf.program_mut(name).map(<&mut TracePoint>::try_from) {
                        let _ = p.detach(link);
                    }
                }
                Link::Raw(name, link) => {
                    if let Some(Ok(p)) = ebpf.program_mut(name).map(<&mut RawTracePoint>::try_from)
                    {
                        let _ = p.detach(link);
                    }
                }
            }
        }
    }
}

fn program_error(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> AgentError {
    move |e| AgentError::Program {
        program,
        source: Box::new(e),
    }
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    category: &str,
    tracepoint: &str,
) -> Result<TracePointLinkId, AgentError> {
    let prog: &mut TracePoint = ebpf
        .program_mut(name)
        .ok_or(AgentError::MissingProgram { program: name })?
        .try_into()
        .map_err(program_error(name))?;
    // Loaded once; attached and detached as tracking starts and stops.
    if prog.fd().is_err() {
        prog.load().map_err(program_error(name))?;
    }
    prog.attach(category, tracepoint)
        .map_err(program_error(name))
}

fn attach_raw(
    ebpf: &mut Ebpf,
    name: &'static str,
    tracepoint: &str,
) -> Result<RawTracePointLinkId, AgentError> {
    let prog: &mut RawTracePoint = ebpf
        .program_mut(name)
        .ok_or(AgentError::MissingProgram { program: name })?
        .try_into()
        .map_err(program_error(name))?;
    if prog.fd().is_err() {
        prog.load().map_err(program_error(name))?;
    }
    prog.attach(tracepoint).map_err(program_error(name))
}
