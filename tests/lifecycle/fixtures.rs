//! The agents of these tests. Most answer with what their replica was told at construction (its
//! id and GPU ids); each shows one way a deployment lives or dies. An agent whose statics a test
//! reads belongs to that test alone.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use http::StatusCode;
use rayai::prelude::*;
use rayai::{AutoscalingConfig, Deployment};
use tokio::time::Instant;

use crate::common::{Reply, post};
use crate::{POLL, chat, ms};

/// A replica's id and GPU ids, from its `ReplicaContext`.
#[derive(Debug, Clone)]
struct Me {
    replica: String,
    gpus: Vec<u32>,
}

impl Me {
    /// What `ctx` tells a replica.
    fn of(ctx: &ReplicaContext) -> Me {
        Me {
            replica: ctx.replica_id().to_owned(),
            gpus: ctx.gpu_ids().to_vec(),
        }
    }

    /// The answer of a `Me` agent.
    fn json(&self) -> Value {
        json!({ "replica": self.replica, "gpus": self.gpus })
    }
}

/// The replica that answered a 200 from one of the `Me` agents.
pub(crate) fn replica_of(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()["result"]["replica"]
        .as_str()
        .unwrap_or_else(|| panic!("no replica in {}", reply.body))
        .to_owned()
}

/// The GPU ids in a 200 from one of the `Me` agents.
pub(crate) fn gpus_of(reply: &Reply) -> Vec<u32> {
    serde_json::from_value(reply.json()["result"]["gpus"].clone())
        .unwrap_or_else(|e| panic!("no GPU ids in {} ({e})", reply.body))
}

/// Sends requests to `agent` until `replicas` distinct replicas have answered; their GPU ids by
/// replica id.
pub(crate) async fn gpus_by_replica(
    addr: std::net::SocketAddr,
    agent: &str,
    replicas: usize,
) -> BTreeMap<String, Vec<u32>> {
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + POLL;
    while seen.len() < replicas {
        assert!(
            Instant::now() < deadline,
            "only {seen:?} of {replicas} replicas of `{agent}` answered within {POLL:?}"
        );
        let reply = post(addr, &chat(agent), r#"{"data": {}}"#).await;
        seen.insert(replica_of(&reply), gpus_of(&reply));
    }
    seen
}

/// Panics on `{"panic": true}`; otherwise answers with its replica.
#[agent(name = "panicky", num_cpus = 0.1, memory = "16MB", num_replicas = 2)]
pub(crate) struct Panicky(Me);

impl Construct for Panicky {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(Panicky(Me::of(&ctx)))
    }
}

impl Agent for Panicky {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        if data["panic"] == true {
            panic!("panicky was asked to panic");
        }
        Ok(self.0.json())
    }
}

/// Set by `{"fail_health": true}`; the next health check fails and clears it (fail once).
static FLAKY_FAIL_NEXT_CHECK: AtomicBool = AtomicBool::new(false);

/// Fails one health check when told to; answers with its replica.
#[agent(name = "flaky", num_cpus = 0.1, memory = "16MB")]
pub(crate) struct Flaky(Me);

impl Construct for Flaky {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(Flaky(Me::of(&ctx)))
    }
}

impl Agent for Flaky {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        if data["fail_health"] == true {
            FLAKY_FAIL_NEXT_CHECK.store(true, Ordering::SeqCst);
        }
        Ok(self.0.json())
    }

    async fn check_health(&self) -> Result<(), AgentError> {
        if FLAKY_FAIL_NEXT_CHECK.swap(false, Ordering::SeqCst) {
            return Err(AgentError::new("flaky was told to fail its health check"));
        }
        Ok(())
    }
}

/// Constructor attempts of [`SecondTime`].
pub(crate) static SECOND_TIME_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Its constructor fails on the first attempt and succeeds after.
#[agent(name = "second_time", num_cpus = 0.1, memory = "16MB")]
pub(crate) struct SecondTime(Me);

impl Construct for SecondTime {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        if SECOND_TIME_ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(AgentError::new("second_time fails its first attempt"));
        }
        Ok(SecondTime(Me::of(&ctx)))
    }
}

impl Agent for SecondTime {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(self.0.json())
    }
}

/// Constructor attempts of [`Broken`].
pub(crate) static BROKEN_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// The error of [`Broken`]'s constructor.
pub(crate) const BROKEN_MESSAGE: &str = "model weights not found at /nowhere/broken.bin";

/// Its constructor always fails.
#[agent(name = "broken", num_cpus = 0.1, memory = "16MB")]
pub(crate) struct Broken;

impl Construct for Broken {
    async fn construct(_ctx: ReplicaContext) -> Result<Self, AgentError> {
        BROKEN_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
        Err(AgentError::new(BROKEN_MESSAGE))
    }
}

impl Agent for Broken {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({}))
    }
}

/// Two replicas of half a CPU: replica `#0` starts, replica `#1` never does.
#[agent(
    name = "half_broken",
    num_cpus = 0.5,
    memory = "16MB",
    num_replicas = 2
)]
pub(crate) struct HalfBroken;

impl Construct for HalfBroken {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        if ctx.replica_id().ends_with("#1") {
            return Err(AgentError::new("replica #1 of half_broken cannot load"));
        }
        Ok(HalfBroken)
    }
}

impl Agent for HalfBroken {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({}))
    }
}

/// Answers with its replica, for session stickiness.
#[agent(name = "sticky", num_cpus = 0.1, memory = "16MB", num_replicas = 4)]
pub(crate) struct Sticky(Me);

impl Construct for Sticky {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(Sticky(Me::of(&ctx)))
    }
}

impl Agent for Sticky {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(self.0.json())
    }
}

/// Half a GPU per replica; answers with its replica and GPU ids.
#[agent(
    name = "half_gpu",
    num_cpus = 0.1,
    memory = "16MB",
    num_gpus = 0.5,
    num_replicas = 2
)]
pub(crate) struct HalfGpu(Me);

impl Construct for HalfGpu {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(HalfGpu(Me::of(&ctx)))
    }
}

impl Agent for HalfGpu {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(self.0.json())
    }
}

/// One whole GPU per replica; answers with its replica and GPU ids.
#[agent(
    name = "whole_gpu",
    num_cpus = 0.1,
    memory = "16MB",
    num_gpus = 1,
    num_replicas = 2
)]
pub(crate) struct WholeGpu(Me);

impl Construct for WholeGpu {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(WholeGpu(Me::of(&ctx)))
    }
}

impl Agent for WholeGpu {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(self.0.json())
    }
}

/// `whole_gpu` with one replica: an app that takes a one-GPU node's only GPU.
pub(crate) fn one_gpu_app() -> App {
    App::new().deployment(Deployment::agent::<WholeGpu>().map_config(|c| c.with_num_replicas(1)))
}

/// Constructions of [`CpuHungry`].
pub(crate) static CPU_HUNGRY_BUILT: AtomicU32 = AtomicU32::new(0);

/// Four replicas of half a CPU: two CPUs in all.
#[agent(name = "cpu_hungry", num_cpus = 0.5, memory = "16MB", num_replicas = 4)]
pub(crate) struct CpuHungry;

impl Construct for CpuHungry {
    async fn construct(_ctx: ReplicaContext) -> Result<Self, AgentError> {
        CPU_HUNGRY_BUILT.fetch_add(1, Ordering::SeqCst);
        Ok(CpuHungry)
    }
}

impl Agent for CpuHungry {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({}))
    }
}

/// Sleeps `data.ms` milliseconds (asynchronously), then answers with its replica. The
/// autoscaling tests give it their configuration with `map_config`.
#[agent(name = "slow", num_cpus = 0.1, memory = "16MB")]
pub(crate) struct Slow(Me);

impl Construct for Slow {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(Slow(Me::of(&ctx)))
    }
}

impl Agent for Slow {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let millis = data["ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(ms(millis)).await;
        Ok(self.0.json())
    }
}

/// `slow`, autoscaling with `config`, on replicas of `num_cpus`.
pub(crate) fn autoscaled_slow(config: AutoscalingConfig, num_cpus: f64) -> App {
    App::new().deployment(
        Deployment::agent::<Slow>()
            .map_config(|c| c.with_autoscaling(config).with_num_cpus(num_cpus)),
    )
}

/// When [`Ticker`]'s stream finished, after its last chunk.
pub(crate) static TICKER_ENDED: Mutex<Option<Instant>> = Mutex::new(None);

/// Streams `tick 1` to `tick 5`, 100 ms apart.
#[agent(name = "ticker", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
pub(crate) struct Ticker;

impl Agent for Ticker {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({}))
    }

    fn run_stream(&self, _data: Value) -> Option<TextStream<'_>> {
        Some(
            try_stream! {
                for i in 1..=5 {
                    if i > 1 {
                        tokio::time::sleep(ms(100)).await;
                    }
                    yield format!("tick {i}");
                }
                *TICKER_ENDED.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
            .boxed(),
        )
    }
}

/// Set when [`Blocker`]'s `run` starts.
pub(crate) static BLOCKER_STARTED: AtomicBool = AtomicBool::new(false);

/// Blocks its thread for a second per request.
#[agent(name = "blocker", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
pub(crate) struct Blocker;

impl Agent for Blocker {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        BLOCKER_STARTED.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(1));
        Ok(json!({ "blocked_ms": 1000 }))
    }
}

/// Answers at once.
#[agent(name = "quick", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
pub(crate) struct Quick;

impl Agent for Quick {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "quick": true }))
    }
}
