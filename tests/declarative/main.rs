//! End to end: declarative deploys on a running server, as Ray's `serve deploy`. A config in
//! Ray's schema goes to `PUT /api/serve/applications/` on the dashboard port; its applications
//! are found by import path (registered builders, apps deployed in code, `agents:<name>`) and
//! their deployments' options overridden; `DELETE` removes them.
//!
//! Each test runs its own server on `127.0.0.1:0` with its own node.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod rollout;

use std::net::SocketAddr;

use composition::apps;
use http::{Method, StatusCode, header};
use rayai::prelude::*;
use rayai::{Controller, HttpOptions, NodeResources, Server};

use common::{EXCHANGE_TIMEOUT, Proto, Reply, full, request, send, within};

/// Answers `{"hello": data.name}`: an agent of these tests, found as `agents:hello`.
#[agent(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
pub(crate) struct Hello;

impl Agent for Hello {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "hello": data.get("name").cloned().unwrap_or(Value::Null) }))
    }
}

/// A server with its dashboard on a free port, its own node, and the composition example's app
/// registered as `composition:app`; nothing deployed.
async fn server_with(options: HttpOptions) -> Server {
    let server = Server::start_with(
        HttpOptions {
            host: "127.0.0.1".to_owned(),
            port: 0,
            dashboard_port: Some(0),
            ..options
        },
        Controller::new(NodeResources::new(64.0, 64 << 30)),
    )
    .await
    .expect("the server starts");
    server.register_app("composition:app", apps::app);
    server
}

async fn server() -> Server {
    server_with(HttpOptions::default()).await
}

fn dashboard(server: &Server) -> SocketAddr {
    server.dashboard_addr().expect("the dashboard runs")
}

/// `method path` on the dashboard with a body (and a bearer token when given).
async fn call(
    server: &Server,
    method: Method,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Reply {
    let addr = dashboard(server);
    let mut req =
        request(addr, Proto::H1, method, path).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(full(body)).expect("a valid request");
    within(
        EXCHANGE_TIMEOUT * 3,
        "the dashboard's answer",
        send(addr, Proto::H1, req),
    )
    .await
}

/// `PUT /api/serve/applications/` with `config` (JSON).
async fn put(server: &Server, config: &Value) -> Reply {
    call(
        server,
        Method::PUT,
        "/api/serve/applications/",
        &config.to_string(),
        None,
    )
    .await
}

/// `DELETE path` on the dashboard.
async fn delete(server: &Server, path: &str) -> Reply {
    call(server, Method::DELETE, path, "", None).await
}

/// Asserts a JSON `{"detail": ...}` error with `status` whose detail holds each of `needles`.
#[track_caller]
fn assert_detail(reply: &Reply, status: StatusCode, needles: &[&str]) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert!(
        reply.header("content-type").starts_with("application/json"),
        "{reply:?}"
    );
    let detail = reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for needle in needles {
        assert!(detail.contains(needle), "{needle:?} not in {detail:?}");
    }
}

/// `POST path` on the serving port.
async fn post(server: &Server, path: &str, body: &str) -> Reply {
    common::post(server.local_addr(), path, body).await
}
