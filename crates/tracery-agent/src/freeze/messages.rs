//! Message events from the kernel (`tracery_common::message`): the sends and receives of
//! traced requests in tracked processes, turned into [`MessageEvent`]s for the controller.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, SystemTime},
};

use aya::{
    maps::{Array, MapData, RingBuf},
    Ebpf,
};
use tracery_common::{
    message::{self as km, offset, stat, MSG_HELD, MSG_RECV, MSG_SEQ},
    names,
};
use tracery_model::{
    message::{MessageBatch, MessageEvent, MessageKind},
    TraceId,
};

use crate::{error::AgentError, sys};

/// Most events taken per read, so one busy read cannot stall the agent's loop.
const MAX_PER_READ: usize = 4096;

/// The message ring and its counters.
pub struct MessageTap {
    ring: RingBuf<MapData>,
    stats: Array<MapData, u64>,
    /// Kept open: the programs were relocated against it.
    _offsets: Array<MapData, u64>,
    /// Whether the kernel knows where sockets keep addresses and sequence numbers; if
    /// not, no event is made.
    pub enabled: bool,
    /// Process names by pid (`/proc/PID/comm`), read once per process.
    names: HashMap<u32, String>,
}

/// Takes map `name` out of `ebpf` as a `T`, naming the map in the error.
pub(super) fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, AgentError> {
    let map = ebpf.take_map(name).ok_or(AgentError::Map {
        map: name,
        source: None,
    })?;
    T::try_from(map).map_err(|e| AgentError::Map {
        map: name,
        source: Some(Box::new(e)),
    })
}

impl MessageTap {
    /// Takes the message maps out of `ebpf` and tells the kernel the socket offsets from
    /// the kernel's BTF.
    pub fn new(ebpf: &mut Ebpf) -> Result<Self, AgentError> {
        let mut offsets: Array<MapData, u64> = take(ebpf, names::MESSAGE_OFFSETS)?;
        let enabled = match super::kernel_btf::message_offsets() {
            Ok(found) => {
                let written = found
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, o)| offsets.set(i as u32, *o, 0))
                    .and_then(|()| offsets.set(offset::KNOWN, 1, 0));
                match written {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!("message events are off: cannot write socket offsets: {e}");
                        false
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    "message events are off (no happens-before edges from this node): the \
                     socket offsets are not in the kernel's BTF: {e}"
                );
                false
            }
        };
        Ok(Self {
            ring: take(ebpf, names::MESSAGE_EVENTS)?,
            stats: take(ebpf, names::MESSAGE_STATS)?,
            _offsets: offsets,
            enabled,
            names: HashMap::new(),
        })
    }

    /// The events since the last call, oldest first, with the total lost so far.
    pub fn read(&mut self) -> MessageBatch {
        let mut events = Vec::new();
        while events.len() < MAX_PER_READ {
            let Some(item) = self.ring.next() else { break };
            if let Some(ev) = sys::read_record::<km::MessageEvent>(&item) {
                events.extend(decode(&ev));
            }
        }
        // A pid reused by another program would keep a stale name: forget them now and then.
        if self.names.len() > 4096 {
            self.names.clear();
        }
        for e in &mut events {
            e.process_name = self
                .names
                .entry(e.pid)
                .or_insert_with(|| process_name(e.pid))
                .clone();
        }
        MessageBatch {
            events,
            lost_total: self.counter(stat::LOST),
        }
    }

    /// Events written, and lost to a full ring, since start.
    pub fn counters(&self) -> (u64, u64) {
        (self.counter(stat::EMITTED), self.counter(stat::LOST))
    }

    fn counter(&self, i: u32) -> u64 {
        self.stats.get(&i, 0).unwrap_or(0)
    }
}

/// One kernel record as a message event; `None` for an untraced or malformed one.
pub fn decode(ev: &km::MessageEvent) -> Option<MessageEvent> {
    let trace_id = TraceId::from_kernel(ev.trace_id)?;
    Some(MessageEvent {
        trace_id,
        kind: if ev.kind == MSG_RECV {
            MessageKind::Recv
        } else {
            MessageKind::Send
        },
        local: addr(ev.family, &ev.local_ip, ev.local_port)?,
        remote: addr(ev.family, &ev.remote_ip, ev.remote_port)?,
        seq: (ev.flags & MSG_SEQ != 0).then_some(ev.seq),
        bytes: ev.len,
        pid: (ev.pid_tgid >> 32) as u32,
        tid: ev.pid_tgid as u32,
        task: ev.task,
        time: wall_time(ev.ktime_ns),
        held: ev.flags & MSG_HELD != 0,
        process_name: String::new(),
    })
}

/// `/proc/PID/comm`, or `pid N` when the process is gone.
fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("pid {pid}"))
}

/// An address as the kernel's socket holds it (network byte order); an IPv4-mapped IPv6
/// address is shown as IPv4, so both ends of a connection name it alike.
fn addr(family: u16, ip: &[u32; 4], port: u16) -> Option<SocketAddr> {
    let ip = match i32::from(family) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::from(u32::from_be(ip[0]))),
        libc::AF_INET6 => {
            let mut b = [0u8; 16];
            for (i, w) in ip.iter().enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(b);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn wall_time(ktime_ns: u64) -> SystemTime {
    let age = sys::monotonic_ns().saturating_sub(ktime_ns);
    SystemTime::now() - Duration::from_nanos(age)
}

#[cfg(test)]
mod tests {
    use tracery_common::message::MSG_SEND;

    use super::*;

    #[test]
    fn a_kernel_record_decodes_to_addresses_in_host_order() {
        let ev = km::MessageEvent {
            kind: MSG_SEND,
            flags: MSG_SEQ,
            family: libc::AF_INET as u16,
            local_port: 40000,
            remote_port: 8080,
            local_ip: [u32::from(Ipv4Addr::new(127, 0, 0, 1)).to_be(), 0, 0, 0],
            remote_ip: [u32::from(Ipv4Addr::new(10, 0, 0, 2)).to_be(), 0, 0, 0],
            seq: 77,
            len: 12,
            pid_tgid: (5 << 32) | 6,
            trace_id: [1; 16],
            ..km::MessageEvent::default()
        };
        let m = decode(&ev).unwrap();
        assert_eq!(m.local.to_string(), "127.0.0.1:40000");
        assert_eq!(m.remote.to_string(), "10.0.0.2:8080");
        assert_eq!((m.pid, m.tid, m.seq, m.bytes), (5, 6, Some(77), 12));
        assert_eq!(m.kind, MessageKind::Send);
        let untraced = km::MessageEvent {
            trace_id: [0; 16],
            ..ev
        };
        assert!(decode(&untraced).is_none());
    }
}
