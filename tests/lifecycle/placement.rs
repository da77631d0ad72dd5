//! Placement that starts what fits, as Ray Serve does: every deployment's minimum must fit, the
//! replicas beyond it that do not fit wait as pending (visible in the status) and start when
//! resources free up; strict placement refuses instead.

use std::time::Duration;

use http::StatusCode;
use rayai::prelude::*;
use rayai::{Controller, Deployment, NodeResources};

use crate::common::{eventually, post, serve_on, start_on};
use crate::{GIB, chat, error_text, start_strict, status_of};

/// The seed documents' example: one CPU, 2 GB, four replicas.
#[agent(name = "seed", num_cpus = 1, memory = "2GB", num_replicas = 4)]
#[derive(Default)]
pub(crate) struct Seed;

impl Agent for Seed {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "echo": data }))
    }
}

/// One CPU for one replica.
#[agent(name = "hog", num_cpus = 1, memory = "16MB")]
#[derive(Default)]
pub(crate) struct Hog;

impl Agent for Hog {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({}))
    }
}

/// A 2-CPU machine with plenty of memory, as the issue's.
fn two_cpus() -> Controller {
    Controller::new(NodeResources::new(2.0, 24 * GIB))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_runs_two_of_four_replicas_on_two_cpus_and_answers() {
    let server = serve_on(two_cpus(), App::new().agent::<Seed>()).await;
    let s = status_of(&server, "seed");
    assert_eq!(
        (s.target_replicas, s.running_replicas, s.pending_replicas),
        (4, 2, 2),
        "{s:?}"
    );
    assert!(
        s.message.contains("2 of 4 replicas pending"),
        "{}",
        s.message
    );
    assert!(s.message.contains("CPU"), "{}", s.message);

    let reply = post(server.local_addr(), &chat("seed"), r#"{"data": {"hi": 1}}"#).await;
    reply.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"echo":{"hi":1}},"session_id":"default"}"#,
    );
    // The status API (on the dashboard port) shows it too: tests/http_features/status.rs.
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_placement_refuses_the_seed_example_with_the_plan_and_the_ways_out() {
    let server = start_strict(two_cpus()).await;
    let err = server
        .deploy(App::new().agent::<Seed>(), "/")
        .await
        .expect_err("four 1-CPU replicas do not fit on 2 CPUs");
    let text = error_text(&err);
    assert!(text.contains("Resource Planning"), "{text}");
    assert!(text.contains("CPUs: need 4.0, node has 2.0"), "{text}");
    assert!(text.contains("RAYAI_NUM_CPUS"), "{text}");
    assert!(text.contains("rayai.toml"), "{text}");
    assert!(text.contains("--strict"), "{text}");
    assert!(server.status().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimums_that_do_not_fit_are_refused_with_the_ways_out_and_nothing_starts() {
    let server = start_on(Controller::new(NodeResources::new(1.0, GIB))).await;
    let app = App::new()
        .agent::<Hog>()
        .deployment(Deployment::agent::<Hog>().map_config(|c| c.with_name("hog2")));
    let err = server
        .deploy(app, "/")
        .await
        .expect_err("two 1-CPU minimums do not fit on 1 CPU");
    let text = error_text(&err);
    assert!(text.contains("not even with one replica each"), "{text}");
    assert!(text.contains("CPUs: need 2.0, node has 1.0"), "{text}");
    assert!(text.contains("RAYAI_NUM_CPUS"), "{text}");
    assert!(server.status().is_empty());
    assert!(server.controller().status().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_replicas_start_when_resources_free_up() {
    let server = serve_on(two_cpus(), App::named("hog").agent::<Hog>()).await;
    let two = Deployment::agent::<Seed>().map_config(|c| c.with_num_replicas(2));
    server
        .deploy(App::named("seed").deployment(two), "/")
        .await
        .expect("the minimum fits");
    let s = status_of(&server, "seed");
    assert_eq!((s.running_replicas, s.pending_replicas), (1, 1), "{s:?}");

    // The hog goes: its CPU frees, and the pending replica starts.
    assert!(server.controller().delete_app("hog").await);
    eventually(
        Duration::from_secs(10),
        "both seed replicas running",
        || async {
            let s = status_of(&server, "seed");
            s.running_replicas == 2 && s.pending_replicas == 0
        },
    )
    .await;
    let s = status_of(&server, "seed");
    assert_eq!(s.status, rayai::DeploymentState::Healthy, "{s:?}");
    assert!(s.message.is_empty(), "{}", s.message);
    server.shutdown().await;
}
