//! The queue part of the demo's freezing: a request U frozen in orders after it has paid,
//! on its way into the job queue. orders keeps running (a tokio service is frozen by
//! holding its messages, never by stopping its threads), so it sends U's `SET job:<id>`
//! and `LPUSH jobs <id>`: the kernel holds them, because they carry U's context and come
//! from the task serving U. Redis never sees them until the resume.

use super::*;
use crate::{
    freeze::{drain_log, new_trace_id, traceparent},
    queue::JOBS,
};

/// Where U is frozen: the function that builds the job's JSON, called once the job's own
/// Redis connection is open, just before the job is sent on it.
const ENQUEUE_AT: &str = "demo_orders::fulfilment::job_json";

/// Longer than the worker's BRPOP timeout (1 s): once it passes, a paused worker no
/// longer waits on the list, and what is pushed stays there.
const WORKER_IDLE: Duration = Duration::from_millis(1500);

impl Demo<'_> {
    /// U frozen on its way into the queue: its job's Redis commands held by the kernel
    /// (`LLEN jobs` 0, no LPUSH reached Redis), then exactly one job after the resume.
    pub(crate) fn queue_freeze_part(&self, services: &mut NodeServices) -> Result<(), String> {
        let trace = new_trace_id()?;
        let trace = trace.as_str();
        step(&format!(
            "freezing request U (trace {trace}) on its way into the queue: in orders at {ENQUEUE_AT}, \
             after U has paid and opened its job's Redis connection"
        ));
        let args = [
            "breakpoint",
            "set",
            "-q",
            "--service",
            "orders",
            "--at",
            ENQUEUE_AT,
            "--trace-id",
            trace,
            "--freeze",
            "--freeze-timeout",
            "60s",
        ];
        println!("$ tracery-ctl {}", args.join(" "));
        let id = self.ctl_out(&args)?.trim().to_string();
        println!("    breakpoint {id}");
        self.wait_armed(&id)?;

        // Paused, the worker cannot take U's job off the list, so `LLEN` shows what
        // reached Redis. Its BRPOP times out within a second, and then Redis stops
        // handing it pushed jobs.
        let worker = services.worker.process.pid().to_string();
        signal(&worker, "STOP")?;
        println!(
            "    $ kill -STOP {worker}   (the worker pauses, so that the list keeps what reaches it)"
        );
        thread::sleep(WORKER_IDLE);
        let result = self.frozen_on_enqueue(services, trace);
        // Whatever happened, the worker goes on.
        let resumed = signal(&worker, "CONT");
        let order_id = result?;
        resumed?;
        println!("    $ kill -CONT {worker}");
        let prefix = format!("job {order_id}:");
        let deadline = Instant::now() + Duration::from_secs(10);
        let line = loop {
            if let Some(line) = drain_log(&mut services.worker)
                .into_iter()
                .find(|l| l.starts_with(&prefix))
            {
                break line;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the worker did not take U's job {order_id} within 10 s of SIGCONT"
                ));
            }
            thread::sleep(Duration::from_millis(100));
        };
        println!("    worker: {line}");
        let len = self.redis_cli(&["LLEN", JOBS])?;
        println!("    $ redis-cli LLEN {JOBS}\n      {len}   (the worker took it)");
        // Breakpoint `id` ended at its one hit (a freeze's default), like the first one.
        Ok(())
    }

    /// Sends U, checks what is held while it is frozen, resumes it and checks that
    /// exactly one job arrived; returns U's order id. The worker is paused throughout.
    fn frozen_on_enqueue(
        &self,
        services: &mut NodeServices,
        trace: &str,
    ) -> Result<String, String> {
        let strict = crate::freeze::strict_hold_check();
        let lpushes_before = self.lpush_calls()?;
        drain_log(&mut services.payments);

        step(&format!(
            "sending request U (trace {trace}) through the gateway, in the background"
        ));
        let gateway = services.gateway.addr.clone();
        let header = traceparent(trace);
        let request: JoinHandle<Result<String, String>> =
            thread::spawn(move || post(&gateway, "/checkout", ORDER, Some(&header)));
        let held = self.wait_held_to_redis(trace, Duration::from_secs(30))?;
        println!("    U is frozen at {ENQUEUE_AT}, with {held} message(s) of it held on their way to Redis");

        step("U's held messages, decoded: its job, which Redis has not received");
        self.show(&["trace", "view", trace])?;

        step(&format!(
            "evidence, after {} s: U got past payments and PostgreSQL, but its job is not in Redis",
            SETTLE.as_secs()
        ));
        thread::sleep(SETTLE);
        let mut leaks = Vec::new();
        let paid = drain_log(&mut services.payments)
            .into_iter()
            .filter(|l| l.contains(trace))
            .count();
        println!(
            "    payments access log: {paid} line(s) with U's trace id (the freeze comes after it)"
        );
        let row = self.psql(&format!(
            "SELECT id, status FROM orders WHERE trace_id = '{trace}'"
        ))?;
        println!("    PostgreSQL, U's order (id | status): {row}");
        let order_id = row.split('|').next().unwrap_or_default().to_string();
        if paid != 1 || !row.ends_with("|paid") {
            return Err(format!(
                "U should have paid before the freeze: {paid} payments line(s), order row {row:?}"
            ));
        }
        let len = self.redis_cli(&["LLEN", JOBS])?;
        println!("    $ redis-cli LLEN {JOBS}\n      {len}");
        if len != "0" {
            leaks.push(format!("LLEN {JOBS} is {len}"));
        }
        let job = self.redis_cli(&["EXISTS", &format!("job:{order_id}")])?;
        println!("    $ redis-cli EXISTS job:{order_id}\n      {job}");
        if job != "0" {
            leaks.push(format!("job:{order_id} is in Redis"));
        }
        let lpushes = self.lpush_calls()?;
        println!(
            "    LPUSH commands Redis has executed since U was sent (INFO commandstats): {}",
            lpushes - lpushes_before
        );
        if lpushes != lpushes_before {
            leaks.push(format!(
                "Redis executed {} LPUSH(es)",
                lpushes - lpushes_before
            ));
        }
        if request.is_finished() {
            leaks.push("U's response already arrived".into());
        }
        if leaks.is_empty() {
            println!("    held: U's SET job:{order_id} and LPUSH {JOBS} wait in the kernel's hold");
        } else if strict {
            return Err(format!(
                "U was frozen but its job was not held: {}",
                leaks.join("; ")
            ));
        } else {
            println!(
                "    WARNING: U's job was not held (strict hold check off): {}",
                leaks.join("; ")
            );
        }

        step("resuming U: its job goes out, once");
        self.show(&["trace", "resume", trace])?;
        let reply = request
            .join()
            .map_err(|_| "U's request thread panicked".to_string())??;
        println!("    POST /checkout (trace {trace}) -> {reply}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let len = loop {
            let len = self.redis_cli(&["LLEN", JOBS])?;
            if len != "0" || Instant::now() > deadline {
                break len;
            }
            thread::sleep(Duration::from_millis(100));
        };
        let first = self.redis_cli(&["LINDEX", JOBS, "0"])?;
        println!(
            "    $ redis-cli LLEN {JOBS}\n      {len}\n    $ redis-cli LINDEX {JOBS} 0\n      {first}"
        );
        let job = self.redis_cli(&["GET", &format!("job:{order_id}")])?;
        println!("    $ redis-cli GET job:{order_id}\n      {job}");
        let lpushes = self.lpush_calls()? - lpushes_before;
        println!("    LPUSH commands Redis has executed since U was sent: {lpushes}");
        if len != "1" || first != order_id || !job.contains(trace) || lpushes != 1 {
            return Err(format!(
                "after the resume, expected exactly U's job: LLEN {len}, LINDEX 0 {first:?}, \
                 job:{order_id} {job:?}, {lpushes} LPUSH(es)"
            ));
        }
        Ok(order_id)
    }

    /// Waits until U is frozen with messages held towards the demo's Redis; their count.
    fn wait_held_to_redis(&self, trace: &str, within: Duration) -> Result<usize, String> {
        let port = format!(":{}", self.redis.rsplit(':').next().unwrap_or("6379"));
        let deadline = Instant::now() + within;
        loop {
            let out = self.ctl_out(&["trace", "list", "--output", "json"])?;
            let held = out
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["trace_id"] == trace)
                .and_then(|v| v["messages"].as_array().cloned())
                .map_or(0, |m| {
                    m.iter()
                        .filter(|m| m["peer"].as_str().is_some_and(|p| p.ends_with(&port)))
                        .count()
                });
            if held > 0 {
                return Ok(held);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "U had no message held towards Redis within {within:?}; trace list: {out}"
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// How many LPUSH commands the demo's Redis has executed since it started.
    fn lpush_calls(&self) -> Result<u64, String> {
        let stats = self.redis_cli(&["INFO", "commandstats"])?;
        // `cmdstat_lpush:calls=3,usec=...`; absent before the first LPUSH.
        Ok(stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_lpush:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }
}

/// `kill -SIGNAL pid`.
fn signal(pid: &str, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid)
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} {pid} failed"))
    }
}
