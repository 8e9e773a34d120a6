//! Offsets into kernel structures, from the running kernel's BTF: the eBPF programs are
//! built without CO-RE relocations (aya-ebpf has none), so user space supplies them.

use btf_rs::{Btf, Type};

/// Where the kernel's BTF is.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The offset of `thread.fsbase` in `struct task_struct`: the thread pointer of a user
/// thread, where its thread-locals are found. The error says why it is unknown.
pub fn task_fsbase_offset() -> Result<u64, String> {
    let btf = Btf::from_file(VMLINUX_BTF).map_err(|e| format!("reading {VMLINUX_BTF}: {e}"))?;
    let task = struct_named(&btf, "task_struct")?;
    let (thread_off, thread) = member(&btf, &task, "thread")?;
    let Type::Struct(thread) = thread else {
        return Err("task_struct.thread is not a struct".into());
    };
    let (fsbase_off, _) = member(&btf, &thread, "fsbase")?;
    Ok(thread_off + fsbase_off)
}

/// Byte offsets the message-event programs read sockets with, indexed by
/// `tracery_common::message::offset` (`KNOWN` excluded). The error says which is missing.
pub fn message_offsets() -> Result<[u64; 10], String> {
    let btf = Btf::from_file(VMLINUX_BTF).map_err(|e| format!("reading {VMLINUX_BTF}: {e}"))?;
    let common = struct_named(&btf, "sock_common")?;
    let sock = struct_named(&btf, "sock")?;
    let tcp = struct_named(&btf, "tcp_sock")?;
    // `struct sock` begins with its `sock_common`, and a `tcp_sock` with its `sock`: the
    // `sock *` the tracepoints give is a `tcp_sock *` and a `sock_common *` alike.
    let sk = |name| member(&btf, &common, name).map(|(o, _)| o);
    let tp = |name| member(&btf, &tcp, name).map(|(o, _)| o);
    // A 16-bit field since Linux 5.6; older kernels packed it in a bitfield, which a
    // byte offset cannot name.
    let (protocol, mut ty) = member(&btf, &sock, "sk_protocol")?;
    while let Type::Typedef(t) = &ty {
        ty = btf
            .resolve_chained_type(t)
            .map_err(|e| format!("resolving sock.sk_protocol's type: {e}"))?;
    }
    if !matches!(&ty, Type::Int(i) if i.size() == 2) {
        return Err("sock.sk_protocol is not a 16-bit field in the kernel's BTF".into());
    }
    Ok([
        sk("skc_daddr")?,
        sk("skc_rcv_saddr")?,
        sk("skc_dport")?,
        sk("skc_num")?,
        sk("skc_v6_daddr")?,
        sk("skc_v6_rcv_saddr")?,
        tp("write_seq")?,
        tp("copied_seq")?,
        sk("skc_family")?,
        protocol,
    ])
}

fn struct_named(btf: &Btf, name: &str) -> Result<btf_rs::Struct, String> {
    btf.resolve_types_by_name(name)
        .map_err(|e| format!("no {name} in the kernel's BTF: {e}"))?
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        })
        .ok_or_else(|| format!("no struct {name} in the kernel's BTF"))
}

/// A member's byte offset and type; members of anonymous structs and unions count too.
fn member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Result<(u64, Type), String> {
    for m in &s.members {
        let ty = btf
            .resolve_chained_type(m)
            .map_err(|e| format!("resolving a member's type: {e}"))?;
        let offset = u64::from(m.bit_offset() / 8);
        match btf.resolve_name(m) {
            Ok(n) if n == name => return Ok((offset, ty)),
            Ok(n) if !n.is_empty() => continue,
            _ => {}
        }
        // An anonymous struct or union: look inside.
        if let Type::Struct(inner) | Type::Union(inner) = &ty {
            if let Ok((o, t)) = member(btf, inner, name) {
                return Ok((offset + o, t));
            }
        }
    }
    Err(format!("no member {name} in the kernel's BTF struct"))
}
