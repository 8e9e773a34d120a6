//! `trace eval ID EXPR`: reading a variable path on a thread stopped at a breakpoint.
//!
//! The same machinery as a breakpoint hit, run in user space against the live thread:
//! the fetch plan for the variables in scope at the stopped PC is compiled with generous
//! [`EVAL_LIMITS`], its fetch ops run in user space exactly as the kernel runs them
//! ([`tracery_dwarf::emulate`]), reading memory with `process_vm_readv` and the thread's
//! registers, and the bytes go through the hit decoder. The path (`order.ship.city`,
//! `o->note`, `*p`, `items[2]`) is then walked in the decoded value.

use serde_json::Value as Json;
use tracery_common::{regs::NUM_REGS, HitHeader, DATA_CAP, MAX_COPY};
use tracery_dwarf::{
    emulate::{self, Memory},
    CaptureLimits, Executable, LoadBias, ProcAddr, Value, Variable,
};

use crate::{freeze::suspend::UserRegs, freeze::EvalError, process::TargetProcess, sys};

/// Most bytes of one string `eval` shows: strings cut at a fetch op's cap are read again
/// from their address up to this length.
pub const MAX_EVAL_STRING: usize = 1 << 20;

/// Caps for compiling the evaluation plan. Every variable in scope shares one data area of
/// [`DATA_CAP`] bytes, so strings are captured short and those cut at the cap are read
/// again whole from their address ([`MAX_EVAL_STRING`]); pointers are followed deeper than
/// a hit follows them.
pub const EVAL_LIMITS: CaptureLimits = CaptureLimits {
    max_string: 511,
    max_elements: 256,
    max_depth: 8,
    stack_bytes: 0,
};

/// Evaluates `expr` on the thread of `pid` stopped with registers `regs`. Loads the
/// executable for this call alone (tens of milliseconds for a large binary); see
/// [`eval_in`] to reuse a loaded one, as the agent does.
pub fn eval(pid: u32, regs: &UserRegs, expr: &str) -> Result<Json, EvalError> {
    let target = TargetProcess::open(pid).map_err(|e| EvalError::Read(e.to_string()))?;
    let exe = Executable::open(target.exe_path()).map_err(|e| EvalError::Read(e.to_string()))?;
    let bias = target
        .load_bias(exe.binary())
        .map_err(|e| EvalError::Read(e.to_string()))?;
    eval_in(&exe, bias, pid, regs, expr)
}

/// Evaluates `expr` with an already loaded executable mapped at `bias` in `pid`. The plan
/// for the stopped pc is compiled once per executable and pc.
pub fn eval_in(
    exe: &Executable,
    bias: LoadBias,
    pid: u32,
    regs: &UserRegs,
    expr: &str,
) -> Result<Json, EvalError> {
    let path = parse_path(expr).map_err(EvalError::Expression)?;
    let (vars, cut) = capture(exe, bias, pid, regs)?;
    let root = path.name.as_str();
    // The probed function's own variable shadows an inlined callee's (as in decode).
    let Some(var) = vars
        .iter()
        .find(|v| v.name == root && v.frame.is_none())
        .or_else(|| vars.iter().find(|v| v.name == root))
    else {
        let mut names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        names.dedup();
        return Err(EvalError::Expression(format!(
            "no variable {root:?} at this point; visible: {}",
            names.join(", ")
        )));
    };
    let mut value = walk(&var.value, &path)?.clone();
    expand_strings(&mut value, &cut, pid, 0);
    Ok(value.to_json())
}

/// Every variable in scope at the stopped PC, decoded from live memory (strings cut at
/// [`MAX_COPY`] bytes).
pub fn variables(
    exe: &Executable,
    bias: LoadBias,
    pid: u32,
    regs: &UserRegs,
) -> Result<Vec<Variable>, EvalError> {
    Ok(capture(exe, bias, pid, regs)?.0)
}

/// A string an op cut at its cap: what it read, and where the whole string is.
struct Cut {
    bytes: Vec<u8>,
    addr: u64,
    /// The full length in bytes when known (slices); `None` for NUL-terminated strings.
    len: Option<u64>,
}

fn capture(
    exe: &Executable,
    bias: LoadBias,
    pid: u32,
    regs: &UserRegs,
) -> Result<(Vec<Variable>, Vec<Cut>), EvalError> {
    let pc = bias.to_obj(ProcAddr(regs.pc()));
    let plan = exe
        .plan(pc, &EVAL_LIMITS)
        .map_err(|e| EvalError::Expression(e.to_string()))?;
    let config = plan.relocate(bias);
    let regs = regs.pt_regs();
    let mut header = header(pid, &regs);
    let mut data = vec![0u8; DATA_CAP + MAX_COPY];
    let runs = emulate::run_ops(&config, &mut header, &mut data, &LiveMemory(pid));
    let cuts = runs
        .iter()
        .zip(&config.ops)
        .filter(|(r, _)| r.full_len.is_some() || r.cstr_cut)
        .map(|(r, op)| {
            let out = op.out as usize;
            Cut {
                bytes: data[out..out + r.len].to_vec(),
                addr: r.addr,
                len: r.full_len,
            }
        })
        .collect();
    let data_len = ((config.data_size as usize + 7) & !7).min(DATA_CAP);
    header.data_len = data_len as u32;
    let mut vars = exe.decode(&plan, &header, &data[..data_len]);
    // What `trace eval` returns leaves the node: secret names are hidden like a hit's.
    tracery_model::redact::active().variables(&mut vars);
    Ok((vars, cuts))
}

/// Replaces strings cut at an op's cap with the whole string read from its address (up
/// to [`MAX_EVAL_STRING`]). A cut string is recognised by its captured bytes.
fn expand_strings(v: &mut Value, cuts: &[Cut], pid: u32, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Str {
            text,
            truncated: true,
        } => {
            let Some(cut) = cuts
                .iter()
                .find(|c| String::from_utf8_lossy(&c.bytes) == text.as_str())
            else {
                return;
            };
            let (bytes, more) = match cut.len {
                Some(len) => {
                    let want = (len as usize).min(MAX_EVAL_STRING);
                    let mut buf = vec![0u8; want];
                    match sys::process_vm_read(pid, cut.addr, &mut buf) {
                        Ok(n) if n == want => (buf, (len as usize) > want),
                        _ => return,
                    }
                }
                None => {
                    let mut buf = vec![0u8; MAX_EVAL_STRING + 1];
                    match emulate::read_cstr(&LiveMemory(pid), cut.addr, &mut buf) {
                        Some(n) => {
                            buf.truncate(n);
                            (buf, n == MAX_EVAL_STRING)
                        }
                        None => return,
                    }
                }
            };
            *v = Value::Str {
                text: String::from_utf8_lossy(&bytes).into_owned(),
                truncated: more,
            };
        }
        Value::Struct { fields, .. } | Value::Enum { fields, .. } => {
            for (_, f) in fields {
                expand_strings(f, cuts, pid, depth + 1);
            }
        }
        Value::Array { items, .. } => {
            for i in items {
                expand_strings(i, cuts, pid, depth + 1);
            }
        }
        Value::Pointer {
            target: Some(t), ..
        }
        | Value::Interface { value: Some(t), .. } => expand_strings(t, cuts, pid, depth + 1),
        _ => {}
    }
}

/// A header as the kernel would write it for this stop: registers, no results yet.
fn header(pid: u32, regs: &[u64; NUM_REGS]) -> HitHeader {
    // All-zero bytes are a valid header (a plain integer record).
    let mut h: HitHeader =
        sys::read_record(&[0u8; HitHeader::SIZE]).expect("a header-sized buffer");
    h.ktime_ns = sys::monotonic_ns();
    h.pid = pid;
    h.regs = *regs;
    h
}

/// The stopped process's memory: all of a read or nothing, like `bpf_probe_read_user`.
struct LiveMemory(u32);

impl Memory for LiveMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        matches!(sys::process_vm_read(self.0, addr, buf), Ok(n) if n == buf.len())
    }
}

/// A variable path: `*` prefixes, a variable name, then fields and indices.
#[derive(Debug, PartialEq, Eq)]
struct Path {
    /// Leading `*`s: pointers followed after the rest of the path.
    derefs: usize,
    name: String,
    rest: Vec<Step>,
}

/// One step of a [`Path`].
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// `.field` or `->field` (pointers are followed either way).
    Field(String),
    /// `[N]`.
    Index(u64),
}

/// Parses `NAME`, `NAME.field`, `NAME->field`, `*NAME`, `NAME[N]` and their combinations.
fn parse_path(expr: &str) -> Result<Path, String> {
    let s = expr.trim();
    let derefs = s
        .chars()
        .take_while(|c| *c == '*' || c.is_whitespace())
        .filter(|c| *c == '*')
        .count();
    let s = s.trim_start_matches(|c: char| c == '*' || c.is_whitespace());
    let ident_end = |s: &str| {
        s.find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let end = ident_end(s);
    if end == 0 {
        return Err(format!(
            "{expr:?} is not a variable path; write NAME, NAME.field, NAME->field, *NAME or NAME[N]"
        ));
    }
    let name = s[..end].to_string();
    let mut rest = Vec::new();
    let mut s = &s[end..];
    while !s.is_empty() {
        s = s.trim_start();
        let tail = if let Some(t) = s.strip_prefix("->") {
            t
        } else if let Some(t) = s.strip_prefix('.') {
            t
        } else if let Some(t) = s.strip_prefix('[') {
            let close = t
                .find(']')
                .ok_or_else(|| format!("missing `]` in {expr:?}"))?;
            let n = t[..close].trim();
            let i = n
                .parse()
                .map_err(|_| format!("index {n:?} in {expr:?} is not a non-negative integer"))?;
            rest.push(Step::Index(i));
            s = &t[close + 1..];
            continue;
        } else if s.is_empty() {
            break;
        } else {
            return Err(format!("unexpected {s:?} in {expr:?}"));
        };
        let t = tail.trim_start();
        let end = ident_end(t);
        if end == 0 {
            return Err(format!(
                "expected a field name after {:?} in {expr:?}",
                &s[..s.len() - tail.len()]
            ));
        }
        rest.push(Step::Field(t[..end].to_string()));
        s = &t[end..];
    }
    Ok(Path { derefs, name, rest })
}

/// The value a pointer leads to, or why it cannot be followed.
fn deref<'v>(v: &'v Value, what: &str) -> Result<&'v Value, EvalError> {
    match v {
        Value::Pointer {
            target: Some(t), ..
        } => Ok(t),
        Value::Pointer {
            address,
            target: None,
        } => Err(EvalError::Read(format!(
            "{what} points to {address:#x}, which was not read (void pointer or depth cap)"
        ))),
        Value::Null => Err(EvalError::Read(format!("{what} is a null pointer"))),
        Value::Interface {
            value: Some(inner), ..
        } => Ok(inner),
        Value::Unavailable { reason } => Err(EvalError::Read(format!("{what}: {reason}"))),
        Value::OptimizedOut => Err(EvalError::Read(format!("{what} is optimized out here"))),
        _ => Err(EvalError::Expression(format!("{what} is not a pointer"))),
    }
}

fn walk<'v>(root: &'v Value, path: &Path) -> Result<&'v Value, EvalError> {
    let mut what = path.name.clone();
    let mut v = root;
    for step in &path.rest {
        // Fields and indices look through pointers, as `->` does in C.
        while matches!(v, Value::Pointer { .. } | Value::Interface { .. }) {
            v = deref(v, &what)?;
        }
        v = match (step, v) {
            (Step::Field(f), Value::Struct { fields, .. } | Value::Enum { fields, .. }) => {
                match fields.iter().find(|(n, _)| n == f) {
                    Some((_, fv)) => fv,
                    None => {
                        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
                        return Err(EvalError::Expression(format!(
                            "{what} has no field {f:?}; its fields: {}",
                            names.join(", ")
                        )));
                    }
                }
            }
            (Step::Index(i), Value::Array { items, total }) => match items.get(*i as usize) {
                Some(item) => item,
                None => {
                    let len = total.unwrap_or(items.len() as u64);
                    return Err(if *i < len {
                        EvalError::Read(format!(
                            "{what}[{i}] is past the {} elements read",
                            items.len()
                        ))
                    } else {
                        EvalError::Expression(format!(
                            "{what}[{i}] is out of bounds (length {len})"
                        ))
                    });
                }
            },
            (Step::Field(f), Value::Unavailable { reason }) => {
                return Err(EvalError::Read(format!(
                    "{what}.{f}: {what} is unavailable: {reason}"
                )))
            }
            (Step::Field(f), _) => {
                return Err(EvalError::Expression(format!(
                    "{what} is not a struct; it has no field {f:?}"
                )))
            }
            (Step::Index(i), Value::Unavailable { reason }) => {
                return Err(EvalError::Read(format!(
                    "{what}[{i}]: {what} is unavailable: {reason}"
                )))
            }
            (Step::Index(i), _) => {
                return Err(EvalError::Expression(format!(
                    "{what} is not an array; cannot take [{i}]"
                )))
            }
        };
        what = match step {
            Step::Field(f) => format!("{what}.{f}"),
            Step::Index(i) => format!("{what}[{i}]"),
        };
    }
    for _ in 0..path.derefs {
        v = deref(v, &what)?;
        what = format!("*{what}");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        let p = parse_path("order->ship.city").unwrap();
        assert_eq!(p.name, "order");
        assert_eq!(
            p.rest,
            vec![Step::Field("ship".into()), Step::Field("city".into())]
        );
        let p = parse_path(" *p ").unwrap();
        assert_eq!(p.derefs, 1);
        assert!(p.rest.is_empty());
        let p = parse_path("o.items[2]").unwrap();
        assert_eq!(p.rest, vec![Step::Field("items".into()), Step::Index(2)]);
        assert!(parse_path("1+2").is_err());
        assert!(parse_path("a[x]").is_err());
        assert!(parse_path("a.").is_err());
        assert!(parse_path("a b").is_err());
    }

    #[test]
    fn walks_through_pointers() {
        let order = Value::Pointer {
            address: 0x1000,
            target: Some(Box::new(Value::Struct {
                name: "order".into(),
                fields: vec![
                    ("id".into(), Value::Int(42)),
                    (
                        "items".into(),
                        Value::Array {
                            items: vec![Value::Int(1), Value::Int(2), Value::Int(3)],
                            total: None,
                        },
                    ),
                ],
            })),
        };
        let p = parse_path("o->id").unwrap();
        assert_eq!(walk(&order, &p).unwrap(), &Value::Int(42));
        let p = parse_path("o.items[2]").unwrap();
        assert_eq!(walk(&order, &p).unwrap(), &Value::Int(3));
        assert!(matches!(
            walk(&order, &parse_path("o.nope").unwrap()),
            Err(EvalError::Expression(m)) if m.contains("id, items")
        ));
        assert!(matches!(
            walk(&order, &parse_path("o.items[9]").unwrap()),
            Err(EvalError::Expression(_))
        ));
        assert!(matches!(
            walk(&order, &parse_path("*o").unwrap()),
            Ok(Value::Struct { .. })
        ));
    }
}
