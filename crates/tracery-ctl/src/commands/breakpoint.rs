//! `tracery-ctl breakpoint set|list|delete`.

use std::collections::BTreeMap;
use std::time::Duration;

use comfy_table::Table;
use tracery_proto::v1::{self, breakpoint_spec::Target};

use crate::client::{self, Controller, Namespace};
use crate::OutputFormat;

/// Subcommands of `tracery-ctl breakpoint`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Set a breakpoint on a service, an executable or a process; prints where it was
    /// armed and what to run next (`-q`: only its id).
    Set(Box<SetArgs>),
    /// List active breakpoints (with -n, only those on that namespace's Services and pods).
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Delete a breakpoint; its probes detach on every node.
    Delete { id: u64 },
}

/// Arguments of `breakpoint set`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["service", "selector", "exe", "pid"])))]
#[command(group(clap::ArgGroup::new("pods").args(["service", "selector"])))]
pub struct SetArgs {
    /// A service named in tracery.toml, or in a cluster a Kubernetes Service: the pods it
    /// selects in the namespace (-n), now and later.
    #[arg(long)]
    service: Option<String>,
    /// Cluster mode: the pods carrying all these labels in the namespace (-n), now and
    /// later, e.g. app=orders,tier=api.
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_selector)]
    selector: Option<BTreeMap<String, String>>,
    /// Cluster mode: only this container of the pods of --service or --selector.
    #[arg(long, value_name = "NAME", requires = "pods", conflicts_with_all = ["exe", "pid"])]
    container: Option<String>,
    /// Every process running this executable, now and later.
    #[arg(long)]
    exe: Option<std::path::PathBuf>,
    /// One process.
    #[arg(long)]
    pid: Option<u32>,
    /// Where: FILE:LINE or a function name.
    #[arg(long, value_name = "LOCATION")]
    at: String,
    /// Keep only hits where this holds, e.g. `order.qty > 10 && status == "pending"`.
    #[arg(long, value_name = "EXPR")]
    when: Option<String>,
    /// Stop after this many snapshots from all nodes together (default: the controller's,
    /// 100; 1 with --freeze).
    #[arg(long)]
    hits: Option<u32>,
    /// Remove the breakpoint after this long, e.g. 30m or 2h (default: the controller's, 1h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    expire: Option<Duration>,
    /// Kernel-side rate limit, e.g. 10/s or 10 (default: the controller's, 10/s).
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    rate: Option<u32>,
    /// Only hits of the request with this trace id (32 hex digits, or 16 for B3).
    #[arg(long, value_name = "ID", value_parser = tracery_proto::trace::normalize_trace_id)]
    trace_id: Option<String>,
    /// Only hits of requests that carried this HTTP header, e.g. x-tenant=acme.
    #[arg(long, value_name = "NAME=VALUE", value_parser = tracery_proto::trace::parse_header)]
    header: Option<v1::HeaderMatch>,
    /// Freeze the request that hits: hold its messages everywhere and stop its thread
    /// where that is safe, until `tracery-ctl trace resume` or the freeze timeout. Unless
    /// --hits says otherwise, the breakpoint then freezes one request only.
    #[arg(long)]
    freeze: bool,
    /// How long a frozen request stays frozen unless resumed, e.g. 30s or 5m (default 60s,
    /// at most 10m). Needs --freeze.
    #[arg(long, value_name = "DURATION", requires = "freeze", value_parser = parse_freeze_timeout)]
    freeze_timeout: Option<u64>,
    /// Read database records at each hit, as `DATABASE: QUERY`; repeatable. `{path}` binds
    /// a captured variable or field as a parameter, e.g.
    /// `shop: SELECT * FROM orders WHERE customer = {order.customer}` or
    /// `cache: HGETALL cart:{order.customer}`. The database is named on the controller
    /// (`--database NAME=URL`); only reads are accepted.
    #[arg(long = "capture", value_name = "DATABASE: QUERY")]
    captures: Vec<String>,
    /// Print only the breakpoint's id (for scripts).
    #[arg(short, long, conflicts_with = "output")]
    quiet: bool,
    /// `json`: one object with the breakpoint and each agent's arm result.
    #[arg(long, value_enum)]
    output: Option<OutputFormat>,
}

/// A `--freeze-timeout` or `--rate` that does not parse. Clap shows only the message, so
/// the humantime reason is part of it.
#[derive(Debug, thiserror::Error)]
enum ArgError {
    #[error("{text:?} is not a duration like 60s or 5m: {reason}")]
    Duration {
        text: String,
        reason: humantime::DurationError,
    },
    #[error("a freeze timeout must be at least 1s")]
    FreezeTooShort,
    #[error(
        "{text} is longer than the {max}s (10m) a request may stay frozen; \
         resume it earlier with `tracery-ctl trace resume` instead"
    )]
    FreezeTooLong { text: String, max: u64 },
    #[error("{text:?} is not a rate; write it like 10/s")]
    Rate { text: String },
    #[error("--selector is empty; give labels such as app=orders,tier=api")]
    EmptySelector,
    #[error("{item:?} is not KEY=VALUE; write labels like app=orders,tier=api")]
    SelectorItem { item: String },
    #[error(
        "{item:?}: --selector takes only KEY=VALUE labels, all of which a pod must carry \
         (as a Service's selector); !=, == and set expressions are not supported"
    )]
    SelectorOperator { item: String },
    #[error(
        "{key:?} is not a label key: at most 63 letters, digits, '-', '_' or '.', beginning \
         and ending with a letter or digit, after an optional DNS prefix and '/' \
         (app.kubernetes.io/name)"
    )]
    LabelKey { key: String },
    #[error(
        "{value:?} (label {key}) is not a label value: at most 63 letters, digits, '-', '_' \
         or '.', beginning and ending with a letter or digit"
    )]
    LabelValue { key: String, value: String },
    #[error("label {key} is given twice in --selector")]
    DuplicateLabel { key: String },
}

/// `--selector app=orders,tier=api`: labels a pod must all carry. Checked here with the
/// API server's rules, because a selector it would never match arms nothing, silently.
fn parse_selector(s: &str) -> Result<BTreeMap<String, String>, ArgError> {
    if s.trim().is_empty() {
        return Err(ArgError::EmptySelector);
    }
    let mut labels = BTreeMap::new();
    for item in s.split(',').map(str::trim) {
        if item.contains("!=") || item.contains("==") || item.contains('(') || item.starts_with('!')
        {
            return Err(ArgError::SelectorOperator { item: item.into() });
        }
        let Some((key, value)) = item.split_once('=') else {
            return Err(ArgError::SelectorItem { item: item.into() });
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            return Err(ArgError::SelectorItem { item: item.into() });
        }
        if !is_label_key(key) {
            return Err(ArgError::LabelKey { key: key.into() });
        }
        if !is_label_name(value) {
            return Err(ArgError::LabelValue {
                key: key.into(),
                value: value.into(),
            });
        }
        if labels.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(ArgError::DuplicateLabel { key: key.into() });
        }
    }
    Ok(labels)
}

/// A label key: `[prefix/]name`, the prefix a DNS subdomain.
fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => {
            prefix.len() <= 253
                && prefix.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !part.starts_with('-')
                        && !part.ends_with('-')
                })
                && is_label_name(name)
        }
        None => is_label_name(key),
    }
}

/// A label name or value (non-empty here): at most 63 of `[A-Za-z0-9._-]`, alphanumeric at
/// both ends.
fn is_label_name(s: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.len() <= 63
        && alnum(s.chars().next())
        && alnum(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A freeze timeout in whole seconds (rounded up), 1 s to the maximum freeze.
fn parse_freeze_timeout(s: &str) -> Result<u64, ArgError> {
    use tracery_proto::trace::MAX_FREEZE_SECONDS;
    let d = humantime::parse_duration(s).map_err(|reason| ArgError::Duration {
        text: s.to_owned(),
        reason,
    })?;
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs == 0 {
        return Err(ArgError::FreezeTooShort);
    }
    if secs > MAX_FREEZE_SECONDS {
        return Err(ArgError::FreezeTooLong {
            text: s.to_owned(),
            max: MAX_FREEZE_SECONDS,
        });
    }
    Ok(secs)
}

fn parse_rate(s: &str) -> Result<u32, ArgError> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    n.trim()
        .parse()
        .map_err(|_| ArgError::Rate { text: s.to_owned() })
}

/// Runs `breakpoint`.
pub async fn run(
    controller: &Controller,
    namespace: &Namespace,
    cmd: Command,
) -> anyhow::Result<()> {
    match cmd {
        Command::Set(a) => set(controller, namespace, *a).await,
        Command::List { output } => list(controller, namespace, output).await,
        Command::Delete { id } => {
            let mut c = client::connect(controller).await?;
            c.delete_breakpoint(v1::DeleteBreakpointRequest { id })
                .await
                .map_err(client::status_error)?;
            println!("deleted breakpoint {id}");
            Ok(())
        }
    }
}

async fn set(controller: &Controller, namespace: &Namespace, a: SetArgs) -> anyhow::Result<()> {
    // Check the condition here, where the caret can point into what the user typed.
    if let Some(w) = &a.when {
        tracery_model::condition::parse(w)?;
    }
    let target = match (a.service, a.selector, a.exe, a.pid) {
        (Some(s), ..) => Target::Service(s),
        (_, Some(labels), ..) => Target::Selector(v1::LabelSelector {
            match_labels: labels.into_iter().collect(),
        }),
        (_, _, Some(e), _) => {
            let e = std::fs::canonicalize(&e)
                .map_err(|err| anyhow::anyhow!("--exe {}: {err}", e.display()))?;
            Target::Exe(e.to_string_lossy().into_owned())
        }
        (.., Some(p)) => Target::Pid(p),
        _ => unreachable!("clap requires one target"),
    };
    let namespace = target_namespace(&target, namespace)?;
    let spec = v1::BreakpointSpec {
        target: Some(target),
        location: a.at,
        when: a.when,
        hit_limit: a.hits,
        expire_seconds: a.expire.map(|d| d.as_secs().max(1)),
        rate_per_second: a.rate,
        trace_id: a.trace_id,
        header: a.header,
        freeze: a.freeze,
        freeze_timeout_seconds: a.freeze_timeout,
        captures: a.captures,
        namespace,
        container: a.container.unwrap_or_default(),
    };
    let mut c = client::connect(controller).await?;
    let set = c
        .set_breakpoint(spec)
        .await
        .map_err(client::status_error)?
        .into_inner();
    let bp = set
        .breakpoint
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the controller set a breakpoint but did not return it; check that CLI and controller run the same Tracery version"))?;
    if a.quiet {
        println!("{}", bp.id);
    } else if a.output == Some(OutputFormat::Json) {
        println!("{}", set_json(&bp, &set));
    } else {
        print!("{}", set_text(&bp, &set));
    }
    Ok(())
}

/// The namespace sent with `target`: Services and selectors live in one; processes
/// (`--exe`, `--pid`) do not, so an explicit `-n` with them is a mistake worth saying.
fn target_namespace(target: &Target, namespace: &Namespace) -> anyhow::Result<String> {
    match target {
        Target::Service(_) | Target::Selector(_) => Ok(namespace.name.clone()),
        Target::Exe(_) | Target::Pid(_) if namespace.explicit => Err(anyhow::anyhow!(
            "-n/--namespace applies to --service and --selector targets; --exe and --pid \
             name processes on the nodes, in no namespace: leave -n out"
        )),
        Target::Exe(_) | Target::Pid(_) => Ok(String::new()),
    }
}

/// What `set` did, for people: where it is armed, what failed, and what to run next.
fn set_text(bp: &v1::Breakpoint, set: &v1::SetBreakpointResponse) -> String {
    use std::fmt::Write as _;
    let j = breakpoint_json(bp);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "breakpoint {} set at {} on {}",
        bp.id,
        j["location"].as_str().unwrap_or(""),
        target_text(&j, ", ")
    );
    // (node, agent) -> armed processes, failures, and whether it has none yet.
    let mut nodes: std::collections::BTreeMap<(String, String), NodeArms> = Default::default();
    for r in &set.arm_results {
        let Some(result) = &r.result else { continue };
        let node = nodes
            .entry((r.node.clone(), r.agent_id.clone()))
            .or_default();
        match &result.result {
            Some(v1::arm_result::Result::Probes(0)) => node.waiting = true,
            Some(v1::arm_result::Result::Probes(n)) if result.pid == 0 => node.file_sites = *n,
            Some(v1::arm_result::Result::Probes(n)) => node.armed.push((result.pid, *n)),
            Some(v1::arm_result::Result::Error(e)) => node.failed.push((result.pid, e.clone())),
            None => {}
        }
    }
    for ((node, agent), arms) in &nodes {
        let name = if node.is_empty() { agent } else { node };
        let sites = |n: u32| format!("{n} site{}", if n == 1 { "" } else { "s" });
        if arms.file_sites > 0 {
            let _ = writeln!(
                out,
                "  armed on node {name} in the executable file ({}): every process of the \
                 target that runs it is caught from its first instruction, including ones that \
                 start later",
                sites(arms.file_sites)
            );
            if !arms.armed.is_empty() {
                let pids: Vec<String> = arms.armed.iter().map(|(pid, _)| pid.to_string()).collect();
                let _ = writeln!(out, "    running there now: pid {}", pids.join(", pid "));
            }
        } else if !arms.armed.is_empty() {
            let procs: Vec<String> = arms
                .armed
                .iter()
                .map(|(pid, n)| format!("pid {pid} ({})", sites(*n)))
                .collect();
            let _ = writeln!(out, "  armed on node {name}: {}", procs.join(", "));
        } else if arms.waiting && arms.failed.is_empty() {
            let _ = writeln!(
                out,
                "  node {name}: no process of the target runs there yet; it arms when one starts"
            );
        }
        for (pid, e) in &arms.failed {
            let _ = writeln!(out, "  not armed on node {name}, pid {pid}: {e}");
        }
    }
    for agent in &set.unanswered_agents {
        let _ = writeln!(
            out,
            "  agent {agent} has not answered yet; `tracery-ctl status` shows when it arms"
        );
    }
    if set.arm_results.is_empty() && set.unanswered_agents.is_empty() {
        let _ = writeln!(
            out,
            "  no agent is connected; it arms when one connects (`tracery-ctl status`)"
        );
    }
    let id = bp.id;
    if j["freeze"] == true {
        let _ = writeln!(
            out,
            "next: send the request, then `tracery-ctl trace list` shows it frozen; \
             `tracery-ctl trace resume TRACE` lets it go"
        );
    } else {
        let _ = writeln!(
            out,
            "next: make the code run, then `tracery-ctl snapshot list --breakpoint {id}` \
             (or `tracery-ctl snapshot watch --breakpoint {id}`)"
        );
    }
    out
}

/// The target of [`breakpoint_json`] for people: `service shop/orders`, then
/// `container orders` after `sep` when one is set.
fn target_text(j: &serde_json::Value, sep: &str) -> String {
    let target = j["target"].as_str().unwrap_or("");
    match j["container"].as_str() {
        Some(c) => format!("{target}{sep}container {c}"),
        None => target.to_owned(),
    }
}

/// One node's arm results.
#[derive(Default)]
struct NodeArms {
    /// (pid, probe sites) armed.
    armed: Vec<(u32, u32)>,
    /// Probe sites bound to the executable file, for all its processes.
    file_sites: u32,
    /// (pid, why) that failed.
    failed: Vec<(u32, String)>,
    /// The agent has no process of the target yet.
    waiting: bool,
}

/// `set --output json`: the breakpoint (as `list --output json`) and each arm result.
fn set_json(bp: &v1::Breakpoint, set: &v1::SetBreakpointResponse) -> serde_json::Value {
    let mut j = breakpoint_json(bp);
    let arms: Vec<serde_json::Value> = set
        .arm_results
        .iter()
        .filter_map(|r| {
            let result = r.result.as_ref()?;
            let mut o = serde_json::json!({
                "agent_id": r.agent_id,
                "node": r.node,
                "pid": result.pid,
            });
            match &result.result {
                Some(v1::arm_result::Result::Probes(n)) => o["probes"] = serde_json::json!(n),
                Some(v1::arm_result::Result::Error(e)) => o["error"] = serde_json::json!(e),
                None => {}
            }
            Some(o)
        })
        .collect();
    j["armed"] = serde_json::json!(arms);
    j["unanswered_agents"] = serde_json::json!(set.unanswered_agents);
    j
}

async fn list(
    controller: &Controller,
    namespace: &Namespace,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let mut c = client::connect(controller).await?;
    let mut bps = c
        .list_breakpoints(v1::ListBreakpointsRequest {})
        .await
        .map_err(client::status_error)?
        .into_inner()
        .breakpoints;
    if namespace.explicit {
        bps.retain(|b| in_namespace(b, &namespace.name));
    }
    match output {
        OutputFormat::Json => {
            for b in &bps {
                println!("{}", breakpoint_json(b));
            }
        }
        OutputFormat::Text => {
            let mut t = Table::new();
            t.set_header([
                "id", "target", "at", "when", "scope", "freeze", "hits", "drops", "expires",
            ]);
            for b in &bps {
                let j = breakpoint_json(b);
                t.add_row([
                    j["id"].to_string(),
                    target_text(&j, "\n"),
                    j["location"].as_str().unwrap_or("").to_string(),
                    j["when"].as_str().unwrap_or("").to_string(),
                    scope_text(&j),
                    match j["freeze_timeout_seconds"].as_u64() {
                        Some(s) if j["freeze"] == true => format!("yes, {s}s"),
                        _ => "no".to_string(),
                    },
                    format!("{}/{}", j["hits"], j["hit_limit"]),
                    j["drops"].to_string(),
                    j["expires"].as_str().unwrap_or("").to_string(),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

/// Whether `b` targets Services or pods in namespace `ns` (an empty namespace is
/// `default`, as the controller reads it).
fn in_namespace(b: &v1::Breakpoint, ns: &str) -> bool {
    let Some(spec) = &b.spec else { return false };
    let of = |n: &str| if n.is_empty() { "default" } else { n }.to_owned();
    matches!(spec.target, Some(Target::Service(_) | Target::Selector(_)))
        && of(&spec.namespace) == of(ns)
}

/// `trace T`, `header N=V`, both on two lines, or `any request`.
fn scope_text(j: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(t) = j["trace_id"].as_str() {
        parts.push(format!("trace {t}"));
    }
    if let (Some(n), Some(v)) = (j["header"]["name"].as_str(), j["header"]["value"].as_str()) {
        parts.push(format!("header {n}={v}"));
    }
    if parts.is_empty() {
        "any request".into()
    } else {
        parts.join("\n")
    }
}

/// A breakpoint as one JSON object (`breakpoint list --output json`).
pub fn breakpoint_json(b: &v1::Breakpoint) -> serde_json::Value {
    let spec = b.spec.clone().unwrap_or_default();
    // `shop/orders`; a standalone controller keeps no namespace.
    let in_ns = |name: &str| match spec.namespace.as_str() {
        "" => name.to_owned(),
        ns => format!("{ns}/{name}"),
    };
    let mut selector = None;
    let (target, namespaced) = match &spec.target {
        Some(Target::Service(s)) => (format!("service {}", in_ns(s)), true),
        Some(Target::Exe(e)) => (format!("exe {e}"), false),
        Some(Target::Pid(p)) => (format!("pid {p}"), false),
        Some(Target::Selector(s)) => {
            // Sorted: the wire map has no order.
            let labels: BTreeMap<&String, &String> = s.match_labels.iter().collect();
            let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            selector = Some(serde_json::json!(labels));
            (format!("selector {}", in_ns(&text.join(","))), true)
        }
        None => (String::new(), false),
    };
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let time = |t: &Option<prost_types::Timestamp>| {
        t.and_then(|t| std::time::SystemTime::try_from(t).ok())
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
    };
    serde_json::json!({
        "id": b.id,
        "target": target,
        "namespace": if namespaced { nonempty(&spec.namespace) } else { None },
        "selector": selector,
        "container": nonempty(&spec.container),
        "location": spec.location,
        "when": spec.when,
        "hit_limit": spec.hit_limit,
        "expire_seconds": spec.expire_seconds,
        "rate_per_second": spec.rate_per_second,
        "trace_id": spec.trace_id,
        "header": spec.header.map(|h| serde_json::json!({"name": h.name, "value": h.value})),
        "freeze": spec.freeze,
        "freeze_timeout_seconds": spec.freeze_timeout_seconds,
        "hits": b.hits,
        "drops": b.drops,
        "created": time(&b.created),
        "expires": time(&b.expires),
    })
}

#[cfg(test)]
mod tests;
