//! Frozen traces as agents report them: which threads hold each trace on which agent, the
//! messages held for it (see [`Holds`]), and the last release of each trace, so a second
//! `trace resume` can say what happened.
//!
//! Agents are the source of truth. A reconnecting agent's threads are forgotten and it
//! reports its frozen threads again; a thread whose deadline passed long ago without a
//! report (the agent died) is taken as released by its deadline, as the kernel side does.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tracery_proto::v1;

use crate::export::{self, Exporter};
use crate::holds::{HeldOn, Holds, DEADLINE_GRACE};

/// A frozen thread and the agent that reported it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Held {
    pub agent_id: String,
    pub node: String,
    pub thread: v1::FrozenThread,
}

/// A frozen trace: a frozen thread or a held message, on some node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Frozen {
    pub trace_id: String,
    pub threads: Vec<Held>,
    pub messages: Vec<HeldOn>,
    pub hold_deadline: Option<SystemTime>,
}

/// The frozen threads and held messages of every trace, and each trace's last release.
#[derive(Default, Debug)]
pub(crate) struct Traces {
    frozen: BTreeMap<String, Vec<Held>>,
    last_release: BTreeMap<String, v1::HeldRelease>,
    /// Held messages and hold deadlines.
    pub holds: Holds,
    /// Gets each freeze's start and end (OTLP export).
    export: Exporter,
}

impl Traces {
    /// No frozen traces yet; freezes and releases are exported through `export`.
    pub fn exporting(export: Exporter) -> Traces {
        Traces {
            export,
            ..Traces::default()
        }
    }

    /// Records a frozen thread; a thread reported again replaces its earlier report.
    /// Returns the trace's hold deadline, which every agent must hold its messages until.
    pub fn frozen(
        &mut self,
        agent_id: &str,
        node: &str,
        thread: v1::FrozenThread,
    ) -> Option<SystemTime> {
        let deadline = thread
            .deadline
            .and_then(|d| SystemTime::try_from(d).ok())
            .map(|d| self.holds.hold_until(&thread.trace_id, d));
        let held = self.frozen.entry(thread.trace_id.clone()).or_default();
        if held.is_empty() {
            self.export
                .send(export::Item::FreezeStarted(export::FreezeStart {
                    trace_id: thread.trace_id.clone(),
                    at: thread
                        .frozen_at
                        .and_then(|t| SystemTime::try_from(t).ok())
                        .unwrap_or_else(SystemTime::now),
                    breakpoint_id: thread.breakpoint_id,
                    pid: thread.pid,
                    tid: thread.tid,
                    location: thread.location.clone(),
                    deadline,
                    held_messages: self.holds.messages(&thread.trace_id).len(),
                }));
        }
        held.retain(|h| !same_thread(h, agent_id, &thread));
        held.push(Held {
            agent_id: agent_id.to_owned(),
            node: node.to_owned(),
            thread,
        });
        deadline
    }

    /// Records a release: the thread is no longer held and this is the trace's latest
    /// release. A release of a thread not known here (reported before the controller
    /// started) still counts as the latest release.
    pub fn released(&mut self, agent_id: &str, node: &str, release: v1::Release) {
        let Some(thread) = &release.thread else {
            return;
        };
        let trace = thread.trace_id.clone();
        if let Some(held) = self.frozen.get_mut(&trace) {
            held.retain(|h| !same_thread(h, agent_id, thread));
            if held.is_empty() {
                self.frozen.remove(&trace);
                let reason = v1::ReleaseReason::try_from(release.reason).unwrap_or_default();
                self.export
                    .send(export::Item::FreezeEnded(export::FreezeEnd {
                        trace_id: trace.clone(),
                        at: release
                            .at
                            .and_then(|t| SystemTime::try_from(t).ok())
                            .unwrap_or_else(SystemTime::now),
                        reason: reason.describe().to_owned(),
                        held_messages: self.holds.messages(&trace).len(),
                    }));
            }
        }
        let newer = self
            .last_release
            .get(&trace)
            .and_then(|r| r.release.as_ref())
            .and_then(|r| r.at)
            .is_none_or(|last| {
                release
                    .at
                    .is_some_and(|at| timestamp_key(&at) >= timestamp_key(&last))
            });
        if newer {
            self.last_release.insert(
                trace,
                v1::HeldRelease {
                    agent_id: agent_id.to_owned(),
                    node: node.to_owned(),
                    release: Some(release),
                },
            );
        }
    }

    /// Forgets what `agent_id` reported: it reports its frozen threads and held messages
    /// again on connect.
    pub fn forget_agent(&mut self, agent_id: &str) {
        self.frozen.retain(|_, held| {
            held.retain(|h| h.agent_id != agent_id);
            !held.is_empty()
        });
        self.holds.forget_agent(agent_id);
    }

    /// Threads more than [`DEADLINE_GRACE`] past their deadline become releases by
    /// deadline, and holds that long past their deadline end. Returns the traces whose
    /// hold ended so: every agent is told to let them go, in case one still holds them.
    pub fn expire(&mut self, now: SystemTime) -> Vec<String> {
        let mut gone = Vec::new();
        for held in self.frozen.values_mut() {
            held.retain(|h| {
                let deadline = h.thread.deadline.and_then(|d| SystemTime::try_from(d).ok());
                let over = deadline.is_some_and(|d| d + DEADLINE_GRACE < now);
                if over {
                    gone.push((h.clone(), deadline));
                }
                !over
            });
        }
        self.frozen.retain(|_, held| !held.is_empty());
        for (h, deadline) in gone {
            let release = v1::Release {
                thread: Some(h.thread),
                reason: v1::ReleaseReason::Deadline.into(),
                at: deadline.map(Into::into),
            };
            self.released(&h.agent_id, &h.node, release);
        }
        self.holds.expire(now)
    }

    /// The frozen threads of one trace.
    pub fn threads(&self, trace_id: &str) -> Vec<Held> {
        self.frozen.get(trace_id).cloned().unwrap_or_default()
    }

    /// Every frozen trace (a frozen thread or a held message), by trace id.
    pub fn all(&self) -> Vec<Frozen> {
        let ids: std::collections::BTreeSet<&String> =
            self.frozen.keys().chain(self.holds.traces()).collect();
        ids.into_iter().map(|t| self.trace(t)).collect()
    }

    /// One trace as it is now; its lists are empty when it is not frozen.
    pub fn trace(&self, trace_id: &str) -> Frozen {
        Frozen {
            trace_id: trace_id.to_owned(),
            threads: self.threads(trace_id),
            messages: self.holds.messages(trace_id),
            hold_deadline: self.holds.deadline(trace_id),
        }
    }

    /// The latest release of a trace.
    pub fn last_release(&self, trace_id: &str) -> Option<v1::HeldRelease> {
        self.last_release.get(trace_id).cloned()
    }
}

fn same_thread(h: &Held, agent_id: &str, thread: &v1::FrozenThread) -> bool {
    h.agent_id == agent_id && h.thread.pid == thread.pid && h.thread.tid == thread.tid
}

fn timestamp_key(t: &prost_types::Timestamp) -> (i64, i32) {
    (t.seconds, t.nanos)
}

/// `HH:MM:SS UTC` of a time, for messages.
pub(crate) fn clock(t: &prost_types::Timestamp) -> String {
    let day = t.seconds.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", day / 3600, day / 60 % 60, day % 60)
}

/// What the user reads when a trace is not frozen: when and why it was last released, or
/// that it never was.
pub(crate) fn not_frozen_text(trace_id: &str, last: Option<&v1::HeldRelease>) -> String {
    match last.and_then(|l| l.release.as_ref()) {
        Some(r) => {
            let reason = v1::ReleaseReason::try_from(r.reason)
                .unwrap_or_default()
                .describe();
            let at =
                r.at.as_ref()
                    .map(clock)
                    .unwrap_or_else(|| "an unknown time".into());
            format!("trace {trace_id} is not frozen; it was released at {at} ({reason})")
        }
        None => format!("trace {trace_id} was never frozen"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn thread(tid: u32, deadline: SystemTime) -> v1::FrozenThread {
        v1::FrozenThread {
            trace_id: T.into(),
            breakpoint_id: 1,
            snapshot_sequence: 1,
            pid: 10,
            tid,
            location: "level3 (orders.c:41)".into(),
            frozen_at: Some(SystemTime::UNIX_EPOCH.into()),
            deadline: Some(deadline.into()),
            suspended: true,
            not_suspended_reason: String::new(),
        }
    }

    #[test]
    fn a_thread_expires_into_a_release_by_deadline() {
        let mut t = Traces::default();
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_secs(3600 + 60 + 1);
        t.frozen("a", "n", thread(11, deadline));
        t.frozen("a", "n", thread(11, deadline));
        assert_eq!(t.threads(T).len(), 1, "a re-report is one thread");
        t.expire(deadline);
        assert_eq!(t.threads(T).len(), 1, "still within the grace");
        t.expire(deadline + DEADLINE_GRACE * 2);
        assert!(t.all().is_empty());
        let last = t.last_release(T).unwrap();
        assert_eq!(
            not_frozen_text(T, Some(&last)),
            format!("trace {T} is not frozen; it was released at 01:01:01 UTC (deadline passed)")
        );
        assert_eq!(not_frozen_text("ab", None), "trace ab was never frozen");
    }

    #[test]
    fn held_messages_alone_keep_a_trace_listed_and_a_freeze_sets_the_hold() {
        let mut t = Traces::default();
        let deadline = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(t.frozen("a", "n", thread(11, deadline)), Some(deadline));
        let earlier = deadline - Duration::from_secs(30);
        assert_eq!(
            t.frozen("a", "n", thread(12, earlier)),
            Some(deadline),
            "a second thread does not shorten the hold"
        );
        t.holds.held(
            "b",
            "m",
            v1::HeldMessage {
                trace_id: T.into(),
                socket: 7,
                at: Some(SystemTime::now().into()),
                ..Default::default()
            },
        );
        t.forget_agent("a");
        let all = t.all();
        assert_eq!(all.len(), 1);
        assert!(all[0].threads.is_empty());
        assert_eq!(all[0].messages.len(), 1);
        assert_eq!(all[0].hold_deadline, Some(deadline));
        t.holds.released("b", T);
        assert!(t.all().is_empty());
    }

    #[test]
    fn a_reconnecting_agent_is_forgotten_until_it_reports_again() {
        let mut t = Traces::default();
        let deadline = SystemTime::now() + Duration::from_secs(60);
        t.frozen("a", "n", thread(11, deadline));
        t.frozen("b", "m", thread(11, deadline));
        t.forget_agent("a");
        let left = t.threads(T);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].agent_id, "b");
    }
}
