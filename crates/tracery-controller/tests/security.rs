//! TLS, tokens and the audit log over real TCP with real TLS (rustls): a controller on
//! 127.0.0.1 with a CA of this test's own; agents are real tonic `AgentLink` clients with
//! the TLS configuration `tracery-agent --tls-dir` builds (the agent's eBPF side is not
//! needed to show who the controller lets in), and the CLI side is a tonic client sending
//! the bearer token as tracery-ctl does.

mod common;

use std::path::PathBuf;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracery_controller::{Access, StandaloneToken};

const TOKEN: &str = "0123456789abcdef-test-token";

/// A PEM certificate and its key.
struct Pem {
    cert: String,
    key: String,
}

/// A CA and what it signed, as `tracery-ctl certs init` makes them.
struct Pki {
    ca: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap().pem();
        Pki {
            ca,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate signed by this CA (or by itself when `issuer` is `None`), valid
    /// from `from` to `to` days from now.
    fn leaf(
        issuer: Option<&Issuer<'static, KeyPair>>,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        (from, to): (i64, i64),
    ) -> Pem {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.extended_key_usages = vec![usage];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now + time::Duration::days(from);
        p.not_after = now + time::Duration::days(to);
        let key = KeyPair::generate().unwrap();
        let cert = match issuer {
            Some(i) => p.signed_by(&key, i).unwrap(),
            None => p.self_signed(&key).unwrap(),
        };
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn agent(&self, valid: (i64, i64)) -> Pem {
        Pki::leaf(
            Some(&self.issuer),
            &["tracery-agent"],
            ExtendedKeyUsagePurpose::ClientAuth,
            valid,
        )
    }

    /// The controller's directory: tls.crt, tls.key, ca.crt.
    fn controller_dir(&self, dir: &Path) -> PathBuf {
        let server = Pki::leaf(
            Some(&self.issuer),
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            (-1, 30),
        );
        let d = dir.join("controller");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tls.crt"), server.cert).unwrap();
        std::fs::write(d.join("tls.key"), server.key).unwrap();
        std::fs::write(d.join("ca.crt"), &self.ca).unwrap();
        d
    }
}

async fn start(store: &str, tls_dir: Option<PathBuf>, token_path: &Path) -> Controller {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let opts = ControllerOptions {
        local_agent: None,
        store_url: store.to_owned(),
        services: vec!["orders".into()],
        defaults: Defaults::default(),
        databases: Vec::new(),
        capture_limits: Default::default(),
        kubernetes: None,
        access: Access::Token(StandaloneToken::new(TOKEN.into(), token_path.to_path_buf())),
        tls_dir,
        otlp_endpoint: None,
    };
    let task = tokio::spawn(serve(listener, opts, async {
        stopped.await.ok();
    }));
    Controller { addr, stop, task }
}

/// Opens an agent session as `tracery-agent run --tls-dir` would (`cert` None: TLS
/// without a client certificate); Err says where it was refused.
async fn agent_session(addr: SocketAddr, ca: &str, cert: Option<&Pem>) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(c) = cert {
        tls = tls.identity(Identity::from_pem(&c.cert, &c.key));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("handshake: {e:?}"))?;
    let mut client = AgentLinkClient::new(channel);
    let (up, rx) = mpsc::channel(4);
    up.send(message(Up::Hello(v1::Hello {
        agent_id: "agent-tls".into(),
        node: "node-1".into(),
        ..Default::default()
    })))
    .await
    .unwrap();
    let mut down = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| {
            format!(
                "session: {:?}: {} ({:?})",
                s.code(),
                s.message(),
                std::error::Error::source(&s)
            )
        })?
        .into_inner();
    // The controller answers a session it accepted; keep it open until then.
    tokio::time::timeout(Duration::from_millis(500), down.message())
        .await
        .ok();
    Ok(())
}

type Authed = TraceryClient<InterceptedService<Channel, Bearer>>;

#[derive(Clone)]
struct Bearer(Option<&'static str>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = self.0 {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(r)
    }
}

async fn cli(addr: SocketAddr, ca: Option<&str>, token: Option<&'static str>) -> Authed {
    let scheme = if ca.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}")).unwrap();
    if let Some(ca) = ca {
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .unwrap();
    }
    TraceryClient::with_interceptor(endpoint.connect().await.unwrap(), Bearer(token))
}

#[tokio::test]
async fn agents_need_a_certificate_signed_by_the_ca_and_not_expired() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let controller = start(
        &store,
        Some(pki.controller_dir(dir.path())),
        &dir.path().join("token"),
    )
    .await;
    let addr = controller.addr;

    let none = agent_session(addr, &pki.ca, None).await.unwrap_err();
    assert!(
        none.contains("Unauthenticated") && none.contains("--tls-dir"),
        "{none}"
    );
    let self_signed = Pki::leaf(
        None,
        &["tracery-agent"],
        ExtendedKeyUsagePurpose::ClientAuth,
        (-1, 30),
    );
    let e = agent_session(addr, &pki.ca, Some(&self_signed))
        .await
        .unwrap_err();
    // TLS 1.3: the client finishes first, so the server's alert ends the first call.
    assert!(
        e.contains("received fatal alert: UnknownCA"),
        "self-signed: {e}"
    );
    let expired = pki.agent((-30, -1));
    let e = agent_session(addr, &pki.ca, Some(&expired))
        .await
        .unwrap_err();
    assert!(
        e.contains("received fatal alert: CertificateExpired"),
        "expired: {e}"
    );
    // None of the three got in.
    let mut c = cli(addr, Some(&pki.ca), Some(TOKEN)).await;
    let agents = c
        .status(v1::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .agents;
    assert!(agents.is_empty(), "{agents:?}");

    agent_session(addr, &pki.ca, Some(&pki.agent((-1, 30))))
        .await
        .expect("a valid agent certificate is accepted");
    let agents = c
        .status(v1::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .agents;
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].hello.as_ref().unwrap().agent_id, "agent-tls");
    controller.stop().await;
}

#[tokio::test]
async fn cli_calls_without_or_with_a_wrong_token_are_refused_saying_where_the_token_is() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let token_path = dir.path().join("token");
    let controller = start(&store, Some(pki.controller_dir(dir.path())), &token_path).await;
    let where_ = token_path.display().to_string();

    let none = cli(controller.addr, Some(&pki.ca), None)
        .await
        .status(v1::StatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    assert!(
        none.message().contains(&where_) && none.message().contains("--token-file"),
        "{}",
        none.message()
    );
    let wrong = cli(controller.addr, Some(&pki.ca), Some("not-the-token"))
        .await
        .list_breakpoints(v1::ListBreakpointsRequest {})
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert!(
        wrong.message().contains("wrong API token") && wrong.message().contains(&where_),
        "{}",
        wrong.message()
    );
    cli(controller.addr, Some(&pki.ca), Some(TOKEN))
        .await
        .list_breakpoints(v1::ListBreakpointsRequest {})
        .await
        .expect("the right token works");
    controller.stop().await;
}

#[tokio::test]
async fn the_audit_log_has_one_entry_per_mutating_call_refused_ones_included() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let controller = start(&store, None, &dir.path().join("token")).await;
    let mut ok = cli(controller.addr, None, Some(TOKEN)).await;
    let mut wrong = cli(controller.addr, None, Some("stolen?")).await;
    let mut anonymous = cli(controller.addr, None, None).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736".to_owned();

    let id = ok
        .set_breakpoint(spec_at("orders.rs:42"))
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap()
        .id;
    wrong
        .set_breakpoint(spec_at("orders.rs:43"))
        .await
        .unwrap_err();
    let freeze = v1::BreakpointSpec {
        freeze: true,
        ..spec_at("orders.rs:44")
    };
    let frozen = ok
        .set_breakpoint(freeze)
        .await
        .unwrap()
        .into_inner()
        .breakpoint
        .unwrap()
        .id;
    ok.delete_breakpoint(v1::DeleteBreakpointRequest { id })
        .await
        .unwrap();
    ok.delete_breakpoint(v1::DeleteBreakpointRequest { id: 9999 })
        .await
        .unwrap_err();
    anonymous
        .delete_breakpoint(v1::DeleteBreakpointRequest { id: frozen })
        .await
        .unwrap_err();
    ok.resume_trace(v1::ResumeTraceRequest {
        trace_id: trace.clone(),
    })
    .await
    .unwrap();
    ok.eval_trace(v1::EvalTraceRequest {
        trace_id: trace.clone(),
        expr: "order.qty".into(),
    })
    .await
    .unwrap_err();
    // Reads are not audited.
    ok.list_breakpoints(v1::ListBreakpointsRequest {})
        .await
        .unwrap();
    ok.status(v1::StatusRequest {}).await.unwrap();

    let log = ok
        .list_audit(v1::ListAuditRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let seen: Vec<(&str, &str, String, &str)> = log
        .iter()
        .map(|e| {
            let result = e.result.split(':').next().unwrap_or_default();
            (e.who.as_str(), e.action.as_str(), e.target.clone(), result)
        })
        .collect();
    let me = "standalone-token";
    assert_eq!(
        seen,
        [
            (
                me,
                "set",
                format!("breakpoint {id}: service orders at orders.rs:42"),
                "ok"
            ),
            (
                "unauthenticated",
                "set",
                "service orders at orders.rs:43".into(),
                "Unauthenticated"
            ),
            (
                me,
                "freeze",
                format!("breakpoint {frozen}: service orders at orders.rs:44"),
                "ok"
            ),
            (me, "delete", format!("breakpoint {id}"), "ok"),
            (me, "delete", "breakpoint 9999".into(), "NotFound"),
            (
                "unauthenticated",
                "delete",
                format!("breakpoint {frozen}"),
                "Unauthenticated"
            ),
            (me, "resume", format!("trace {trace}"), "ok"),
            (me, "eval", format!("trace {trace}: order.qty"), "NotFound"),
        ]
    );
    for e in &log {
        assert!(e.peer.starts_with("127.0.0.1:"), "{e:?}");
        assert!(e.time.is_some());
    }
    assert!(
        log[1].result.contains("wrong API token"),
        "{}",
        log[1].result
    );
    // --since: nothing after now.
    let later = SystemTime::now() + Duration::from_secs(1);
    let none = ok
        .list_audit(v1::ListAuditRequest {
            since: Some(later.into()),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(none.is_empty());
    controller.stop().await;
}
