// Standard-library values for the differential test (tests/differential_rust.rs). The
// program writes each value with `{:?}` to the file named by its first argument, one line
// per value (maps and sets: one line per entry), then calls `inspect` and `inspect_ordered`,
// where the test stops it (one run per stop) and captures the same values. It prints `ready`
// and starts on one stdin line.
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::hint::black_box;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

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

/// A trait object's concrete type comes from its vtable.
trait Shape: std::fmt::Debug {
    fn area(&self) -> f64;
}

#[derive(Debug)]
#[allow(dead_code, reason = "read through {:?} and by the probe")]
struct Circle {
    r: f64,
}

impl Shape for Circle {
    fn area(&self) -> f64 {
        3.0 * self.r * self.r
    }
}

#[derive(Debug)]
#[allow(dead_code, reason = "read through {:?} and by the probe")]
struct Square(u32);

impl Shape for Square {
    fn area(&self) -> f64 {
        f64::from(self.0 * self.0)
    }
}

/// Ordered collections, times and trait objects. `tall` has two levels of nodes.
#[derive(Debug)]
#[allow(dead_code, reason = "read through {:?} and by the probe")]
struct Ordered {
    ordered: BTreeMap<u32, String>,
    tall: BTreeMap<u32, u32>,
    names: BTreeSet<&'static str>,
    none: BTreeMap<u8, u8>,
    elapsed: Duration,
    short: Duration,
    started: SystemTime,
    shape: Option<Box<dyn Shape>>,
    nothing: Option<Box<dyn Shape>>,
    pick: &'static dyn Shape,
}

static SQUARE: Square = Square(4);

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

/// The second stop (its own plan and data budget): ordered maps, times, trait objects.
#[inline(never)]
fn inspect_ordered(ordered: &Ordered, deep: &BTreeMap<u64, u64>) -> f64 {
    let a = black_box(ordered.pick.area()) + deep.len() as f64; // @ordered
    black_box((ordered, deep));
    a
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

    let ordered = Ordered {
        ordered: [(3, "three"), (1, "one"), (2, "two")]
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect(),
        tall: (0..60).map(|i| (i * 7 % 60, i)).collect(),
        names: ["pear", "apple", "fig"].into_iter().collect(),
        none: BTreeMap::new(),
        elapsed: Duration::new(1, 500_000_000),
        short: Duration::from_micros(1_250),
        started: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
        shape: Some(Box::new(Circle { r: 2.5 })),
        nothing: None,
        pick: &SQUARE,
    };
    let deep: BTreeMap<u64, u64> = (0..1000u64).map(|i| (i, i + 1)).collect();
    let mut out = String::new();
    entries(&mut out, "scores", &scores);
    writeln!(out, "tags.len={}", tags.len()).unwrap();
    for t in &tags {
        writeln!(out, "tags[{t:?}]").unwrap();
    }
    writeln!(out, "path={:?}", file.as_path()).unwrap();
    writeln!(out, "dir={dir:?}").unwrap();
    writeln!(out, "big.len={}", big.len()).unwrap();
    writeln!(out, "ordered={ordered:?}").unwrap();
    writeln!(out, "deep.len={}", deep.len()).unwrap();
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
    black_box(inspect_ordered(&ordered, &deep));
    drop((cache_guard, lock_guard, counter2, weak));
}
