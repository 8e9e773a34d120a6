//! The freeze part of the demo: one request frozen in orders, where it is held, the
//! evidence that it went no further (PostgreSQL, payments, and the Redis job queue), its
//! snapshot, the resume, its answer, and its job reaching the worker.

use super::*;

impl Demo<'_> {
    /// A frozen request: where it is held, the evidence that nothing of it got past
    /// orders, its snapshot, and the resume.
    pub(crate) fn freeze_part(&self, services: &mut NodeServices) -> Result<(), String> {
        let strict = strict_hold_check();
        // Known in advance, so the breakpoint is scoped to T and the demo can look for T in
        // the logs and the database; new each run, as the database keeps earlier orders.
        let frozen_trace = new_trace_id()?;
        let reference_trace = new_trace_id()?;
        let (frozen_trace, reference_trace) = (frozen_trace.as_str(), reference_trace.as_str());
        let gateway = services.gateway.addr.clone();
        let worker_breakpoint = self.set_worker_breakpoint(frozen_trace)?;
        step("an unfrozen reference request, to compare answers with later");
        let reference = post(
            &gateway,
            "/checkout",
            ORDER,
            Some(&traceparent(reference_trace)),
        )?;
        println!("    POST /checkout (trace {reference_trace}) -> {reference}");

        let (location, code) = probe_location();
        step(&format!(
            "setting a freezing breakpoint on service orders at {location}, for trace {frozen_trace} only"
        ));
        println!("    {code}");
        let args = [
            "breakpoint",
            "set",
            "-q",
            "--service",
            "orders",
            "--at",
            &location,
            "--trace-id",
            frozen_trace,
            "--freeze",
            "--freeze-timeout",
            "60s",
            "--capture",
            SHOP_CAPTURE,
            "--capture",
            CACHE_CAPTURE,
        ];
        println!(
            "$ tracery-ctl {}",
            args.iter()
                .map(|a| if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.to_string()
                })
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!("    (at the hit, the controller reads the customer's orders and Redis hash, while T is frozen)");
        let id = self.ctl_out(&args)?.trim().to_string();
        println!("    breakpoint {id}");
        self.wait_armed(&id)?;

        step(&format!(
            "sending request T (trace {frozen_trace}) through the gateway, in the background"
        ));
        let gateway_addr = gateway.clone();
        let header = traceparent(frozen_trace);
        let started = Instant::now();
        let request: JoinHandle<Result<String, String>> =
            thread::spawn(move || post(&gateway_addr, "/checkout", ORDER, Some(&header)));
        let frozen = self.wait_frozen(frozen_trace, Duration::from_secs(30))?;
        println!(
            "    T is frozen, {:.1} s after it was sent",
            started.elapsed().as_secs_f64()
        );
        self.web_view(frozen_trace);

        step("what is held where, and T's pending work: its held messages, decoded");
        self.show(&["trace", "list"])?;
        println!();
        self.show(&["trace", "view", frozen_trace])?;
        let pending = held_insert(&frozen_messages(self, frozen_trace)?);
        match &pending {
            Some(insert) => println!("    T was about to write: {insert}"),
            None if strict => {
                return Err("trace view shows no held INSERT of T, decoded".into());
            }
            None => println!("    WARNING: no held INSERT of T was decoded"),
        }

        step(&format!(
            "evidence that T is held: after {} s, nothing of it has reached payments or PostgreSQL",
            SETTLE.as_secs()
        ));
        thread::sleep(SETTLE);
        let mut leaks = Vec::new();
        let orders_log = drain_log(&mut services.orders);
        if let Some(line) = orders_log.iter().find(|l| l.contains(frozen_trace)) {
            println!("    orders, where T is frozen, logged it: {line}");
        }
        let payments_log = drain_log(&mut services.payments);
        let seen: Vec<&String> = payments_log
            .iter()
            .filter(|l| l.contains(frozen_trace))
            .collect();
        println!(
            "    payments access log: {} line(s), {} with T's trace id",
            payments_log.len(),
            seen.len()
        );
        for line in &seen {
            println!("      {line}");
        }
        if !seen.is_empty() {
            leaks.push("payments logged T's call".to_string());
        }
        let rows = self.psql(&format!(
            "SELECT count(*) FROM orders WHERE trace_id = '{frozen_trace}'"
        ))?;
        println!("    $ psql -c \"SELECT count(*) FROM orders WHERE trace_id = '{frozen_trace}'\"\n      {rows}");
        if rows != "0" {
            leaks.push(format!("PostgreSQL has {rows} order row(s) of T"));
        }
        // The INSERT carries the trace id as a bind parameter, which pg_stat_activity does
        // not show: what it can show is that no statement from node-a is under way.
        let activity_sql = format!(
            "SELECT pid, state, coalesce(wait_event, '-'), left(regexp_replace(query, '\\s+', ' ', 'g'), 50) \
             FROM pg_stat_activity WHERE datname = current_database() AND client_addr = '{}' ORDER BY pid",
            NODE_A.ip
        );
        let activity = self.psql(&activity_sql)?;
        println!(
            "    pg_stat_activity, sessions from {} (orders' pool): pid | state | wait | last query",
            NODE_A.ip
        );
        for line in activity.lines() {
            println!("      {line}");
        }
        let busy: Vec<&str> = activity
            .lines()
            .filter(|l| l.split('|').nth(1).is_some_and(|s| s != "idle"))
            .collect();
        if !busy.is_empty() {
            leaks.push(format!(
                "PostgreSQL is running a query from orders: {busy:?}"
            ));
        }
        leaks.extend(self.queue_while_frozen(frozen_trace)?);
        if request.is_finished() {
            leaks.push("T's response already arrived".to_string());
        }
        if leaks.is_empty() {
            println!("    held: T went no further than orders (no order row, no payment, no job in Redis)");
        } else if strict {
            return Err(format!(
                "T was frozen but not held: {}. The agent must hold the frozen request's \
                 outgoing messages (set STRICT_HOLD_CHECK in tests/src/bin/tracery-demo.rs, \
                 or TRACERY_DEMO_STRICT_HOLD=0, to only report this)",
                leaks.join("; ")
            ));
        } else {
            println!(
                "    WARNING: T was not held (strict hold check off): {}",
                leaks.join("; ")
            );
        }

        step("the snapshot T left at the breakpoint: its variables, and the customer's rows as they stood");
        let snapshot = frozen["snapshots"]
            .as_array()
            .and_then(|s| s.first())
            .map(|s| s["id"].to_string())
            .ok_or("the frozen trace lists no snapshot")?;
        let snapshot = snapshot.trim_matches('"');
        self.show(&["snapshot", "view", snapshot])?;
        self.check_frozen_cut(snapshot, frozen_trace)?;

        if self.wait_for_browser()
            && self
                .wait_frozen(frozen_trace, Duration::from_secs(1))
                .is_err()
        {
            step("T's deadline passed while you looked: the agents let it go by themselves");
        } else {
            step("resuming T");
            self.show(&["trace", "resume", frozen_trace])?;
        }
        let resumed = Instant::now();
        let reply = request
            .join()
            .map_err(|_| "the request thread panicked".to_string())??;
        println!(
            "    POST /checkout (trace {frozen_trace}) -> {reply}   ({:.2} s after the resume)",
            resumed.elapsed().as_secs_f64()
        );

        step("after the resume, T went on: payments and PostgreSQL have it");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut log = payments_log;
        let line = loop {
            log.extend(drain_log(&mut services.payments));
            if let Some(line) = log.iter().find(|l| l.contains(frozen_trace)) {
                break line.clone();
            }
            if Instant::now() > deadline {
                return Err("payments logged no call of T within 10 s of the resume".into());
            }
            thread::sleep(Duration::from_millis(100));
        };
        println!("    payments: {line}");
        let row = self.psql(&format!(
            "SELECT id, status, total_cents, trace_id FROM orders WHERE trace_id = '{frozen_trace}'"
        ))?;
        println!("    PostgreSQL (id | status | total_cents | trace_id):\n      {row}");
        if row.lines().count() != 1 {
            return Err(format!("expected one order row of T, found: {row:?}"));
        }
        let order_id = row.split('|').next().unwrap_or_default().to_string();
        self.queue_after_resume(
            &mut services.worker,
            &worker_breakpoint,
            frozen_trace,
            &order_id,
        )?;

        step("T's answer against the unfrozen reference's");
        println!("    (each order gets its own id, and each request its own trace id: both are left out)");
        let (a, b) = (normalized(&reference)?, normalized(&reply)?);
        println!("    reference: {a}\n    T:         {b}");
        if a != b {
            return Err("T's answer differs from the unfrozen request's".into());
        }
        println!("    the same");

        self.queue_freeze_part(services)?;

        step("what Tracery is doing");
        self.show(&["status"])?;
        self.show(&["breakpoint", "list"])?;
        println!(
            "\nthe services kept serving throughout; stopping everything and removing the nodes."
        );
        Ok(())
    }

    /// The capture ran at the hit, before T's INSERT went out: its rows hold none of T.
    fn check_frozen_cut(&self, snapshot: &str, trace: &str) -> Result<(), String> {
        let out = self.ctl_out(&["snapshot", "view", snapshot, "--output", "json"])?;
        let v: Value = serde_json::from_str(out.trim()).map_err(|e| format!("{e}: {out}"))?;
        let reads = v["databases"].as_array().cloned().unwrap_or_default();
        let problems: Vec<String> = reads
            .iter()
            .filter_map(|r| {
                r["error"]
                    .as_str()
                    .map(|e| format!("{}: {e}", r["database"]))
            })
            .collect();
        if reads.len() != 2 || !problems.is_empty() {
            return Err(format!(
                "expected the shop and cache reads, without errors: {problems:?} in {out}"
            ));
        }
        let rows = reads[0]["rows"].as_array().cloned().unwrap_or_default();
        if rows.iter().any(|r| r["trace_id"] == trace) {
            return Err(format!(
                "the capture shows T's own row, so it ran after T's INSERT: {out}"
            ));
        }
        println!(
            "    the frozen cut: {} order row(s) of the customer, none of T (its INSERT is held), read in one REPEATABLE READ transaction",
            rows.len()
        );
        Ok(())
    }

    /// Prints the frozen trace's page in the web view (with the token), to open while the
    /// demo shows T frozen.
    fn web_view(&self, trace: &str) {
        let token =
            fs::read_to_string(self.work.join(NODE_A.name).join("token")).unwrap_or_default();
        println!(
            "    web view of T: http://{}:{UI_PORT}/traces/{trace}?token={}",
            NODE_A.ip,
            token.trim()
        );
    }

    /// On a terminal, waits for Enter before T is resumed, so its page can be looked at
    /// while it is frozen. Comes after the checks of the frozen state, so a long look
    /// (past T's deadline, when the agents let it go by themselves) cannot fail them.
    /// True when it waited.
    fn wait_for_browser(&self) -> bool {
        let waits = std::io::IsTerminal::is_terminal(&std::io::stdin());
        if waits {
            println!(
                "\n    T is still frozen: look at its page in the web view (address above), \
                 then press Enter to resume it (its deadline lets it go anyway)"
            );
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        waits
    }

    /// Waits until `trace list` shows `trace` frozen with its snapshot stored (hits and
    /// freezes travel separately); returns its entry.
    fn wait_frozen(&self, trace: &str, within: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + within;
        loop {
            let out = self.ctl_out(&["trace", "list", "--output", "json"])?;
            let found = out
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["trace_id"] == trace);
            if let Some(v) = found {
                if v["snapshots"].as_array().is_some_and(|s| !s.is_empty()) {
                    return Ok(v);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "trace {trace} was not frozen within {within:?}; trace list: {out}"
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What the freezing breakpoint reads at the hit: the customer's latest orders, and the
/// Redis hash orders keeps for the customer.
const SHOP_CAPTURE: &str = "shop: SELECT id, status, total_cents, trace_id FROM orders \
     WHERE customer = {order.customer} ORDER BY id DESC LIMIT 5";
const CACHE_CAPTURE: &str = "cache: HGETALL customer:{order.customer}";

/// T's held messages, as `trace view --output json` lists them.
fn frozen_messages(demo: &Demo<'_>, trace: &str) -> Result<Vec<Value>, String> {
    let out = demo.ctl_out(&["trace", "view", trace, "--output", "json"])?;
    let v: Value = serde_json::from_str(out.trim()).map_err(|e| format!("{e}: {out}"))?;
    Ok(v["messages"].as_array().cloned().unwrap_or_default())
}

/// The decoded INSERT among held messages, as one line: its SQL and bound values.
fn held_insert(messages: &[Value]) -> Option<String> {
    messages.iter().find_map(|m| {
        let parts = m["decoded"]["messages"].as_array()?;
        let sql = parts.iter().find(|p| {
            p["kind"] == "Parse" && p["sql"].as_str().is_some_and(|q| q.contains("INSERT"))
        })?["sql"]
            .as_str()?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let params = parts.iter().find(|p| p["kind"] == "Bind")?["params"].to_string();
        Some(format!("{sql}  with {params}"))
    })
}

/// `STRICT_HOLD_CHECK`, unless `TRACERY_DEMO_STRICT_HOLD` says otherwise.
pub(crate) fn strict_hold_check() -> bool {
    match std::env::var("TRACERY_DEMO_STRICT_HOLD").as_deref() {
        Ok("0" | "false" | "no" | "off") => false,
        Ok("1" | "true" | "yes" | "on") => true,
        _ => STRICT_HOLD_CHECK,
    }
}

/// A fresh W3C trace id: 32 lowercase hex digits.
pub(crate) fn new_trace_id() -> Result<String, String> {
    let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| format!("cannot read /proc/sys/kernel/random/uuid: {e}"))?;
    Ok(uuid.trim().replace('-', ""))
}

pub(crate) fn traceparent(trace: &str) -> String {
    format!("00-{trace}-00f067aa0ba902b7-01")
}

/// The lines a service printed since the last call.
pub(crate) fn drain_log(service: &mut Service) -> Vec<String> {
    std::iter::from_fn(|| service.process.read_line(Duration::ZERO)).collect()
}

/// An order as JSON without the fields that differ between any two orders.
pub(crate) fn normalized(body: &str) -> Result<Value, String> {
    let mut v: Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {body:?} ({e})"))?;
    let fields = v
        .as_object_mut()
        .ok_or_else(|| format!("not a JSON object: {body}"))?;
    fields.remove("id");
    fields.remove("trace_id");
    Ok(v)
}
