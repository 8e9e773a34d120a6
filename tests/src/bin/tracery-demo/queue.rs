//! The queue hop of the demo: orders enqueues a fulfilment job in Redis (its trace context
//! as JSON under `job:<order id>`, the id pushed on `jobs`), and the worker (Go, node-b, no
//! tracing library) takes it. A breakpoint in the worker scoped to T fires for T's job
//! only, with T's trace id; while T is frozen in orders, its job is not in Redis.

use super::*;
use crate::freeze::drain_log;

/// The list orders pushes jobs on (see `tests/demo/orders/src/fulfilment.rs`).
pub(crate) const JOBS: &str = "jobs";

/// Where the demo breaks in the worker: the function that fulfils a job it has read.
const WORKER_AT: &str = "main.fulfil";

impl Demo<'_> {
    /// A breakpoint on service worker scoped to `trace`; its id.
    pub(crate) fn set_worker_breakpoint(&self, trace: &str) -> Result<String, String> {
        step(&format!(
            "setting a breakpoint on service worker (Go, node-b) at {WORKER_AT}, for trace {trace} only"
        ));
        println!(
            "    the worker BRPOPs order ids from Redis list `{JOBS}` and GETs job:<id>, whose JSON \
             carries the job's uber-trace-id; it has no tracing library"
        );
        let args = [
            "breakpoint",
            "set",
            "-q",
            "--service",
            "worker",
            "--at",
            WORKER_AT,
            "--trace-id",
            trace,
        ];
        println!("$ tracery-ctl {}", args.join(" "));
        let id = self.ctl_out(&args)?.trim().to_string();
        println!("    breakpoint {id}");
        self.wait_armed(&id)?;
        Ok(id)
    }

    /// While T is frozen: the jobs list and T's jobs in Redis. Returns what leaked.
    pub(crate) fn queue_while_frozen(&self, trace: &str) -> Result<Vec<String>, String> {
        let len = self.redis_cli(&["LLEN", JOBS])?;
        println!("    $ redis-cli LLEN {JOBS}\n      {len}");
        let jobs = self.jobs_of(trace)?;
        println!(
            "    jobs in Redis whose context is T's (job:* keys with T's trace id): {}",
            jobs.len()
        );
        Ok(if jobs.is_empty() {
            Vec::new()
        } else {
            vec![format!("Redis has T's fulfilment job(s) {jobs:?}")]
        })
    }

    /// After the resume: T's job reached Redis and the worker, and the worker's breakpoint
    /// fired once, for T, with T's trace id.
    pub(crate) fn queue_after_resume(
        &self,
        worker: &mut Service,
        breakpoint: &str,
        trace: &str,
        order_id: &str,
    ) -> Result<(), String> {
        step("the queue hop: orders enqueued T's fulfilment job in Redis, the worker took it");
        let job = self.redis_cli(&["GET", &format!("job:{order_id}")])?;
        println!("    $ redis-cli GET job:{order_id}\n      {job}");
        if !job.contains(trace) {
            return Err(format!(
                "job:{order_id} does not carry T's trace id {trace}: {job:?}"
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let prefix = format!("job {order_id}:");
        let line = loop {
            if let Some(line) = drain_log(worker)
                .into_iter()
                .find(|l| l.starts_with(&prefix))
            {
                break line;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the worker did not take job {order_id} within 10 s"
                ));
            }
            thread::sleep(Duration::from_millis(100));
        };
        println!("    worker: {line}");
        let len = self.redis_cli(&["LLEN", JOBS])?;
        println!(
            "    $ redis-cli LLEN {JOBS}\n      {len}   (the worker took the job off the list)"
        );

        println!("\n    the worker's breakpoint, scoped to T, fired for T's job only:");
        let snapshot = self.wait_snapshot(breakpoint, Duration::from_secs(30))?;
        self.show(&["snapshot", "view", &snapshot])?;
        let out = self.ctl_out(&["snapshot", "view", &snapshot, "--output", "json"])?;
        let v: Value = serde_json::from_str(out.trim()).map_err(|e| format!("{e}: {out}"))?;
        if v["trace_id"] != trace {
            return Err(format!(
                "the worker's snapshot carries trace {} instead of T's {trace}",
                v["trace_id"]
            ));
        }
        let all = self.ctl_out(&[
            "snapshot",
            "list",
            "--breakpoint",
            breakpoint,
            "--output",
            "json",
        ])?;
        let count = all.lines().count();
        println!(
            "    the worker's snapshot carries T's trace id {trace}, read from the job's \
             uber-trace-id; breakpoint {breakpoint} has {count} snapshot(s): the reference \
             request's job went through the same line without one"
        );
        if count != 1 {
            return Err(format!(
                "breakpoint {breakpoint} has {count} snapshots; expected T's only"
            ));
        }
        Ok(())
    }

    /// The `job:*` keys whose JSON carries `trace`.
    fn jobs_of(&self, trace: &str) -> Result<Vec<String>, String> {
        let keys = self.redis_cli(&["--scan", "--pattern", "job:*"])?;
        let mut found = Vec::new();
        for key in keys.lines().filter(|k| !k.is_empty()) {
            if self.redis_cli(&["GET", key])?.contains(trace) {
                found.push(key.to_string());
            }
        }
        Ok(found)
    }

    /// `redis-cli` against the demo's Redis; its output, trimmed.
    pub(crate) fn redis_cli(&self, args: &[&str]) -> Result<String, String> {
        let (host, port) = self.redis.rsplit_once(':').unwrap_or((self.redis, "6379"));
        let out = Command::new("redis-cli")
            .args(["-h", host, "-p", port])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run redis-cli (run `cargo xtask setup`): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}
