//! The header values: each format, names in any case, malformed values, precedence and
//! `--header` filters.

use super::*;

#[test]
fn names_are_case_insensitive() {
    for name in ["traceparent", "TraceParent", "TRACEPARENT", "tRaCePaReNt"] {
        let h = format!("{name}: 00-{TRACE}-{SPAN}-01");
        assert_ids(&one(&[&h]), TRACE, SPAN, TraceSource::W3c);
    }
    for (t, s) in [
        ("X-B3-TraceId", "X-B3-SpanId"),
        ("x-b3-traceid", "x-b3-spanid"),
        ("X-B3-TRACEID", "X-B3-SPANID"),
    ] {
        let (t, s) = (format!("{t}: {TRACE}"), format!("{s}: {SPAN}"));
        assert_ids(&one(&[&t, &s]), TRACE, SPAN, TraceSource::B3);
    }
    assert_ids(
        &one(&[&format!("B3: {TRACE}-{SPAN}")]),
        TRACE,
        SPAN,
        TraceSource::B3,
    );
    assert_ids(
        &one(&[&format!("Uber-Trace-Id: {TRACE}:{SPAN}:0:1")]),
        TRACE,
        SPAN,
        TraceSource::Uber,
    );
}

#[test]
fn hex_digits_in_either_case() {
    let h = format!("traceparent: 00-{}-{}-01", TRACE.to_uppercase(), SPAN);
    assert_ids(&one(&[&h]), TRACE, SPAN, TraceSource::W3c);
}

#[test]
fn names_that_only_look_alike_are_ignored() {
    for name in [
        "traceparentx",
        "x-traceparent",
        "trace-parent",
        "b3x",
        "xb3",
    ] {
        let h = format!("{name}: 00-{TRACE}-{SPAN}-01");
        assert_none(&one(&[&h]));
    }
}

#[test]
fn b3_single_header() {
    let t = one(&[&format!("b3: {TRACE}-{SPAN}-1-05e3ac9a4f6e3b90")]);
    assert_ids(&t, TRACE, SPAN, TraceSource::B3);
    // 64-bit trace ids are left-padded to 128 bits.
    let t = one(&[&format!("b3: a3ce929d0e0e4736-{SPAN}-d")]);
    assert_ids(
        &t,
        "0000000000000000a3ce929d0e0e4736",
        SPAN,
        TraceSource::B3,
    );
    // Sampling state only ("deny"): no ids.
    assert_none(&one(&["b3: 0"]));
}

#[test]
fn b3_multi_headers() {
    let t = one(&[
        &format!("X-B3-TraceId: {TRACE}"),
        &format!("X-B3-SpanId: {SPAN}"),
        "X-B3-ParentSpanId: 05e3ac9a4f6e3b90",
        "X-B3-Sampled: 1",
    ]);
    assert_ids(&t, TRACE, SPAN, TraceSource::B3);
    // The span id may come first.
    let t = one(&[
        &format!("X-B3-SpanId: {SPAN}"),
        &format!("X-B3-TraceId: {TRACE}"),
    ]);
    assert_ids(&t, TRACE, SPAN, TraceSource::B3);
    let t = one(&[
        "X-B3-TraceId: a3ce929d0e0e4736",
        &format!("X-B3-SpanId: {SPAN}"),
    ]);
    assert_ids(
        &t,
        "0000000000000000a3ce929d0e0e4736",
        SPAN,
        TraceSource::B3,
    );
    // A trace id alone: no span.
    let t = one(&[&format!("X-B3-TraceId: {TRACE}")]);
    assert_ids(&t, TRACE, "0000000000000000", TraceSource::B3);
}

#[test]
fn uber_trace_id() {
    let t = one(&[&format!("uber-trace-id: {TRACE}:{SPAN}:0:1")]);
    assert_ids(&t, TRACE, SPAN, TraceSource::Uber);
    let t = one(&[&format!("uber-trace-id: a3ce929d0e0e4736:{SPAN}:0:1")]);
    assert_ids(
        &t,
        "0000000000000000a3ce929d0e0e4736",
        SPAN,
        TraceSource::Uber,
    );
    // Jaeger drops leading zeros.
    let t = one(&["uber-trace-id: abc:de:0:1"]);
    assert_ids(
        &t,
        "00000000000000000000000000000abc",
        "00000000000000de",
        TraceSource::Uber,
    );
    // The URL-encoded form (%3A) is rejected: `%` is not a hex digit.
    assert_none(&one(&[&format!("uber-trace-id: {TRACE}%3A{SPAN}%3A0%3A1")]));
}

#[test]
fn w3c_outranks_b3_outranks_uber_in_any_order() {
    let other = "11111111111111111111111111111111";
    let other_span = "2222222222222222";
    let w3c = traceparent();
    let b3 = format!("b3: {other}-{other_span}");
    let uber = format!("uber-trace-id: {other}:{other_span}:0:1");
    for headers in [[&w3c, &b3, &uber], [&uber, &b3, &w3c], [&b3, &w3c, &uber]] {
        let h: Vec<&str> = headers.iter().map(|s| s.as_str()).collect();
        assert_ids(&one(&h), TRACE, SPAN, TraceSource::W3c);
    }
    let b3 = format!("b3: {TRACE}-{SPAN}");
    for headers in [[&b3, &uber], [&uber, &b3]] {
        let h: Vec<&str> = headers.iter().map(|s| s.as_str()).collect();
        assert_ids(&one(&h), TRACE, SPAN, TraceSource::B3);
    }
}

#[test]
fn malformed_values_carry_no_trace() {
    let t31 = &TRACE[1..];
    let t33 = format!("{TRACE}a");
    let bad_trace = format!("{}g{}", &TRACE[..10], &TRACE[11..]);
    let bad_span = format!("{}z", &SPAN[..15]);
    let zero = "00000000000000000000000000000000";
    let cases = [
        // Bad hex.
        format!("traceparent: 00-{bad_trace}-{SPAN}-01"),
        format!("traceparent: 00-{TRACE}-{bad_span}-01"),
        format!("b3: {bad_trace}-{SPAN}"),
        format!("X-B3-TraceId: {bad_trace}"),
        format!("uber-trace-id: {bad_trace}:{SPAN}:0:1"),
        format!(
            "traceparent: 00-{} {}-{SPAN}-01",
            &TRACE[..16],
            &TRACE[16..]
        ),
        // Wrong lengths.
        format!("traceparent: 00-{t31}-{SPAN}-01"),
        format!("traceparent: 00-{t33}-{SPAN}-01"),
        format!("b3: {t31}-{SPAN}"),
        format!("b3: {}-{SPAN}", &TRACE[..20]),
        format!("X-B3-TraceId: {}", &TRACE[..17]),
        format!("X-B3-TraceId: {t33}"),
        format!("uber-trace-id: {t33}:{SPAN}:0:1"),
        // All-zero trace ids.
        format!("traceparent: 00-{zero}-{SPAN}-01"),
        format!("b3: {zero}-{SPAN}"),
        format!("X-B3-TraceId: {zero}"),
        format!("uber-trace-id: 0:{SPAN}:0:1"),
        // Missing dashes.
        format!("traceparent: 00{TRACE}{SPAN}01"),
        format!("traceparent: 00-{TRACE}{SPAN}-01"),
        format!("b3: {TRACE}{SPAN}"),
        // Overlong values (the digit counters saturate, they do not wrap to 32).
        format!("traceparent: 00-{}-{SPAN}-01", "a".repeat(288)),
        format!("b3: {}-{SPAN}", "1".repeat(1000)),
        // Empty values.
        String::from("traceparent:"),
        String::from("traceparent: "),
        String::from("b3:"),
    ];
    for h in &cases {
        assert_none(&one(&[h]));
    }
}

#[test]
fn a_malformed_span_keeps_the_trace_where_the_format_allows() {
    // The trace id is usable without a valid span id (the parser's long-standing rule).
    let t = one(&[&format!("uber-trace-id: {TRACE}:{}:0:1", "1".repeat(17))]);
    assert_ids(&t, TRACE, "0000000000000000", TraceSource::Uber);
    let t = one(&[
        &format!("X-B3-TraceId: {TRACE}"),
        &format!("X-B3-SpanId: {}", &SPAN[..15]),
    ]);
    assert_ids(&t, TRACE, "0000000000000000", TraceSource::B3);
    // traceparent: a span id of the wrong length is dropped, the trace id kept.
    for span in [&SPAN[1..], &format!("{SPAN}0")] {
        let t = one(&[&format!("traceparent: 00-{TRACE}-{span}-01")]);
        assert_ids(&t, TRACE, "0000000000000000", TraceSource::W3c);
    }
    // An all-zero span id is taken as sent (only the trace id is checked for zero).
    let t = one(&[&format!("traceparent: 00-{TRACE}-0000000000000000-01")]);
    assert_ids(&t, TRACE, "0000000000000000", TraceSource::W3c);
}

#[test]
fn a_malformed_header_does_not_erase_a_good_one() {
    let bad = format!("traceparent: 00-{}-{SPAN}-01", &TRACE[1..]);
    assert_ids(&one(&[&traceparent(), &bad]), TRACE, SPAN, TraceSource::W3c);
}

#[test]
fn blanks_and_line_endings() {
    // Tabs and several blanks before the value; bare LF line endings.
    let t = one(&[&format!("traceparent:\t  00-{TRACE}-{SPAN}-01")]);
    assert_ids(&t, TRACE, SPAN, TraceSource::W3c);
    let req = format!("GET / HTTP/1.1\nb3: {TRACE}-{SPAN}\n\n");
    let mut c = Conn::new();
    c.recv(req.as_bytes());
    assert_ids(&c.only(), TRACE, SPAN, TraceSource::B3);
}

#[test]
fn header_filters_set_their_bit() {
    let filters = std::vec![
        (header_filter_hash("X-Tenant", "acme"), 3),
        (header_filter_hash("x-canary", " yes"), 31),
    ];
    let req = request(&["x-tenant:   acme", "X-CANARY: yes", &traceparent()]);
    let mut c = Conn::with_filters(filters);
    c.recv(req.as_bytes());
    let t = c.only();
    assert_eq!(t.header_bits, (1 << 3) | (1 << 31));
    assert_ids(&t, TRACE, SPAN, TraceSource::W3c);

    // Another value, or the value's case changed: no bit.
    let mut c = Conn::with_filters(std::vec![(header_filter_hash("X-Tenant", "acme"), 3)]);
    c.recv(request(&["X-Tenant: acme2", "X-Tenant: ACME"]).as_bytes());
    assert_eq!(c.only().header_bits, 0);
}
