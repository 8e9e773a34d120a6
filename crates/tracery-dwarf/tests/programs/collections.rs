// Standard-library values for the differential test (tests/differential_rust.rs). The
// program writes each value with `{:?}` to the file named by its first argument, one line
// per value (maps and sets: one line per entry), then calls `inspect`, where the test stops
// it and captures the same values. It prints `ready` and starts on one stdin line.
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};

#[inline(never)]
fn inspect(
    scores: &HashMap<String, Vec<u32>>,
    tags: &HashSet<u32>,
    path: &Path,
    dir: &PathBuf,
    big: &HashMap<u64, u64>,
) -> usize {
    let n = black_box(scores.len()) + tags.len() + path.as_os_str().len(); // @here
    // Keeps every argument live across the probed line in a release build.
    black_box((scores, tags, path, dir, big));
    n
}

fn entries<K: std::fmt::Debug, V: std::fmt::Debug>(out: &mut String, name: &str, m: &HashMap<K, V>) {
    writeln!(out, "{name}.len={}", m.len()).unwrap();
    for (k, v) in m {
        writeln!(out, "{name}[{k:?}]={v:?}").unwrap();
    }
}

fn main() {
    let mut scores = HashMap::new();
    scores.insert("alice".to_string(), vec![90, 85]);
    scores.insert("bob".to_string(), vec![70]);
    scores.insert("carol".to_string(), vec![]);
    let tags: HashSet<u32> = [3, 1, 4, 15].into_iter().collect();
    let dir = PathBuf::from("/var/lib/tracery/data");
    let file = dir.join("orders.db");
    let big: HashMap<u64, u64> = (0..100_000u64).map(|i| (i, i * 2)).collect();

    let mut out = String::new();
    entries(&mut out, "scores", &scores);
    writeln!(out, "tags.len={}", tags.len()).unwrap();
    for t in &tags {
        writeln!(out, "tags[{t:?}]").unwrap();
    }
    writeln!(out, "path={:?}", file.as_path()).unwrap();
    writeln!(out, "dir={dir:?}").unwrap();
    writeln!(out, "big.len={}", big.len()).unwrap();
    let target = std::env::args().nth(1).expect("usage: collections OUT_FILE");
    std::fs::write(target, out).unwrap();
    // Say so, then wait until the test has planted its breakpoint.
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    black_box(inspect(&scores, &tags, file.as_path(), &dir, &big));
}
