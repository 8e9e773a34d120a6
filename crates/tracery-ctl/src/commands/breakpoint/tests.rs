use super::*;
use clap::Parser;

/// `tracery-ctl breakpoint ...` without the global flags.
#[derive(Parser)]
struct Ctl {
    #[command(subcommand)]
    command: Command,
}

fn set_args(args: &[&str]) -> Result<SetArgs, clap::Error> {
    let argv = ["breakpoint", "set", "--at", "handle"].iter().chain(args);
    match Ctl::try_parse_from(argv)?.command {
        Command::Set(a) => Ok(*a),
        other => panic!("parsed as {other:?}"),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_selector_is_labels_a_pod_must_all_carry() {
    let a = set_args(&[
        "--selector",
        "app=orders, tier=api",
        "--container",
        "orders",
    ])
    .unwrap();
    assert_eq!(
        a.selector,
        Some(labels(&[("app", "orders"), ("tier", "api")]))
    );
    assert_eq!(a.container.as_deref(), Some("orders"));
    assert_eq!(
        parse_selector("app.kubernetes.io/name=orders").unwrap(),
        labels(&[("app.kubernetes.io/name", "orders")])
    );
}

#[test]
fn a_bad_selector_is_refused_with_what_to_write() {
    let refused = |s: &str| parse_selector(s).unwrap_err().to_string();
    assert_eq!(
        refused(""),
        "--selector is empty; give labels such as app=orders,tier=api"
    );
    assert_eq!(
        refused("app"),
        r#""app" is not KEY=VALUE; write labels like app=orders,tier=api"#
    );
    assert_eq!(
        refused("app=orders,"),
        r#""" is not KEY=VALUE; write labels like app=orders,tier=api"#
    );
    assert_eq!(
        refused("app="),
        r#""app=" is not KEY=VALUE; write labels like app=orders,tier=api"#
    );
    assert_eq!(
        refused("=orders"),
        r#""=orders" is not KEY=VALUE; write labels like app=orders,tier=api"#
    );
    assert!(refused("app!=orders").contains("!=, == and set expressions are not supported"));
    assert!(refused("app==orders").contains("are not supported"));
    assert!(refused("tier in (api)").contains("are not supported"));
    assert!(refused("-app=orders").starts_with(r#""-app" is not a label key"#));
    assert!(
        refused("Example.com/app=orders").starts_with(r#""Example.com/app" is not a label key"#)
    );
    assert!(refused("app=orders v2").starts_with(r#""orders v2" (label app) is not a label value"#));
    assert!(refused(&format!("app={}", "x".repeat(64))).contains("is not a label value"));
    assert_eq!(
        refused("app=a,app=b"),
        "label app is given twice in --selector"
    );
    // Clap puts the reason after the flag.
    let e = set_args(&["--selector", "app"]).unwrap_err().to_string();
    assert!(
        e.contains("--selector") && e.contains("is not KEY=VALUE"),
        "{e}"
    );
}

#[test]
fn container_needs_a_service_or_selector() {
    let e = set_args(&["--exe", "/bin/true", "--container", "orders"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    let e = set_args(&["--pid", "7", "--container", "orders"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    assert!(
        e.to_string()
            .contains("the argument '--pid <PID>' cannot be used with '--container <NAME>'"),
        "{e}"
    );
    let e = set_args(&["--container", "orders"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    assert!(set_args(&["--service", "orders", "--container", "orders"]).is_ok());
    // One target only.
    let e = set_args(&["--service", "orders", "--selector", "app=orders"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    let e = set_args(&[]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
}

#[test]
fn the_namespace_goes_with_services_and_selectors_only() {
    let given = Namespace {
        name: "shop".into(),
        explicit: true,
    };
    let from_context = Namespace {
        name: "shop".into(),
        explicit: false,
    };
    let service = Target::Service("orders".into());
    assert_eq!(target_namespace(&service, &given).unwrap(), "shop");
    assert_eq!(target_namespace(&service, &from_context).unwrap(), "shop");
    assert_eq!(
        target_namespace(&service, &Namespace::default()).unwrap(),
        ""
    );
    let pid = Target::Pid(7);
    assert_eq!(target_namespace(&pid, &from_context).unwrap(), "");
    let e = target_namespace(&pid, &given).unwrap_err().to_string();
    assert!(
        e.starts_with("-n/--namespace applies to --service and --selector targets"),
        "{e}"
    );
}

fn breakpoint(target: Target, namespace: &str, container: &str) -> v1::Breakpoint {
    v1::Breakpoint {
        id: 3,
        spec: Some(v1::BreakpointSpec {
            target: Some(target),
            location: "handle".into(),
            namespace: namespace.into(),
            container: container.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn targets_show_their_namespace_and_container() {
    let selector = Target::Selector(v1::LabelSelector {
        match_labels: [("tier", "api"), ("app", "orders")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
    });
    let b = breakpoint(selector, "shop", "orders");
    let j = breakpoint_json(&b);
    assert_eq!(j["target"], "selector shop/app=orders,tier=api");
    assert_eq!(j["namespace"], "shop");
    assert_eq!(
        j["selector"],
        serde_json::json!({"app": "orders", "tier": "api"})
    );
    assert_eq!(j["container"], "orders");
    assert_eq!(
        target_text(&j, ", "),
        "selector shop/app=orders,tier=api, container orders"
    );
    let set = v1::SetBreakpointResponse::default();
    assert!(set_text(&b, &set).starts_with(
        "breakpoint 3 set at handle on selector shop/app=orders,tier=api, container orders\n"
    ));

    let j = breakpoint_json(&breakpoint(Target::Service("orders".into()), "shop", ""));
    assert_eq!(j["target"], "service shop/orders");
    assert_eq!(target_text(&j, "\n"), "service shop/orders");
    assert_eq!(j["container"], serde_json::Value::Null);
    // A standalone controller keeps no namespace: tracery.toml's service.
    let j = breakpoint_json(&breakpoint(Target::Service("orders".into()), "", ""));
    assert_eq!(j["target"], "service orders");
    assert_eq!(j["namespace"], serde_json::Value::Null);
    // A cluster controller stores `default` for every target; a process has none.
    let j = breakpoint_json(&breakpoint(Target::Pid(7), "default", ""));
    assert_eq!(j["target"], "pid 7");
    assert_eq!(j["namespace"], serde_json::Value::Null);
}

#[test]
fn list_with_n_keeps_that_namespaces_services_and_selectors() {
    let service = |ns: &str| breakpoint(Target::Service("orders".into()), ns, "");
    assert!(in_namespace(&service("shop"), "shop"));
    assert!(!in_namespace(&service("payments"), "shop"));
    assert!(in_namespace(&service(""), "default"));
    assert!(!in_namespace(
        &breakpoint(Target::Pid(7), "shop", ""),
        "shop"
    ));
}
