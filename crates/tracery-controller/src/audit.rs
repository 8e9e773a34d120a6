//! The audit log as the API writes it: one entry per set, freeze, delete, resume or eval,
//! after the call ended (refused or failed ones included), and `ListAudit`.
//!
//! The entry is written once the outcome is known, since the store only appends. A store
//! that cannot take it is logged as an error; the call's answer is unchanged.

use std::collections::BTreeSet;
use std::time::SystemTime;

use tonic::Status;
use tracery_proto::v1::{self, breakpoint_spec::Target};
use tracery_store::NewAuditEntry;

use crate::auth::Caller;
use crate::registry::{error_chain, store_status, Registry};
use crate::spec;

/// `ListAudit`'s page when the request says 0, and the most it returns.
const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

/// Appends the entry for one call that ended with `result`.
pub(crate) async fn record<T>(
    registry: &Registry,
    caller: Result<&Caller, &str>,
    action: &str,
    target: &str,
    namespace: &str,
    result: &Result<T, Status>,
) {
    let (who, peer) = match caller {
        Ok(c) => (c.who.as_str(), c.peer.as_str()),
        Err(peer) => ("unauthenticated", peer),
    };
    let outcome = match result {
        Ok(_) => "ok".to_owned(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    };
    let entry = NewAuditEntry {
        time: SystemTime::now(),
        who,
        action,
        target,
        namespace,
        peer,
        result: &outcome,
    };
    if let Err(e) = registry.store.append_audit(&entry).await {
        tracing::error!(error = %error_chain(&e), ?entry, "cannot write the audit log");
    }
}

/// The entries `ListAudit` asked for, oldest first.
pub(crate) async fn list(
    registry: &Registry,
    request: v1::ListAuditRequest,
) -> Result<v1::ListAuditResponse, Status> {
    let since = request
        .since
        .map(|t| {
            SystemTime::try_from(t)
                .map_err(|_| Status::invalid_argument("`since` is not a valid time"))
        })
        .transpose()?;
    let limit = match request.limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let rows = registry
        .store
        .list_audit(since, limit)
        .await
        .map_err(store_status)?;
    let entries = rows
        .into_iter()
        .map(|r| v1::AuditEntry {
            id: u64::try_from(r.id).unwrap_or_default(),
            time: Some(r.time.into()),
            who: r.who,
            action: r.action,
            target: r.target,
            namespace: r.namespace,
            peer: r.peer,
            result: r.result,
        })
        .collect();
    Ok(v1::ListAuditResponse { entries })
}

/// What a breakpoint spec targets, for the log: `exe /srv/orders at main.go:42`.
pub(crate) fn describe_spec(spec: &v1::BreakpointSpec) -> String {
    let target = match &spec.target {
        Some(Target::Service(s)) => format!("service {s}"),
        Some(Target::Exe(e)) => format!("exe {e}"),
        Some(Target::Pid(p)) => format!("pid {p}"),
        Some(Target::Selector(s)) => {
            let labels: Vec<String> = s
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("pods {}", labels.join(","))
        }
        None => "no target".to_owned(),
    };
    format!("{target} at {}", spec.location)
}

/// The namespace a new breakpoint is checked in: its own in cluster mode (`default` when
/// unset), none outside it.
pub(crate) fn spec_namespace(registry: &Registry, spec: &v1::BreakpointSpec) -> String {
    if registry.opts.kubernetes.is_none() {
        return String::new();
    }
    match spec.namespace.trim() {
        "" => "default".to_owned(),
        ns => ns.to_owned(),
    }
}

/// The namespace of stored breakpoint `id` (deleted ones too); empty when unknown.
pub(crate) async fn breakpoint_namespace(registry: &Registry, id: u64) -> String {
    namespaces_of(registry, &[id])
        .await
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// The namespaces of the breakpoints that froze or captured trace `id`; empty when none
/// is known (the caller is then checked cluster-wide).
pub(crate) async fn trace_namespaces(registry: &Registry, id: &str) -> BTreeSet<String> {
    let Ok(trace) = crate::trace_api::get(registry, id).await else {
        return BTreeSet::new();
    };
    let ids: Vec<u64> = trace
        .threads
        .iter()
        .filter_map(|t| t.thread.as_ref().map(|f| f.breakpoint_id))
        .chain(trace.snapshots.iter().map(|s| s.breakpoint_id))
        .collect();
    namespaces_of(registry, &ids).await
}

async fn namespaces_of(registry: &Registry, ids: &[u64]) -> BTreeSet<String> {
    let Ok(all) = registry.store.list_breakpoints(true).await else {
        return BTreeSet::new();
    };
    all.iter()
        .filter(|r| u64::try_from(r.id.0).is_ok_and(|id| ids.contains(&id)))
        .filter_map(|r| spec::breakpoint_proto(r).ok())
        .filter_map(|bp| bp.spec.map(|s| s.namespace))
        .filter(|ns| !ns.is_empty())
        .collect()
}
