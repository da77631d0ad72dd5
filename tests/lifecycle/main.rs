//! End to end: what happens to deployments over time, on a real server (`127.0.0.1:0`) whose
//! controller has a node of declared resources. Replicas that panic or fail their health check
//! are replaced; constructors are retried, or the deploy is refused; sessions stick to a replica;
//! GPUs are placed and given back; autoscaling follows the load within the node; shutdown drains;
//! an agent that blocks its thread stalls nothing else.
//!
//! Each test starts its own server on its own `Controller`, so no two tests share resources; an
//! agent of `fixtures` whose statics a test reads exactly belongs to that test alone.

#[path = "../common/mod.rs"]
mod common;

mod autoscaling;
mod constructors;
mod fixtures;
mod placement;
mod reconfigure;
mod replacement;
mod resources;
mod sessions;
mod shutdown;

use std::time::Duration;

use rayai::{Controller, DeploymentHandle, DeploymentStatus, NodeResources, Server};
use tokio::time::Instant;

/// How long a test waits for a condition it polls.
const POLL: Duration = Duration::from_secs(5);

/// One gibibyte.
const GIB: u64 = 1 << 30;

/// `n` milliseconds.
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A node of 4 CPUs and 1 GiB without GPUs: room for every agent of a test (0.1 CPU, 16 MiB).
fn node() -> Controller {
    Controller::new(NodeResources::new(4.0, GIB))
}

/// A node of 4 CPUs, 1 GiB and `gpus` fake GPUs (ids 0, 1, ...).
fn gpu_node(gpus: u32) -> Controller {
    Controller::new(NodeResources::new(4.0, GIB).with_gpus(gpus))
}

/// A server on a free port that refuses an application unless every replica fits.
async fn start_strict(controller: Controller) -> Server {
    let options = rayai::HttpOptions {
        host: "127.0.0.1".to_owned(),
        port: 0,
        dashboard_port: None,
        strict_placement: true,
        ..rayai::HttpOptions::default()
    };
    Server::start_with(options, controller)
        .await
        .expect("the server starts")
}

/// The chat path of `agent`.
fn chat(agent: &str) -> String {
    format!("/agents/{agent}/chat")
}

/// The error and its causes on one line, as a log shows it (`Display` is one level only).
fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The running deployment `name` of `server`.
fn handle(server: &Server, name: &str) -> DeploymentHandle {
    server
        .deployment(name)
        .unwrap_or_else(|| panic!("`{name}` is deployed"))
}

/// The status of `name` in `server.status()`.
fn status_of(server: &Server, name: &str) -> DeploymentStatus {
    server
        .status()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no `{name}` in the server's status"))
}

/// Polls the status of `name` until `holds` accepts it and returns it; fails after [`POLL`],
/// naming `what` and showing the last status seen.
async fn until_status(
    server: &Server,
    name: &str,
    what: &str,
    holds: impl Fn(&DeploymentStatus) -> bool,
) -> DeploymentStatus {
    let deadline = Instant::now() + POLL;
    loop {
        let status = status_of(server, name);
        if holds(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {POLL:?} waiting for {what}; last status: {status:#?}"
        );
        tokio::time::sleep(ms(5)).await;
    }
}
