//! From events and send→receive pairs to causal order: a topological order of
//! happens-before (each lane's own order plus the message edges), Lamport timestamps,
//! vector clocks, the critical path and the service graph.

use std::collections::{BTreeMap, BTreeSet};

use super::{CausalGraph, Edge, Event, ServiceEdge};

/// `events` sorted by lane, then by the lane's clock; `pairs` index (send, receive).
pub(super) fn finish(
    trace_id: &str,
    mut events: Vec<Event>,
    pairs: &[(usize, usize)],
) -> CausalGraph {
    let n = events.len();
    let lane_pred: Vec<Option<usize>> = (0..n)
        .map(|i| (i > 0 && events[i - 1].process == events[i].process).then(|| i - 1))
        .collect();
    let mut sends_into: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let mut recvs_of: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(s, r) in pairs {
        // A message from a lane to itself adds nothing to the lane's order.
        if s != r && events[s].process != events[r].process && sends_into[r].insert(s) {
            recvs_of[s].push(r);
        }
    }
    let topo = topological(&lane_pred, &mut sends_into, &recvs_of);

    // Lamport timestamps and vector clocks, in topological order.
    let mut lamport = vec![0u64; n];
    let mut vclock: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); n];
    let mut position = vec![0u64; n];
    for &i in &topo {
        position[i] = lane_pred[i].map_or(1, |p| position[p] + 1);
        let preds = lane_pred[i]
            .into_iter()
            .chain(sends_into[i].iter().copied());
        let mut l = 0;
        let mut vc: BTreeMap<String, u64> = BTreeMap::new();
        for p in preds {
            l = l.max(lamport[p]);
            for (lane, c) in &vclock[p] {
                let e = vc.entry(lane.clone()).or_default();
                *e = (*e).max(*c);
            }
        }
        lamport[i] = l + 1;
        vc.insert(events[i].process.clone(), position[i]);
        vclock[i] = vc;
    }

    let critical = critical_path(&events, &lane_pred, &sends_into, &lamport);

    // Edges and the service graph from the pairs the order kept.
    let mut edges = Vec::new();
    let mut services: BTreeMap<(String, String), BTreeSet<usize>> = BTreeMap::new();
    for (r, sends) in sends_into.iter().enumerate() {
        for &s in sends {
            edges.push((
                lamport[s],
                Edge {
                    from: events[s].id.clone(),
                    to: events[r].id.clone(),
                },
            ));
            services
                .entry((events[s].service.clone(), events[r].service.clone()))
                .or_default()
                .insert(s);
        }
    }
    edges.sort();
    let critical_path = critical.iter().map(|&i| events[i].id.clone()).collect();
    for (i, e) in events.iter_mut().enumerate() {
        e.lamport = lamport[i];
        e.vclock = std::mem::take(&mut vclock[i]);
    }
    events.sort_by(|a, b| {
        (a.lamport, &a.process, a.time_unix_nano).cmp(&(b.lamport, &b.process, b.time_unix_nano))
    });
    CausalGraph {
        trace_id: trace_id.to_owned(),
        events,
        edges: edges.into_iter().map(|(_, e)| e).collect(),
        critical_path,
        services: services
            .into_iter()
            .map(|((from, to), sends)| ServiceEdge {
                from,
                to,
                count: sends.len() as u64,
            })
            .collect(),
    }
}

/// A topological order of the lanes' orders plus the message edges. Clocks cannot make a
/// cycle of those, but a bad report could: a receive that would close one loses that
/// edge (removed from `sends_into`) and follows its lane only.
fn topological(
    lane_pred: &[Option<usize>],
    sends_into: &mut [BTreeSet<usize>],
    recvs_of: &[Vec<usize>],
) -> Vec<usize> {
    let n = lane_pred.len();
    let mut waiting: Vec<usize> = (0..n)
        .map(|i| usize::from(lane_pred[i].is_some()) + sends_into[i].len())
        .collect();
    let mut done = vec![false; n];
    let mut ready: BTreeSet<usize> = (0..n).filter(|i| waiting[*i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let i = match ready.pop_first() {
            Some(i) => i,
            None => {
                // A cycle: take the first event whose lane predecessor is done.
                let i = (0..n)
                    .find(|&i| !done[i] && lane_pred[i].is_none_or(|p| done[p]))
                    .expect("every lane has a first event not yet done");
                let broken: Vec<usize> = sends_into[i]
                    .iter()
                    .copied()
                    .filter(|s| !done[*s])
                    .collect();
                for s in broken {
                    sends_into[i].remove(&s);
                }
                i
            }
        };
        if done[i] {
            continue;
        }
        done[i] = true;
        order.push(i);
        let next_in_lane = (i + 1 < n && lane_pred[i + 1] == Some(i)).then_some(i + 1);
        for j in next_in_lane.into_iter().chain(recvs_of[i].iter().copied()) {
            if done[j] || (j != i + 1 && !sends_into[j].contains(&i)) {
                continue;
            }
            waiting[j] = waiting[j].saturating_sub(1);
            if waiting[j] == 0 {
                ready.insert(j);
            }
        }
    }
    order
}

/// The chain the trace's last event waited on: from it back, each receive to the send it
/// waited for (the latest, when several), any other event to its lane's previous one.
/// Clock-free: it follows happens-before only.
fn critical_path(
    events: &[Event],
    lane_pred: &[Option<usize>],
    sends_into: &[BTreeSet<usize>],
    lamport: &[u64],
) -> Vec<usize> {
    let Some(end) = (0..events.len()).max_by_key(|&i| (lamport[i], events[i].time_unix_nano))
    else {
        return Vec::new();
    };
    let mut path = vec![end];
    let mut at = end;
    // Each step goes to a smaller Lamport timestamp, so this ends.
    loop {
        let next = sends_into[at]
            .iter()
            .copied()
            .max_by_key(|&s| lamport[s])
            .or(lane_pred[at]);
        match next {
            Some(p) => {
                path.push(p);
                at = p;
            }
            None => break,
        }
    }
    path.reverse();
    path
}
