//! `--count N` on a hot function: exactly N snapshots, then the probe is really gone.

mod common;

use std::time::Duration;

use common::*;
use tracery_dwarf::Binary;
use tracery_tests::FixtureProcess;

/// The next `n` `rate N` lines the hot fixture prints (one every 200 ms).
fn rates(p: &mut FixtureProcess, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let value = p.wait_for_line("rate ", Duration::from_secs(5));
            value.trim().parse::<f64>().unwrap()
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn count_five_on_a_tight_loop_then_unprobed_speed() {
    tracery_tests::require_root();
    let mut p = FixtureProcess::spawn("c-O2", &["hot"]);
    let baseline = median(rates(&mut p, 3));

    let location = at("c_tick");
    let binary = Binary::open(tracery_tests::fixture("c-O2")).unwrap();
    let site = tracery_dwarf::resolve(&binary, &location).unwrap()[0].clone();
    let original = binary.bytes_at(site.address, 1).unwrap()[0];

    let hits = probe_json(p.pid(), &location, 5, &[]);
    assert_eq!(hits.len(), 5);
    let mut tids: Vec<_> = hits.iter().map(|h| h["tid"].as_u64().unwrap()).collect();
    tids.dedup();
    assert_eq!(tids, [u64::from(p.pid())]);

    // Detached: the breakpoint instruction is gone from the process's code...
    assert_eq!(live_byte(p.pid(), site.file_offset.0), original);
    // ...and the loop runs at its unprobed speed again. A probe still attached costs
    // microseconds per call here, cutting the rate a thousandfold, so the best window
    // after detach against a third of the baseline tells the two apart even on a
    // loaded machine.
    let _ = rates(&mut p, 1); // the window that overlapped the detach
    let after = rates(&mut p, 5).into_iter().fold(0.0, f64::max);
    assert!(
        after > baseline / 3.0,
        "rate after detach {after:.0}/s vs {baseline:.0}/s before"
    );
}
