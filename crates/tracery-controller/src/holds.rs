//! Held messages as agents report them, and how long every node holds each frozen trace.
//!
//! When a trace freezes on one node, every node holds the trace's outbound messages until
//! the hold deadline (the latest deadline of its frozen threads). Agents report what they
//! hold; a message is forgotten when its agent reports the trace's hold released, when
//! its agent reconnects (it reports again), or once the hold deadline is long past.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tracery_proto::trace::MAX_FREEZE_SECONDS;
use tracery_proto::v1;

/// How long past its deadline a frozen thread or a hold is still listed: the agent's
/// release report is normally in flight by then.
pub(crate) const DEADLINE_GRACE: Duration = Duration::from_secs(5);

/// A held message and the agent that reported it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HeldOn {
    pub agent_id: String,
    pub node: String,
    pub message: v1::HeldMessage,
}

/// Held messages per trace, and the hold deadline of every held trace.
#[derive(Default, Debug)]
pub(crate) struct Holds {
    messages: BTreeMap<String, Vec<HeldOn>>,
    deadlines: BTreeMap<String, SystemTime>,
}

impl Holds {
    /// Holds `trace_id` until `deadline` at least; returns the hold deadline now in force
    /// (a later freeze of the same trace extends it, an earlier one does not shorten it).
    pub fn hold_until(&mut self, trace_id: &str, deadline: SystemTime) -> SystemTime {
        let d = self
            .deadlines
            .entry(trace_id.to_owned())
            .or_insert(deadline);
        *d = (*d).max(deadline);
        *d
    }

    /// The hold deadline of a trace, while it is held.
    pub fn deadline(&self, trace_id: &str) -> Option<SystemTime> {
        self.deadlines.get(trace_id).copied()
    }

    /// Traces held now with their deadlines: what an agent that connects must hold too.
    pub fn active(&self, now: SystemTime) -> Vec<(String, SystemTime)> {
        self.deadlines
            .iter()
            .filter(|(_, d)| **d > now)
            .map(|(t, d)| (t.clone(), *d))
            .collect()
    }

    /// Ends the hold of a trace (it was resumed): agents connecting later are not told.
    pub fn end(&mut self, trace_id: &str) {
        self.deadlines.remove(trace_id);
    }

    /// Records a held message; the same message reported again (after a reconnect) is
    /// kept once.
    pub fn held(&mut self, agent_id: &str, node: &str, message: v1::HeldMessage) {
        let list = self.messages.entry(message.trace_id.clone()).or_default();
        list.retain(|h| !(h.agent_id == agent_id && h.message == message));
        list.push(HeldOn {
            agent_id: agent_id.to_owned(),
            node: node.to_owned(),
            message,
        });
    }

    /// Forgets the messages of `trace_id` that `agent_id` held: it let them go.
    pub fn released(&mut self, agent_id: &str, trace_id: &str) {
        if let Some(list) = self.messages.get_mut(trace_id) {
            list.retain(|h| h.agent_id != agent_id);
            if list.is_empty() {
                self.messages.remove(trace_id);
            }
        }
    }

    /// Forgets what `agent_id` reported: it reports its held messages again on connect.
    pub fn forget_agent(&mut self, agent_id: &str) {
        self.messages.retain(|_, list| {
            list.retain(|h| h.agent_id != agent_id);
            !list.is_empty()
        });
    }

    /// Ends holds more than [`DEADLINE_GRACE`] past their deadline, with their messages
    /// (the kernel let them go); returns those traces. A message of a trace whose hold
    /// the controller never knew (it restarted) goes [`MAX_FREEZE_SECONDS`] after it was
    /// held, the longest any hold lasts.
    pub fn expire(&mut self, now: SystemTime) -> Vec<String> {
        let over = |d: SystemTime| d + DEADLINE_GRACE < now;
        let expired: Vec<String> = self
            .deadlines
            .iter()
            .filter(|(_, d)| over(**d))
            .map(|(t, _)| t.clone())
            .collect();
        for t in &expired {
            self.deadlines.remove(t);
            self.messages.remove(t);
        }
        let deadlines = &self.deadlines;
        self.messages.retain(|t, list| {
            if !deadlines.contains_key(t) {
                list.retain(|h| {
                    let at = h.message.at.and_then(|a| SystemTime::try_from(a).ok());
                    !at.is_some_and(|a| over(a + Duration::from_secs(MAX_FREEZE_SECONDS)))
                });
            }
            !list.is_empty()
        });
        expired
    }

    /// The held messages of one trace, by agent in report order.
    pub fn messages(&self, trace_id: &str) -> Vec<HeldOn> {
        self.messages.get(trace_id).cloned().unwrap_or_default()
    }

    /// Traces with held messages.
    pub fn traces(&self) -> impl Iterator<Item = &String> {
        self.messages.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn message(socket: u64, at: SystemTime) -> v1::HeldMessage {
        v1::HeldMessage {
            trace_id: T.into(),
            pid: 10,
            tid: 11,
            socket,
            local: "10.0.0.2:41234".into(),
            peer: "10.0.0.3:5432".into(),
            bytes: 64,
            first_line: "Q SELECT 1".into(),
            decoded: None,
            behind: false,
            shared: false,
            at: Some(at.into()),
        }
    }

    #[test]
    fn a_hold_is_extended_never_shortened_and_expires_with_its_messages() {
        let mut h = Holds::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let d1 = t0 + Duration::from_secs(60);
        assert_eq!(h.hold_until(T, d1), d1);
        assert_eq!(
            h.hold_until(T, t0),
            d1,
            "an earlier deadline does not shorten"
        );
        h.held("a", "n", message(1, t0));
        h.held("a", "n", message(1, t0));
        assert_eq!(h.messages(T).len(), 1, "a re-report is one message");
        assert_eq!(h.active(t0), vec![(T.to_owned(), d1)]);
        assert!(h.expire(d1 + DEADLINE_GRACE).is_empty(), "within the grace");
        assert_eq!(h.expire(d1 + DEADLINE_GRACE * 2), vec![T.to_owned()]);
        assert!(h.messages(T).is_empty());
        assert!(h.active(t0).is_empty());
    }

    #[test]
    fn a_release_forgets_only_that_agents_messages() {
        let mut h = Holds::default();
        let now = SystemTime::now();
        h.held("a", "n", message(1, now));
        h.held("b", "m", message(2, now));
        h.released("a", T);
        let left = h.messages(T);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].agent_id, "b");
        h.forget_agent("b");
        assert_eq!(h.traces().count(), 0);
    }

    #[test]
    fn a_message_of_an_unknown_hold_goes_after_the_longest_freeze() {
        let mut h = Holds::default();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        h.held("a", "n", message(1, at));
        let longest = at + Duration::from_secs(MAX_FREEZE_SECONDS);
        h.expire(longest);
        assert_eq!(h.messages(T).len(), 1);
        h.expire(longest + DEADLINE_GRACE * 2);
        assert!(h.messages(T).is_empty());
    }
}
