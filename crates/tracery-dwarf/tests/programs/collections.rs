// Standard-library values for the differential test (tests/differential_rust.rs). The
// program writes each value with `{:?}` to the file named by its first argument, one line
// per value (maps and sets: one line per entry), then calls `inspect`, where the test stops
// it and captures the same values. It prints `ready` and starts on one stdin line.
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::hint::black_box;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock};

/// Wrappers whose state the test also checks: at the stop, `counter` has two strong
/// handles and one `Weak`, `cache` one shared borrow and `lock` one reader.
#[derive(Debug)]
#[allow(dead_code, reason = "read through {:?} and by the probe")]
struct Shared {
    counter: Arc<Mutex<Vec<u32>>>,
    cache: RefCell<String>,
    hits: Cell<u32>,
    one: Rc<u8>,
    lock: RwLock<u16>,
    id: NonZeroU32,
    maybe: Option<NonZeroU64>,
    /// Wrapped: its head is past slot 0, so its elements lie in two segments.
    queue: VecDeque<u32>,
    label: Cow<'static, str>,
}

#[inline(never)]
fn inspect(
    shared: &Shared,
    scores: &HashMap<String, Vec<u32>>,
    tags: &HashSet<u32>,
    path: &Path,
    dir: &PathBuf,
    big: &HashMap<u64, u64>,
) -> usize {
    let n = black_box(scores.len()) + tags.len() + path.as_os_str().len(); // @here
    // Keeps every argument live across the probed line in a release build.
    black_box((shared, scores, tags, path, dir, big));
    n
}

/// 1..=6 in a deque of capacity 8 whose head sits at slot 5: slots 5, 6, 7, 0, 1, 2.
fn ring() -> VecDeque<u32> {
    let mut q = VecDeque::with_capacity(8);
    for i in 0..5 {
        q.push_back(100 + i);
    }
    for _ in 0..5 {
        q.pop_front();
    }
    q.extend(1..=6);
    assert_eq!(q.as_slices().0.len(), 3, "the ring must wrap");
    q
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
    let shared = Shared {
        counter: Arc::new(Mutex::new(vec![7, 8, 9])),
        cache: RefCell::new("warm".to_string()),
        hits: Cell::new(12),
        one: Rc::new(5),
        lock: RwLock::new(443),
        id: NonZeroU32::new(31).unwrap(),
        maybe: NonZeroU64::new(64),
        queue: ring(),
        label: Cow::Borrowed("static"),
    };
    let counter2 = Arc::clone(&shared.counter);
    let weak = Arc::downgrade(&shared.counter);
    let cache_guard = shared.cache.borrow();
    let lock_guard = shared.lock.read().unwrap();
    writeln!(out, "shared={shared:?}").unwrap();
    let target = std::env::args().nth(1).expect("usage: collections OUT_FILE");
    std::fs::write(target, out).unwrap();
    // Say so, then wait until the test has planted its breakpoint.
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    black_box(inspect(&shared, &scores, &tags, file.as_path(), &dir, &big));
    drop((cache_guard, lock_guard, counter2, weak));
}
