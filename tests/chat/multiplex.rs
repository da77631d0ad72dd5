//! Model multiplexing end to end (`docs/contract.md`, "Model multiplexing"): requests for four
//! models over two replicas that hold two each settle where their model is, so each model loads
//! about once; a handle's model id routes the same way; an evicted model is unloaded; the
//! replicas' metrics say what they hold.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use rayai::prelude::*;
use rayai::{Deployment, DeploymentConfig, HttpOptions};
use serde_json::Value;

use crate::common::{get, post_with, serve};

/// The models loaded by every test's replicas of [`Adapters`] (each test names its own).
static LOADED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static UNLOADS: AtomicU32 = AtomicU32::new(0);

/// How many loads of models whose id starts with `prefix`.
fn loads(prefix: &str) -> u32 {
    let loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    loaded.iter().filter(|id| id.starts_with(prefix)).count() as u32
}

/// Two replicas, each holding at most two models; answers which replica served which model.
#[agent(
    num_cpus = 0.1,
    memory = "32MB",
    num_replicas = 2,
    max_ongoing_requests = 4
)]
struct Adapters {
    replica: String,
    models: ModelCache<String>,
}

impl Construct for Adapters {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        let models = ModelCache::new(&ctx, 2, |id: String| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            LOADED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(id.clone());
            Ok(format!("weights of {id}"))
        })
        .on_unload(|_id, _model: Arc<String>| async {
            UNLOADS.fetch_add(1, Ordering::SeqCst);
        });
        Ok(Adapters {
            replica: ctx.replica_id().to_owned(),
            models,
        })
    }
}

impl Agent for Adapters {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        let model = self.models.current().await?;
        Ok(json!({ "replica": self.replica, "model": *model, "held": self.models.loaded() }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_a_model_go_where_it_is_loaded() {
    let options = HttpOptions {
        dashboard_port: Some(0),
        ..HttpOptions::default()
    };
    let server = serve(App::new().agent::<Adapters>(), options).await;
    let addr = server.local_addr();
    // 64 requests, 8 at a time, for four models in a scrambled order.
    let mut owner = std::collections::HashMap::new();
    for round in 0..8u32 {
        let calls = (0..8u32).map(|i| {
            let model = format!("adapter-{}", (round * 5 + i * 3) % 4);
            async move {
                let reply = post_with(
                    addr,
                    "/agents/adapters/chat",
                    &[("serve_multiplexed_model_id", &model)],
                    r#"{"data": {}}"#,
                )
                .await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                let answer: Value = serde_json::from_str(&reply.body).unwrap();
                (model, answer["result"].clone())
            }
        });
        for (model, result) in futures::future::join_all(calls).await {
            assert_eq!(result["model"], format!("weights of {model}"));
            owner
                .entry(model)
                .or_insert_with(Vec::new)
                .push(result["replica"].as_str().unwrap().to_owned());
        }
    }
    let loads = loads("adapter-");
    // Each model loads about once (4 when the machine is quiet; a busy one lets a first burst
    // reach a replica before its cache says what it holds). Without the router's affinity,
    // half the requests would load (about 32).
    assert!(
        loads <= 12,
        "four models over two replicas of two: {loads} loads for 64 requests ({owner:?})"
    );
    // Once settled, a model's requests stay on one replica.
    for (model, replicas) in &owner {
        let settled = &replicas[replicas.len() - 4..];
        assert!(
            settled.iter().all(|r| r == &settled[0]),
            "{model} moved: {replicas:?}"
        );
    }

    // The metrics say what each replica holds.
    let dashboard = server.dashboard_addr().expect("a dashboard");
    let metrics = get(dashboard, "/metrics").await.body;
    let registered = metrics
        .lines()
        .filter(|l| l.starts_with("ray_serve_registered_multiplexed_model_id{"))
        .count();
    assert_eq!(registered, 4, "{metrics}");
    let loaded: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ray_serve_multiplexed_models_load_counter_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(loaded, f64::from(loads));
    assert!(metrics.contains(
        "ray_serve_num_multiplexed_models{application=\"adapters-service\",deployment=\"adapters-deployment\",replica=\"adapters#0\"} 2"
    ), "{metrics}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_names_its_model_and_a_full_cache_unloads_the_least_recently_used() {
    let controller = rayai::Controller::new(rayai::NodeResources::new(4.0, 4 << 30));
    let config = DeploymentConfig::new("one").with_num_cpus(0.1);
    let one = Deployment::agent::<Adapters>().map_config(|_| config);
    controller
        .deploy_app(App::new().deployment(one), "/")
        .await
        .expect("deploys");
    let handle = controller.handle("one").expect("it runs");
    let unloads = UNLOADS.load(Ordering::SeqCst);
    for id in ["m-a", "m-b", "m-a", "m-c"] {
        let answer = handle
            .with_multiplexed_model_id(id)
            .call(json!({}))
            .await
            .expect("answers");
        assert_eq!(answer["model"], format!("weights of {id}"));
    }
    // `m-b` was the least recently used when `m-c` came.
    let held = handle
        .with_multiplexed_model_id("m-a")
        .call(json!({}))
        .await
        .unwrap()["held"]
        .clone();
    assert_eq!(held, json!(["m-c", "m-a"]));
    assert!(UNLOADS.load(Ordering::SeqCst) > unloads);
    // No model named: the agent's `current()` refuses.
    let e = handle.call(json!({})).await.expect_err("no model");
    assert!(e.to_string().contains("names no model"), "{e}");
    controller.shutdown(Duration::from_secs(1)).await;
}
