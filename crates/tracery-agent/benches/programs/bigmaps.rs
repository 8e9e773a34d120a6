// Fixture of `cargo xtask bench walks`: a map of N entries passed to a function called in a
// timed loop. Usage: bigmaps hash|btree ENTRIES CALLS. Prints `ready` once the map is
// built, waits for a `go` line on stdin, then prints `ns_per_call X`.
use std::{
    collections::{BTreeMap, HashMap},
    hint::black_box,
    io::{BufRead, Write},
    time::Instant,
};

#[inline(never)]
fn visit_hash(m: &HashMap<u64, u64>) -> usize {
    black_box(m).len()
}

#[inline(never)]
fn visit_btree(m: &BTreeMap<u64, u64>) -> usize {
    black_box(m).len()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args[1].as_str();
    let entries: u64 = args[2].parse().expect("ENTRIES");
    let calls: u64 = args[3].parse().expect("CALLS");
    let hash: HashMap<u64, u64> = (0..entries).map(|i| (i, i * 2)).collect();
    let btree: BTreeMap<u64, u64> = (0..entries).map(|i| (i, i * 2)).collect();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    let start = Instant::now();
    let mut sum = 0usize;
    for _ in 0..calls {
        sum += match kind {
            "hash" => visit_hash(&hash),
            _ => visit_btree(&btree),
        };
    }
    let ns = start.elapsed().as_nanos() as f64 / calls as f64;
    println!("ns_per_call {ns:.1}");
    black_box(sum);
}
