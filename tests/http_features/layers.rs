//! Tower layers around the whole server: every route, agents and proxy endpoints included.

use http::{Method, StatusCode};
use rayai::prelude::*;
use rayai::{BearerAuthLayer, Controller, HttpOptions, NodeResources, Server};
use tower_http::cors::CorsLayer;

use crate::common::{self, Proto};

/// Answers `{"echo": data}`.
#[agent(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct Echo;

impl Agent for Echo {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "echo": data }))
    }
}

/// A node of its own for each test.
fn node() -> Controller {
    Controller::new(NodeResources::new(8.0, 8 << 30))
}

/// A free port, no dashboard.
fn options() -> HttpOptions {
    HttpOptions {
        port: 0,
        dashboard_port: None,
        ..HttpOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_wide_cors_layer_covers_agents_and_answers_preflight() {
    let server = Server::start_layered(options(), node(), CorsLayer::permissive())
        .await
        .unwrap();
    server
        .deploy(App::new().agent::<Echo>(), "/")
        .await
        .unwrap();
    let addr = server.local_addr();
    let reply = common::post_with(
        addr,
        "/agents/echo/chat",
        &[("origin", "http://example.com")],
        r#"{"data":{"x":1}}"#,
    )
    .await;
    reply.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"echo":{"x":1}},"session_id":"default"}"#,
    );
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    assert!(reply.headers.contains_key("x-request-id"));
    let preflight = common::send(
        addr,
        Proto::H1,
        common::request(addr, Proto::H1, Method::OPTIONS, "/agents/echo/chat")
            .header("origin", "http://example.com")
            .header("access-control-request-method", "POST")
            .body(common::full(""))
            .unwrap(),
    )
    .await;
    assert!(preflight.status.is_success(), "{}", preflight.status);
    assert_eq!(preflight.headers["access-control-allow-origin"], "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_wide_auth_layer_guards_every_route() {
    let server = Server::start_layered(options(), node(), BearerAuthLayer::new("t0ken"))
        .await
        .unwrap();
    server
        .deploy(App::new().agent::<Echo>(), "/")
        .await
        .unwrap();
    let addr = server.local_addr();
    let denied = common::get(addr, "/-/routes").await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.headers["www-authenticate"], "Bearer");
    let allowed = common::send(
        addr,
        Proto::H1,
        common::request(addr, Proto::H1, Method::GET, "/-/routes")
            .header("authorization", "Bearer t0ken")
            .body(common::full(""))
            .unwrap(),
    )
    .await;
    allowed.assert(
        StatusCode::OK,
        "application/json",
        r#"{"/agents/echo":"echo-service"}"#,
    );
}
