//! Every fuzz target over its seeds, without libFuzzer: the targets build and pass on the
//! inputs they start from, in the ordinary test run.

#[test]
fn every_target_passes_its_seeds() {
    for target in tracery_fuzz::TARGETS {
        let seeds = (target.seeds)();
        assert!(!seeds.is_empty(), "{} has no seeds", target.name);
        for seed in &seeds {
            (target.run)(seed);
            // And cut short, as mutations often leave them.
            (target.run)(&seed[..seed.len() / 2]);
        }
    }
}

#[test]
fn targets_take_empty_input() {
    for target in tracery_fuzz::TARGETS {
        (target.run)(&[]);
    }
}
