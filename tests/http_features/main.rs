//! End-to-end tests of Ray Serve's HTTP features over real sockets, on the apps of the
//! `http_features` example: `Hello` at `/`, the axum ingress at `/api/v1` (typed routes,
//! validation, streaming, bearer auth, OpenAPI, CORS) and `Slow` at `/slow`, with
//! `request_timeout_s = 1`. Handlers of the tests' own (`handlers`) pin what the example does not
//! show: the root path, a panic, a stream gated by the test, a stream that never ends. Then what
//! wraps the whole server: tower layers, keep-alive, TLS. And the example's additions: Swagger UI
//! at `/api/v1/docs` (`rayai::docs::router`) and the WebSocket echo at `/ws/echo`.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod bounds;
mod docs;
mod handlers;
mod ingress;
mod keep_alive;
mod layers;
mod request_ids;
mod routing;
mod startup;
mod status;
mod strictness;
mod timeout;
mod tls;
mod websocket;

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use http_features::apps;
use rayai::{Controller, HttpOptions, NodeResources, Server};

use common::{Proto, Reply};

/// The bearer token the `/api/v1/secret` route asks for.
const TOKEN: &str = "secret";

/// The longest any raw exchange may take before the test fails instead of hanging.
const RAW_WAIT: Duration = Duration::from_secs(5);

/// The example's options: a free port, `request_timeout_s = 1`, no dashboard, a short drain.
fn options() -> HttpOptions {
    HttpOptions {
        host: "127.0.0.1".to_owned(),
        port: 0,
        request_timeout_s: Some(1.0),
        dashboard_port: None,
        graceful_shutdown_timeout_s: 1.0,
        drain_delay_s: 0.0,
        ..HttpOptions::default()
    }
}

/// A server with `options` on a node of its own, with every app of the example deployed.
async fn start(options: HttpOptions) -> Server {
    let node = Controller::new(NodeResources::new(64.0, 64 << 30));
    let server = Server::start_with(options, node)
        .await
        .expect("the server starts");
    for (app, prefix) in apps::apps(TOKEN.to_owned()) {
        server
            .deploy(app, prefix)
            .await
            .unwrap_or_else(|e| panic!("the app at {prefix} deploys: {e}"));
    }
    server
}

/// The example's server with its own options.
async fn example() -> Server {
    start(options()).await
}

/// `method path` over `proto` with extra headers and an empty body.
async fn call(
    addr: SocketAddr,
    proto: Proto,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = common::request(addr, proto, method, path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let req = builder.body(common::full("")).expect("a valid request");
    common::send(addr, proto, req).await
}

/// `GET path` over HTTP/1.1 with extra headers.
async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    call(addr, Proto::H1, Method::GET, path, headers).await
}

/// The example still answers `GET /` with `hello`.
async fn assert_still_serving(addr: SocketAddr) {
    let reply = common::get(addr, "/").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, "hello");
}

/// Whether `value` looks like a hyphenated UUID.
fn is_uuid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A 4xx JSON error with a `detail`.
fn assert_json_detail(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert!(
        reply.header("content-type").starts_with("application/json"),
        "{reply:?}"
    );
    let detail = &reply.json()["detail"];
    assert!(
        detail.is_string() || detail.is_array(),
        "no detail in {:?}",
        reply.body
    );
}
