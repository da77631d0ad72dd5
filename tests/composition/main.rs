//! End to end: model composition. The composition example (the `composition` package) served
//! over real HTTP on `127.0.0.1:0` (pipeline, ensemble, router, streaming pipeline), and
//! deployment handles used outside HTTP on the tests' own deployments (`fixtures`): by name and
//! typed, with errors and overload reaching the caller typed, a dropped call cancelling the
//! callee, sticky sessions, an ingress whose constructor takes handles starting after what it
//! composes, and a replica that batches its requests.
//!
//! Each test runs its own `Controller` (a node of declared resources), so no two tests share
//! deployments; a deployment of `fixtures` whose statics a test reads belongs to that test alone.

#[path = "../common/mod.rs"]
mod common;

mod batching;
mod errors;
mod example;
mod fixtures;
mod handles;
mod ingress;
mod sessions;

use bytes::Bytes;
use composition::apps;
use http::StatusCode;
use rayai::prelude::*;
use rayai::{Controller, DeploymentHandle, NodeResources, Server};

use common::{EXCHANGE_TIMEOUT, Reply, Streaming, serve_on, within};

/// A node of its own for each test.
fn node() -> NodeResources {
    NodeResources::new(64.0, 64 << 30)
}

/// The composition example served at `/` on a fresh server.
async fn composition() -> Server {
    serve_on(Controller::new(node()), apps::app()).await
}

/// `app` running on a fresh controller at the route prefix `/`, with no server.
async fn deploy_locally(app: App) -> Controller {
    let controller = Controller::new(node());
    within(
        EXCHANGE_TIMEOUT,
        "the app to deploy",
        controller.deploy_app(app, "/"),
    )
    .await
    .expect("the app deploys");
    controller
}

/// The deployment `name` on `controller`; panics when it does not run.
fn handle(controller: &Controller, name: &str) -> DeploymentHandle {
    controller
        .handle(name)
        .unwrap_or_else(|| panic!("`{name}` runs on the controller"))
}

/// Requests the deployment's replicas serve now.
fn ongoing(handle: &DeploymentHandle) -> u32 {
    handle.replicas().iter().map(|r| r.ongoing_requests).sum()
}

/// Asserts a `422` whose body is JSON with a `detail`.
fn assert_unprocessable(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert!(
        reply.header("content-type").starts_with("application/json"),
        "{reply:?}"
    );
    assert!(reply.json()["detail"].is_string(), "{reply:?}");
}

/// Reads an SSE response event by event, whatever way its bytes are cut into frames.
struct Events {
    response: Streaming,
    buffer: String,
}

impl Events {
    /// Reads the events of `response`.
    fn new(response: Streaming) -> Self {
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next whole event (`data: ...\n\n`), `None` at the end of the body.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event = self.buffer[..end + 2].to_owned();
                self.buffer.drain(..end + 2);
                return Some(event);
            }
            let frame: Option<Bytes> = self.response.frame(EXCHANGE_TIMEOUT).await;
            match frame {
                Some(bytes) => self
                    .buffer
                    .push_str(std::str::from_utf8(&bytes).expect("a UTF-8 frame")),
                None => {
                    assert!(self.buffer.is_empty(), "a cut event: {:?}", self.buffer);
                    return None;
                }
            }
        }
    }
}
