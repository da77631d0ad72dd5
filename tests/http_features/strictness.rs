//! `Host` strictness. On the serving port, RFC 9112 §3.2: an HTTP/1.1 request with no `Host` or
//! with two is a `400` carrying `x-request-id`, while HTTP/2 names its host in `:authority`. On
//! the dashboard and the metrics export port, only the names of the bound address and
//! `dashboard_allowed_hosts` are answered (a DNS-rebinding page gets a `403`), and a dashboard
//! that other machines could reach starts only with a token or `dashboard_allow_insecure`.

use std::net::SocketAddr;

use http::{Method, StatusCode};
use rayai::{Controller, HttpOptions, NodeResources, Server};

use super::{RAW_WAIT, call, example, options, start};
use crate::common::{self, Proto};

/// A raw response: its status, its headers (names lowercase) and its body.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (request line and header lines, without the blank line) with
/// `Connection: close`, and reads the response to the end.
async fn raw(addr: SocketAddr, head: &str) -> Raw {
    let request = format!("{head}\r\nConnection: close\r\n\r\n");
    let bytes = common::raw(addr, request.as_bytes(), false, RAW_WAIT).await;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a response head: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {text:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Asserts the serving port's `400` for a bad `Host`.
fn assert_invalid_host(reply: &Raw) {
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.body, "Invalid Host header", "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        reply.header("x-request-id").is_some_and(super::is_uuid),
        "{reply:?}"
    );
}

#[tokio::test]
async fn http11_without_host_or_with_two_is_400_with_a_request_id() {
    let server = example().await;
    let addr = server.local_addr();
    assert_invalid_host(&raw(addr, "GET / HTTP/1.1").await);
    assert_invalid_host(&raw(addr, "GET / HTTP/1.1\r\nHost: a\r\nHost: a").await);
    assert_invalid_host(&raw(addr, "GET / HTTP/1.1\r\nHost: user@evil.example").await);
    assert_invalid_host(&raw(addr, "GET / HTTP/1.0\r\nHost: a\r\nHost: b").await);
    // The client's id is echoed on the 400 too.
    let reply = raw(addr, "GET / HTTP/1.1\r\nX-Request-ID: mine-1").await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.header("x-request-id"), Some("mine-1"));
    // One Host (any name: the serving port does not choose names), or none on HTTP/1.0.
    for head in [
        "GET / HTTP/1.1\r\nHost: x",
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:8000",
        "GET / HTTP/1.1\r\nHost: [::1]:8000",
        "GET / HTTP/1.1\r\nHost:",
        "GET / HTTP/1.0",
    ] {
        let reply = raw(addr, head).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "hello"),
            "{head:?}"
        );
        assert!(reply.header("x-request-id").is_some(), "{head:?}");
    }
    server.shutdown().await;
}

/// The answers hyper writes itself, before any request exists (a head it cannot parse, a head
/// too large, an unknown version), carry an `x-request-id` too, on the serving port and the
/// dashboard, and the connection serves nothing more.
#[tokio::test]
async fn the_answers_hyper_writes_itself_carry_a_request_id() {
    let mut opts = options();
    opts.dashboard_port = Some(0);
    let server = super::start(opts).await;
    let dashboard = server.dashboard_addr().expect("a dashboard");
    for addr in [server.local_addr(), dashboard] {
        let too_large = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}",
            "a".repeat(512 * 1024)
        );
        for (head, status) in [
            ("GARBAGE\x01 / HTTP/1.1\r\nHost: a", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nBad Header Name: x", 400),
            ("GET / HTTP/9.9\r\nHost: a", 400),
            (too_large.as_str(), 431),
        ] {
            let bytes =
                common::raw(addr, format!("{head}\r\n\r\n").as_bytes(), false, RAW_WAIT).await;
            let text = String::from_utf8_lossy(&bytes);
            let code = format!("HTTP/1.1 {status} ");
            assert!(text.starts_with(&code), "{head:.40?}: {text:?}");
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("x-request-id: "))
                .unwrap_or_else(|| panic!("{head:.40?}: no x-request-id in {text:?}"));
            assert!(super::is_uuid(id.trim()), "{text:?}");
            assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text:?}");
        }
    }
    // Served answers are untouched: one id each.
    let reply = raw(server.local_addr(), "GET / HTTP/1.1\r\nHost: a").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply
            .headers
            .iter()
            .filter(|(n, _)| n == "x-request-id")
            .count(),
        1,
        "{reply:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn http2_names_its_host_in_authority_and_is_served() {
    let server = example().await;
    // The HTTP/2 request carries `:authority` and no `host` header.
    let reply = call(server.local_addr(), Proto::H2, Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, "hello");
    server.shutdown().await;
}

/// The example with a dashboard and a metrics export port, on free ports of 127.0.0.1.
async fn with_dashboard(allowed: &[&str]) -> Server {
    start(HttpOptions {
        dashboard_port: Some(0),
        metrics_export_port: Some(0),
        dashboard_allowed_hosts: allowed.iter().map(|h| (*h).to_owned()).collect(),
        ..options()
    })
    .await
}

#[tokio::test]
async fn a_dns_rebinding_request_to_the_dashboard_is_403_and_its_own_names_are_served() {
    let server = with_dashboard(&[]).await;
    let dash = server.dashboard_addr().expect("a dashboard");
    let port = dash.port();
    for host in [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.evil.example:{port}",
    ] {
        let host = host.replace("{port}", &port.to_string());
        for path in ["/", "/api/logs", "/api/serve/applications/", "/metrics"] {
            let reply = raw(dash, &format!("GET {path} HTTP/1.1\r\nHost: {host}")).await;
            assert_eq!(reply.status, 403, "{host} {path}: {reply:?}");
            assert!(
                reply.body.contains("dashboard_allowed_hosts"),
                "the 403 names the option: {reply:?}"
            );
        }
    }
    // A write to the status API is refused before it reaches the deploy code.
    let put = format!(
        "PUT /api/serve/applications/ HTTP/1.1\r\nHost: evil.example:{port}\r\nContent-Length: 0"
    );
    assert_eq!(raw(dash, &put).await.status, 403);
    // No Host at all: nothing says the name is ours.
    assert_eq!(raw(dash, "GET / HTTP/1.1").await.status, 403);
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let reply = raw(
            dash,
            &format!("GET /api/serve/applications/ HTTP/1.1\r\nHost: {host}"),
        )
        .await;
        assert_eq!(reply.status, 200, "{host}: {reply:?}");
    }
    // HTTP/2: the name is in `:authority`.
    let reply = call(dash, Proto::H2, Method::GET, "/api/timeseries", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // The metrics export port answers the same way.
    let metrics = server.metrics_export_addr().expect("a metrics port");
    let mport = metrics.port();
    let evil = raw(
        metrics,
        &format!("GET /metrics HTTP/1.1\r\nHost: evil.example:{mport}"),
    )
    .await;
    assert_eq!(evil.status, 403, "{evil:?}");
    let own = raw(
        metrics,
        &format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{mport}"),
    )
    .await;
    assert_eq!(own.status, 200, "{own:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_allow_list_admits_a_name() {
    let server = with_dashboard(&["dash.example.com", "proxy.example:8443"]).await;
    let dash = server.dashboard_addr().expect("a dashboard");
    let get = |host: &'static str| async move {
        raw(dash, &format!("GET /api/logs HTTP/1.1\r\nHost: {host}"))
            .await
            .status
    };
    assert_eq!(get("dash.example.com").await, 200);
    assert_eq!(get("DASH.example.com:443").await, 200);
    assert_eq!(get("proxy.example:8443").await, 200);
    assert_eq!(get("proxy.example:8444").await, 403);
    assert_eq!(get("other.example.com").await, 403);
    let metrics = server.metrics_export_addr().expect("a metrics port");
    let reply = raw(metrics, "GET /metrics HTTP/1.1\r\nHost: dash.example.com").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    server.shutdown().await;
}

/// Options that put the dashboard on every address (`0.0.0.0`), on a free port.
fn on_every_address() -> HttpOptions {
    HttpOptions {
        dashboard_host: "0.0.0.0".to_owned(),
        dashboard_port: Some(0),
        ..options()
    }
}

async fn start_with(options: HttpOptions) -> Result<Server, rayai::Error> {
    Server::start_with(options, Controller::new(NodeResources::new(4.0, 4 << 30))).await
}

#[tokio::test]
async fn a_dashboard_other_machines_can_reach_needs_a_token_or_allow_insecure() {
    let e = start_with(on_every_address())
        .await
        .expect_err("no token on 0.0.0.0 refuses to start");
    let message = e.to_string();
    for option in [
        "dashboard_token",
        "dashboard_host",
        "dashboard_allow_insecure",
    ] {
        assert!(message.contains(option), "{option} in {message}");
    }
    assert!(message.contains("0.0.0.0:"), "{message}");

    let insecure = start_with(HttpOptions {
        dashboard_allow_insecure: true,
        ..on_every_address()
    })
    .await
    .expect("allow-insecure starts");
    let port = insecure.dashboard_addr().expect("a dashboard").port();
    let dash = SocketAddr::from(([127, 0, 0, 1], port));
    // On a wildcard address: the machine's own addresses, not any name.
    let ok = raw(
        dash,
        &format!("GET /api/logs HTTP/1.1\r\nHost: 127.0.0.1:{port}"),
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let evil = raw(
        dash,
        &format!("GET /api/logs HTTP/1.1\r\nHost: evil.example:{port}"),
    )
    .await;
    assert_eq!(evil.status, 403, "{evil:?}");
    insecure.shutdown().await;

    let with_token = start_with(HttpOptions {
        dashboard_token: Some("s3cret".to_owned()),
        ..on_every_address()
    })
    .await
    .expect("a token starts");
    let port = with_token.dashboard_addr().expect("a dashboard").port();
    let dash = SocketAddr::from(([127, 0, 0, 1], port));
    let head = format!("GET /api/logs HTTP/1.1\r\nHost: 127.0.0.1:{port}");
    assert_eq!(raw(dash, &head).await.status, 401);
    let authorized = format!("{head}\r\nAuthorization: Bearer s3cret");
    assert_eq!(raw(dash, &authorized).await.status, 200);
    with_token.shutdown().await;
}
