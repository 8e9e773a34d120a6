//! Checks of the fixtures themselves: every variant builds, runs and has (or lacks) DWARF.

use std::{collections::HashMap, fs, time::Duration};

use object::{Object, ObjectSection};

use crate::{fixture, marker_line, markers, FixtureProcess, VARIANTS};

const EXPECTED_MARKERS: &[&str] = &[
    "c_entry",
    "c_after_total",
    "c_no_code",
    "c_inline",
    "c_level3",
    "c_tick",
    "c_login",
    "c_once_placed",
    "rust_entry",
    "rust_after_total",
    "rust_inline",
    "rust_level3",
    "rust_tick",
    "go_entry",
    "go_after_total",
    "go_inline",
    "go_level3",
    "go_tick",
    "demo_priced",
    "demo_pay_auth",
    "httpd_handle",
    "demo_gateway_access",
];

fn has_debug_info(variant: &str) -> bool {
    let path = fixture(variant);
    let data = fs::read(&path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let found = file
        .sections()
        .any(|s| matches!(s.name(), Ok(".debug_info" | ".zdebug_info")));
    found
}

#[test]
fn every_variant_builds_and_prints_ready() {
    for variant in VARIANTS {
        let path = fixture(variant);
        assert!(path.is_file(), "{variant}: {} missing", path.display());
        let process = FixtureProcess::spawn(variant, &["serve"]);
        assert!(process.pid() > 0);
    }
}

#[test]
fn an_up_to_date_fixture_is_not_rebuilt() {
    let first = fixture("c-O0");
    let built = fs::metadata(&first).unwrap().modified().unwrap();
    assert_eq!(crate::fixture::build("c-O0"), first);
    assert_eq!(fs::metadata(&first).unwrap().modified().unwrap(), built);
}

#[test]
fn markers_are_unique_and_all_present() {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (name, _, _) in markers() {
        *counts.entry(name).or_default() += 1;
    }
    for (name, count) in &counts {
        assert_eq!(*count, 1, "marker {name} appears {count} times");
    }
    for name in EXPECTED_MARKERS {
        let (file, line) = marker_line(name);
        let text = fs::read_to_string(&file).unwrap();
        let source_line = text.lines().nth(line as usize - 1).unwrap();
        assert!(source_line.contains(&format!("@probe:{name}")));
    }
    assert_eq!(counts.len(), EXPECTED_MARKERS.len(), "{counts:?}");
}

#[test]
#[should_panic(expected = "no fixture source has the marker")]
fn an_unknown_marker_panics() {
    marker_line("no_such_marker");
}

#[test]
fn only_nodwarf_lacks_debug_info() {
    for variant in VARIANTS {
        assert_eq!(
            has_debug_info(variant),
            *variant != "c-nodwarf",
            "{variant}: unexpected .debug_info presence"
        );
    }
}

#[test]
fn hot_mode_reports_a_rate() {
    for variant in ["c-O2", "rust-release", "go"] {
        let mut process = FixtureProcess::spawn(variant, &["hot"]);
        let rate: u64 = process
            .wait_for_line("rate ", Duration::from_secs(5))
            .parse()
            .unwrap();
        assert!(rate > 1000, "{variant}: rate {rate}");
    }
}

#[test]
fn bench_modes_wait_for_stdin_then_report_and_exit() {
    for variant in ["c-O0", "rust-debug", "go"] {
        for mode in ["bench", "tickbench"] {
            let mut process = FixtureProcess::spawn(variant, &[mode, "1000"]);
            process.send_line("go");
            let ns: f64 = process
                .wait_for_line("ns_per_call ", Duration::from_secs(10))
                .parse()
                .unwrap();
            assert!(ns >= 0.0, "{variant} {mode}: {ns}");
            assert!(process.wait(Duration::from_secs(5)).success());
        }
    }
}

#[test]
fn the_http_server_answers_in_every_read_mode() {
    use crate::http::{split_at, Connection, Request};
    for mode in [&[][..], &["--read"], &["--readv"], &["--recvmsg"]] {
        let (_server, addr) = FixtureProcess::spawn_service(&fixture("c-httpd"), mode);
        let mut conn = Connection::open(&addr);
        // Keep-alive, headers past the first 4 KiB read, a body sent in pieces.
        let big = Request::new("GET", "/big").header("X-Filler", &"f".repeat(6000));
        let response = conn.request(&big);
        assert_eq!(
            (response.status, &response.body[..]),
            (200, &b"200 /big\n"[..])
        );
        let post = Request::new("POST", "/pay").body("0123456789");
        let bytes = post.to_bytes();
        conn.send_pieces(
            &split_at(&bytes, &[7, bytes.len() - 4]),
            Duration::from_millis(20),
        );
        let response = conn.read_response();
        assert_eq!(response.status, 200, "{mode:?}");
        assert_eq!(response.header("connection"), Some("keep-alive"));
        // Over the 64 KiB cap: refused, not overflowed.
        let huge = Request::new("GET", "/huge").header("X-Filler", &"f".repeat(70_000));
        assert_eq!(conn.request(&huge).status, 431, "{mode:?}");
    }
}
