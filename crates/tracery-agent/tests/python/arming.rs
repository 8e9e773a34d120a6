//! Where Python breakpoints arm: processes that start after the breakpoint (a service
//! target, followed through the exec watch), and at most 4 sites per process (the
//! thread's x86 debug registers).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use tracery_agent::{Manager, Matcher, Target};
use tracery_model::SourceLanguage;
use tracery_tests::FixtureProcess;

use super::{collect, get, line_of, orders_py, serial, spec, start, PYTHON};

#[test]
fn a_python_process_started_after_the_breakpoint_is_armed_and_captures() {
    let _serial = serial();
    // Only this test's processes: a marker argument no other process has.
    let tag = format!("--tracery-python-exec-test={}", std::process::id());
    let mut m = Manager::start().unwrap();
    let line = line_of("total = subtotal - discount");
    let mut sp = spec(30, 0, &format!("python/orders.py:{line}"));
    sp.target = Target::Matching(Matcher::Cmdline(tag.clone()));
    let st = m.add(sp).unwrap();
    assert!(st.processes.is_empty(), "no such process yet: {st:?}");

    let mut cmd = Command::new(PYTHON);
    cmd.arg(orders_py()).arg("0").arg(&tag);
    let (svc, addr) = FixtureProcess::spawn_service_command(cmd);
    let pid = svc.pid();
    let deadline = Instant::now() + Duration::from_secs(20);
    let armed = loop {
        m.tick(Duration::from_millis(20)).unwrap();
        let st = m.status_of(30).unwrap();
        if st.processes.iter().any(|(p, n)| *p == pid && *n == 1) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    let st = m.status_of(30).unwrap();
    assert!(armed, "not armed in new process {pid}: {st:?}");
    assert!(st.errors.is_empty(), "{st:?}");

    get(&addr, "/order?id=61");
    let snaps = collect(&mut m, 1, Duration::from_millis(200));
    assert_eq!(snaps.len(), 1, "{snaps:#?}");
    assert_eq!(snaps[0].pid, pid);
    assert_eq!(snaps[0].language, SourceLanguage::Python);
    assert_eq!(snaps[0].location.line, line);
    assert!(m.remove(30).unwrap());
}

#[test]
fn a_fifth_site_in_one_process_is_refused_by_name() {
    let _serial = serial();
    let (svc, addr) = start(PYTHON);
    let pid = svc.pid();
    let mut m = Manager::start().unwrap();
    let lines = [
        "big = 2**70 + order.order_id",
        "label = \"gold-\" + order.customer",
        "tags = [\"express\", order.order_id, 2.5]",
        "discount = subtotal // 10",
        "total = subtotal - discount",
    ]
    .map(line_of);
    for (i, line) in lines[..4].iter().enumerate() {
        m.add(spec(
            40 + i as u64,
            pid,
            &format!("python/orders.py:{line}"),
        ))
        .unwrap();
    }
    let fifth = format!("python/orders.py:{}", lines[4]);
    let err = m.add(spec(44, pid, &fifth)).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "{fifth} needs 1 hardware watchpoint in each thread of PID {pid}"
        )),
        "{err}"
    );
    assert!(err.contains("4 debug registers"), "{err}");
    assert!(err.contains("0 are free"), "{err}");
    assert!(m.status_of(44).is_none(), "nothing kept of the refused one");

    // The four still capture; removing one frees its register for the fifth.
    get(&addr, "/order?id=71");
    assert_eq!(collect(&mut m, 4, Duration::from_millis(200)).len(), 4);
    assert!(m.remove(40).unwrap());
    m.add(spec(44, pid, &fifth)).unwrap();
    get(&addr, "/order?id=72");
    assert_eq!(collect(&mut m, 4, Duration::from_millis(200)).len(), 4);
}
