//! Trace context through a Redis message bus (issue 13, part 3), against the real
//! `redis-server` that `cargo xtask test` starts and a real standalone Tracery:
//!
//! - C and Go workers (`tests/fixtures/c/redis_job.c`, `tests/fixtures/go/redisjob`) that
//!   `GET` a job whose JSON carries `uber-trace-id`, or `BRPOP` one whose element carries
//!   `traceparent`: the snapshot at `process_job` carries the job's trace, and a breakpoint
//!   scoped to T fires for T's job only;
//! - the same with replies read a few bytes per `read()`, so each context is split across
//!   reads;
//! - a C producer's `LPUSH` of T's job, held while T is frozen (`redis-cli LLEN` 0), then
//!   exactly one job after resume, both when the sending thread serves T and when only the
//!   job's own `traceparent` says so; another trace's jobs flow meanwhile;
//! - a job without a context taken after T's job is not T's: a worker's trace ends at its
//!   next `BRPOP`;
//! - a Go producer (`redisjob -produce`) that stores the seed example's `uber-trace-id`
//!   carrier under `job:<id>` and pushes the id: the C consumer's snapshot has the job's
//!   trace and span; and the same producer's `SET` and `LPUSH`, from a goroutine serving
//!   a frozen T, held until resume.
//!
//! Needs root and Redis (`cargo xtask test -- -p tracery-ctl --test redis_bus`).

mod common;

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use common::standalone::Standalone;
use serde_json::Value;
use tracery_tests::{
    fixture,
    held::TestCgroup,
    http::{Connection, Request},
    FixtureProcess,
};

/// How long a worker may take to take a job.
const JOB_TIMEOUT: Duration = Duration::from_secs(20);

fn redis_url() -> String {
    std::env::var("TRACERY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// `HOST:PORT` of the test Redis, as the fixtures take it.
fn redis_addr() -> String {
    let url = redis_url();
    let rest = url.trim_start_matches("redis://");
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Runs one command on the test Redis with `redis-cli`; its output, trimmed.
fn redis(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-u", &redis_url()])
        .args(args)
        .output()
        .expect("run redis-cli");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !stdout.starts_with("Could not connect") && !stdout.is_empty(),
        "redis-cli {args:?}: {stdout} {}; run the tests with `cargo xtask test`, which starts \
         Redis",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn llen(list: &str) -> u64 {
    let n = redis(&["LLEN", list]);
    n.parse()
        .unwrap_or_else(|_| panic!("LLEN {list} answered {n:?}"))
}

/// A list or key name no other test (or run) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "tracery-test:{prefix}:{}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `count` random bytes as lowercase hex.
fn random_hex(count: usize) -> String {
    let mut hex = String::new();
    while hex.len() < count * 2 {
        let word = RandomState::new().build_hasher().finish();
        hex.push_str(&format!("{word:016x}"));
    }
    hex.truncate(count * 2);
    hex
}

/// A fresh (trace id, span id).
fn ids() -> (String, String) {
    (random_hex(16), random_hex(8))
}

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

#[derive(Clone, Copy, Debug)]
enum Lang {
    C,
    Go,
}

/// A worker BRPOPing `list`, reading at most `chunk` bytes per `read()`.
fn worker(lang: Lang, list: &str, chunk: usize) -> FixtureProcess {
    let (chunk, addr) = (chunk.to_string(), redis_addr());
    let (p, _) = match lang {
        Lang::C => FixtureProcess::spawn_service(
            &fixture("c-redis-job"),
            &["consume", &addr, list, &chunk],
        ),
        Lang::Go => FixtureProcess::spawn_service(
            &fixture("go-redis-job"),
            &["-redis", &addr, "-list", list, "-chunk", &chunk],
        ),
    };
    p
}

/// The function the worker runs once a job is read.
fn process_job(lang: Lang) -> &'static str {
    match lang {
        Lang::C => "process_job",
        Lang::Go => "main.processJob",
    }
}

/// The job of the seed example: its JSON under `job:<id>` with an `uber-trace-id`, the id
/// pushed on `list`.
fn push_uber_job(list: &str, id: &str, trace: &str, span: &str) {
    let json = format!(r#"{{"uber-trace-id":"{trace}:{span}:0:1","order":{id}}}"#);
    redis(&["SET", &format!("job:{id}"), &json]);
    redis(&["LPUSH", list, id]);
}

/// A job that is its own JSON element, with a `traceparent`.
fn push_traceparent_job(list: &str, id: &str, trace: &str, span: &str) -> String {
    let json = format!(
        r#"{{"id": {id}, "traceparent": "{}"}}"#,
        traceparent(trace, span)
    );
    redis(&["LPUSH", list, &json]);
    json
}

fn assert_trace(snap: &Value, trace: &str, span: &str) {
    assert_eq!(snap["trace_id"], trace, "trace id of {snap:#}");
    assert_eq!(snap["span_id"], span, "span id of {snap:#}");
}

/// Both job shapes, one after the other, on one worker: each snapshot carries its job's
/// trace, and a breakpoint scoped to the second trace fires for its job only.
fn jobs_carry_their_trace(lang: Lang, chunk: usize) {
    tracery_tests::require_root();
    let t = Standalone::start(&[], None);
    let list = unique("jobs");
    let mut w = worker(lang, &list, chunk);
    let pid = w.pid().to_string();
    let (t1, s1) = ids();
    let (t2, s2) = ids();
    let every = t.set(&["--pid", &pid, "--at", process_job(lang)]);
    let scoped = t.set(&["--pid", &pid, "--at", process_job(lang), "--trace-id", &t2]);

    let id = unique("id").replace(':', "-");
    push_uber_job(&list, &id, &t1, &s1);
    assert_eq!(w.wait_for_line("job ", JOB_TIMEOUT), id);
    let element = push_traceparent_job(&list, "2", &t2, &s2);
    assert_eq!(w.wait_for_line("job ", JOB_TIMEOUT), element);

    let snaps = t.snapshots(&every, 2);
    let of = |trace: &str| {
        snaps
            .iter()
            .find(|s| s["trace_id"] == trace)
            .unwrap_or_else(|| panic!("no snapshot of trace {trace}: {snaps:#?}"))
    };
    assert_trace(of(&t1), &t1, &s1);
    assert_trace(of(&t2), &t2, &s2);
    assert_eq!(snaps.len(), 2, "{snaps:#?}");
    let scoped_snaps = t.snapshots(&scoped, 1);
    assert_eq!(scoped_snaps.len(), 1, "{scoped_snaps:#?}");
    assert_trace(&scoped_snaps[0], &t2, &s2);
}

#[test]
fn c_worker_get_uber_and_brpop_traceparent() {
    jobs_carry_their_trace(Lang::C, 4096);
}

#[test]
fn go_worker_get_uber_and_brpop_traceparent() {
    jobs_carry_their_trace(Lang::Go, 4096);
}

/// 16 bytes per `read()`: the 55-byte `traceparent` value and the `uber-trace-id` value
/// (and their keys, most of the time) straddle two or more reads.
#[test]
fn c_worker_context_split_across_reads() {
    jobs_carry_their_trace(Lang::C, 16);
}

/// 7 bytes per `read()`, on a goroutine the runtime may move between threads.
#[test]
fn go_worker_context_split_across_reads() {
    jobs_carry_their_trace(Lang::Go, 7);
}

/// The C producer, in a cgroup of its own (holds watch cgroups).
/// A job's trace ends when its worker asks for the next job: a job whose element carries
/// no context, taken after T's, is not captured as T's (issue 14; before, the worker kept
/// serving T until another context arrived).
fn a_job_s_trace_ends_at_the_next_fetch(lang: Lang) {
    tracery_tests::require_root();
    let t = Standalone::start(&[], None);
    let list = unique("jobs");
    let mut w = worker(lang, &list, 4096);
    let pid = w.pid().to_string();
    let (t1, s1) = ids();
    let every = t.set(&["--pid", &pid, "--at", process_job(lang)]);

    let id = unique("id").replace(':', "-");
    push_uber_job(&list, &id, &t1, &s1);
    assert_eq!(w.wait_for_line("job ", JOB_TIMEOUT), id);
    let plain = r#"{"id": 3, "note": "no trace context"}"#;
    redis(&["LPUSH", &list, plain]);
    assert_eq!(w.wait_for_line("job ", JOB_TIMEOUT), plain);

    let snaps = t.snapshots(&every, 2);
    assert_eq!(snaps.len(), 2, "{snaps:#?}");
    let with_t1: Vec<_> = snaps.iter().filter(|s| s["trace_id"] == t1).collect();
    assert_eq!(
        with_t1.len(),
        1,
        "only T's own job is T's; the context-free job after it must not be: {snaps:#?}"
    );
    let other = snaps.iter().find(|s| s["trace_id"] != t1).unwrap();
    assert!(
        other["trace_id"].is_null(),
        "the context-free job serves no trace: {other:#}"
    );

    // T's timeline: the worker read T's context, then hit; its next BRPOP and the reply
    // that brought the plain job are not T's. Agents report every few milliseconds; the
    // plain job's events are older than its snapshot, so they are in by now if reported.
    std::thread::sleep(Duration::from_millis(1500));
    let out = t.ctl_ok(&["trace", "view", &t1, "--output", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut mine: Vec<&Value> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["process"]
                .as_str()
                .is_some_and(|p| p.ends_with(&format!("/{pid}")))
        })
        .collect();
    mine.sort_by_key(|e| e["lamport"].as_u64().unwrap());
    let kinds: Vec<&str> = mine.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.last(),
        Some(&"hit"),
        "the worker's last event on T's timeline is its hit, nothing of the next fetch: {v:#}"
    );
    assert!(
        kinds.contains(&"recv"),
        "the reply carrying T's context is on T's timeline: {v:#}"
    );
}

#[test]
fn c_worker_s_trace_ends_at_its_next_brpop() {
    a_job_s_trace_ends_at_the_next_fetch(Lang::C);
}

#[test]
fn go_worker_s_trace_ends_at_its_next_brpop() {
    a_job_s_trace_ends_at_the_next_fetch(Lang::Go);
}

fn producer() -> (FixtureProcess, String, TestCgroup) {
    let (p, addr) =
        FixtureProcess::spawn_service(&fixture("c-redis-job"), &["produce", &redis_addr()]);
    let cg = TestCgroup::new("redis-bus");
    cg.adopt(p.pid());
    (p, addr, cg)
}

/// Sends `method path` with T's `traceparent` on a new connection; the status.
fn send(addr: &str, method: &str, path: &str, trace: &str, span: &str) -> u16 {
    let req = Request::new(method, path).header("traceparent", &traceparent(trace, span));
    Connection::open(addr).request(&req).status
}

/// Polls `trace list --output json` until trace `id` has `n` held messages to Redis.
fn wait_held_on_redis(t: &Standalone, id: &str, n: usize, within: Duration) -> Value {
    let port = format!(":{}", redis_addr().rsplit(':').next().unwrap_or("6379"));
    let deadline = Instant::now() + within;
    loop {
        let out = t.ctl_ok(&["trace", "list", "--output", "json"]);
        let found = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["trace_id"] == id);
        let to_redis = |v: &Value| {
            v["messages"].as_array().map_or(0, |m| {
                m.iter()
                    .filter(|m| m["peer"].as_str().is_some_and(|p| p.ends_with(&port)))
                    .count()
            })
        };
        if let Some(v) = found.filter(|v| to_redis(v) >= n) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "trace {id} had no {n} held messages to Redis within {within:?}; trace list: \
             {out}; status: {}",
            t.ctl_ok(&["status"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// T frozen at the producer's `checkpoint`. T's jobs, one pushed from a thread serving T
/// and one from a thread serving nothing (only the job's `traceparent` is T's), stay out
/// of Redis until resume, then each list holds exactly one; another trace's job is pushed
/// meanwhile.
#[test]
fn a_frozen_trace_s_lpush_is_held_until_resume() {
    tracery_tests::require_root();
    let t = Standalone::start(&[], None);
    let (mut p, addr, _cg) = producer();
    let (trace, span) = ids();
    let (other, other_span) = ids();
    t.set(&[
        "--pid",
        &p.pid().to_string(),
        "--at",
        "checkpoint",
        "--trace-id",
        &trace,
        "--freeze",
        "--freeze-timeout",
        "60s",
    ]);
    let (served, content, flowing) = (unique("served"), unique("content"), unique("flow"));

    // T reaches the breakpoint: frozen from now on. Its response is T's too, so held.
    let (a, tr, sp) = (addr.clone(), trace.clone(), span.clone());
    let checkpoint = std::thread::spawn(move || send(&a, "GET", "/checkpoint", &tr, &sp));
    wait_frozen(&t, &trace);

    let (a, tr, sp, l) = (addr.clone(), trace.clone(), span.clone(), served.clone());
    let enqueue =
        std::thread::spawn(move || send(&a, "POST", &format!("/enqueue?list={l}&id=1"), &tr, &sp));
    let status = send(
        &addr,
        "POST",
        &format!("/enqueue-bg?list={content}&id=2"),
        &trace,
        &span,
    );
    assert_eq!(status, 202);
    let v = wait_held_on_redis(&t, &trace, 2, Duration::from_secs(30));

    // Another trace's job, on the same producer, flows.
    let started = Instant::now();
    let status = send(
        &addr,
        "POST",
        &format!("/enqueue?list={flowing}&id=3"),
        &other,
        &other_span,
    );
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(llen(&flowing), 1, "the other trace's job is in Redis");

    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        llen(&served),
        0,
        "T's job from a thread serving T is held: {v}"
    );
    assert_eq!(
        llen(&content),
        0,
        "T's job from a thread serving nothing is held: {v}"
    );
    assert!(
        !enqueue.is_finished(),
        "the producer waits for Redis's answer"
    );

    let out = t.ctl_ok(&["trace", "resume", &trace]);
    assert!(out.contains("held message"), "{out}");
    assert_eq!(enqueue.join().unwrap(), 200);
    assert_eq!(checkpoint.join().unwrap(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while llen(&content) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(llen(&served), 1, "exactly one job after resume");
    assert_eq!(llen(&content), 1, "exactly one job after resume");
    let job = redis(&["LINDEX", &served, "0"]);
    assert!(job.contains(&trace), "{job}");
    let _ = tracery_tests::held::lines_with(&mut p, "pushed");
}

/// Polls `trace list --output json` until trace `id` is listed as frozen.
fn wait_frozen(t: &Standalone, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = t.ctl_ok(&["trace", "list", "--output", "json"]);
        if out
            .lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["trace_id"] == id))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "trace {id} was not frozen within 30 s; trace list: {out}; status: {}",
            t.ctl_ok(&["status"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Go producer (`redisjob -produce`), in a cgroup of its own (holds watch cgroups).
fn go_producer() -> (FixtureProcess, String, TestCgroup) {
    let (p, addr) = FixtureProcess::spawn_service(
        &fixture("go-redis-job"),
        &["-produce", "-redis", &redis_addr()],
    );
    let cg = TestCgroup::new("redis-bus-go");
    cg.adopt(p.pid());
    (p, addr, cg)
}

/// `pushed LIST ID SPAN` of the Go producer: the span its job's carrier names.
fn pushed_span(p: &mut FixtureProcess, list: &str, id: &str) -> String {
    let line = p.wait_for_line(&format!("pushed {list} {id} "), JOB_TIMEOUT);
    line.rsplit(' ').next().unwrap_or_default().to_string()
}

/// The Go producer stores T's context as the seed example does (an `uber-trace-id` JSON
/// carrier under `job:<id>`) and pushes the id; the C consumer reads it back and serves T.
#[test]
fn go_producer_s_job_is_served_by_the_c_consumer_with_its_trace() {
    tracery_tests::require_root();
    let t = Standalone::start(&[], None);
    let list = unique("go-produced");
    let mut consumer = worker(Lang::C, &list, 4096);
    let (mut producer, addr, _cg) = go_producer();
    let (trace, span) = ids();
    let id = t.set(&[
        "--pid",
        &consumer.pid().to_string(),
        "--at",
        process_job(Lang::C),
    ]);

    let job = random_hex(4);
    let path = format!("/enqueue?list={list}&id={job}");
    assert_eq!(send(&addr, "POST", &path, &trace, &span), 200);
    let job_span = pushed_span(&mut producer, &list, &job);
    assert_eq!(job_span.len(), 16, "{job_span:?}");
    let stored = redis(&["GET", &format!("job:{job}")]);
    assert_eq!(
        stored,
        format!(r#"{{"uber-trace-id":"{trace}:{job_span}:{span}:01","order":{job}}}"#)
    );
    assert_eq!(consumer.wait_for_line("job ", JOB_TIMEOUT), job);

    let snaps = t.snapshots(&id, 1);
    assert_eq!(snaps.len(), 1, "{snaps:#?}");
    // The consumer serves the job's own span, a child of the producer's request.
    assert_trace(&snaps[0], &trace, &job_span);
}

/// T frozen at the Go producer's `checkpoint`: T's job, sent from the goroutine that read
/// T's request, stays out of Redis until resume (no `job:<id>`, `LLEN` 0), while another
/// trace's job goes through; then exactly one.
#[test]
fn a_frozen_trace_s_go_enqueue_is_held_until_resume() {
    tracery_tests::require_root();
    let t = Standalone::start(&[], None);
    let (mut p, addr, _cg) = go_producer();
    let (trace, span) = ids();
    let (other, other_span) = ids();
    t.set(&[
        "--pid",
        &p.pid().to_string(),
        "--at",
        "main.checkpoint",
        "--trace-id",
        &trace,
        "--freeze",
        "--freeze-timeout",
        "60s",
    ]);
    let (held, flowing) = (unique("go-held"), unique("go-flow"));
    let (held_id, flowing_id) = (random_hex(4), random_hex(4));

    let (a, tr, sp) = (addr.clone(), trace.clone(), span.clone());
    let checkpoint = std::thread::spawn(move || send(&a, "GET", "/checkpoint", &tr, &sp));
    wait_frozen(&t, &trace);

    let (a, tr, sp) = (addr.clone(), trace.clone(), span.clone());
    let path = format!("/enqueue?list={held}&id={held_id}");
    let enqueue = std::thread::spawn(move || send(&a, "POST", &path, &tr, &sp));
    let v = wait_held_on_redis(&t, &trace, 1, Duration::from_secs(30));

    let started = Instant::now();
    let path = format!("/enqueue?list={flowing}&id={flowing_id}");
    assert_eq!(send(&addr, "POST", &path, &other, &other_span), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(llen(&flowing), 1, "the other trace's job is in Redis");

    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(llen(&held), 0, "T's LPUSH is held: {v}");
    assert_eq!(
        redis(&["EXISTS", &format!("job:{held_id}")]),
        "0",
        "T's SET is held: {v}"
    );
    assert!(
        !enqueue.is_finished(),
        "the producer waits for Redis's answer"
    );

    let out = t.ctl_ok(&["trace", "resume", &trace]);
    assert!(out.contains("held message"), "{out}");
    assert_eq!(enqueue.join().unwrap(), 200);
    assert_eq!(checkpoint.join().unwrap(), 200);
    assert_eq!(llen(&held), 1, "exactly one job after resume");
    assert_eq!(redis(&["LINDEX", &held, "0"]), held_id);
    let job = redis(&["GET", &format!("job:{held_id}")]);
    assert!(job.contains(&trace), "{job}");
    let _ = tracery_tests::held::lines_with(&mut p, "pushed");
}
