//! End to end: what happens to deployments over time, on a real server (`127.0.0.1:0`) whose
//! controller has a node of declared resources. Replicas that panic or fail their health check
//! are replaced; constructors are retried, or the deploy is refused; sessions stick to a replica;
//! GPUs are placed and given back; autoscaling follows the load within the node; shutdown drains;
//! an agent that blocks its thread stalls nothing else.
//!
//! Each test starts its own server on its own `Controller`, so no two tests share resources; an
//! agent whose statics a test reads exactly belongs to that test alone.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use http::StatusCode;
use rayai::prelude::*;
use rayai::{
    AutoscalingConfig, Controller, Deployment, DeploymentHandle, DeploymentState, DeploymentStatus,
    NodeResources, Server,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use common::{
    EXCHANGE_TIMEOUT, Reply, eventually, get, open_post, post, post_with, serve_on, start_on,
    start_post, within,
};

/// How long a test waits for a condition it polls.
const POLL: Duration = Duration::from_secs(5);

const GIB: u64 = 1 << 30;

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

fn chat(agent: &str) -> String {
    format!("/agents/{agent}/chat")
}

/// The error and its causes on one line, as a log shows it (`Display` is one level only).
fn error_text(error: &rayai::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The running deployment `name` of `server`.
async fn handle(server: &Server, name: &str) -> DeploymentHandle {
    server
        .deployment(name)
        .await
        .unwrap_or_else(|| panic!("`{name}` is deployed"))
}

/// The status of `name` in `server.status()`.
async fn status_of(server: &Server, name: &str) -> DeploymentStatus {
    server
        .status()
        .await
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
        let status = status_of(server, name).await;
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

/// The highest target and running replica counts of a deployment, sampled every 2 ms in the
/// background until dropped.
struct Peaks {
    target: Arc<AtomicU32>,
    running: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Peaks {
    fn watch(deployment: DeploymentHandle) -> Peaks {
        let target = Arc::new(AtomicU32::new(0));
        let running = Arc::new(AtomicU32::new(0));
        let (t, r) = (target.clone(), running.clone());
        let task = tokio::spawn(async move {
            loop {
                let s = deployment.status();
                t.fetch_max(s.target_replicas, Ordering::SeqCst);
                r.fetch_max(s.running_replicas, Ordering::SeqCst);
                tokio::time::sleep(ms(2)).await;
            }
        });
        Peaks {
            target,
            running,
            task,
        }
    }

    fn target(&self) -> u32 {
        self.target.load(Ordering::SeqCst)
    }

    fn running(&self) -> u32 {
        self.running.load(Ordering::SeqCst)
    }
}

impl Drop for Peaks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Agents that answer with what their replica was told at construction.

/// A replica's id and GPU ids, from its `ReplicaContext`.
#[derive(Debug, Clone)]
struct Me {
    replica: String,
    gpus: Vec<u32>,
}

impl Me {
    fn of(ctx: &ReplicaContext) -> Me {
        Me {
            replica: ctx.replica_id().to_owned(),
            gpus: ctx.gpu_ids().to_vec(),
        }
    }

    fn json(&self) -> Value {
        json!({ "replica": self.replica, "gpus": self.gpus })
    }
}

/// The replica that answered a 200 from one of the `Me` agents.
fn replica_of(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()["result"]["replica"]
        .as_str()
        .unwrap_or_else(|| panic!("no replica in {}", reply.body))
        .to_owned()
}

/// The GPU ids in a 200 from one of the `Me` agents.
fn gpus_of(reply: &Reply) -> Vec<u32> {
    serde_json::from_value(reply.json()["result"]["gpus"].clone())
        .unwrap_or_else(|e| panic!("no GPU ids in {} ({e})", reply.body))
}

/// Sends requests to `agent` until `replicas` distinct replicas have answered; their GPU ids by
/// replica id.
async fn gpus_by_replica(
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
struct Panicky(Me);

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
struct Flaky(Me);

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
static SECOND_TIME_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Its constructor fails on the first attempt and succeeds after.
#[agent(name = "second_time", num_cpus = 0.1, memory = "16MB")]
struct SecondTime(Me);

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
static BROKEN_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

const BROKEN_MESSAGE: &str = "model weights not found at /nowhere/broken.bin";

/// Its constructor always fails.
#[agent(name = "broken", num_cpus = 0.1, memory = "16MB")]
struct Broken;

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
struct HalfBroken;

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
struct Sticky(Me);

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
struct HalfGpu(Me);

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
struct WholeGpu(Me);

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
fn one_gpu_app() -> App {
    App::new().deployment(Deployment::agent::<WholeGpu>().map_config(|c| c.with_num_replicas(1)))
}

/// Constructions of [`CpuHungry`].
static CPU_HUNGRY_BUILT: AtomicU32 = AtomicU32::new(0);

/// Four replicas of half a CPU: two CPUs in all.
#[agent(name = "cpu_hungry", num_cpus = 0.5, memory = "16MB", num_replicas = 4)]
struct CpuHungry;

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
struct Slow(Me);

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
fn autoscaled_slow(config: AutoscalingConfig, num_cpus: f64) -> App {
    App::new().deployment(
        Deployment::agent::<Slow>()
            .map_config(|c| c.with_autoscaling(config).with_num_cpus(num_cpus)),
    )
}

/// When [`Ticker`]'s stream finished, after its last chunk.
static TICKER_ENDED: Mutex<Option<Instant>> = Mutex::new(None);

/// Streams `tick 1` to `tick 5`, 100 ms apart.
#[agent(name = "ticker", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct Ticker;

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
static BLOCKER_STARTED: AtomicBool = AtomicBool::new(false);

/// Blocks its thread for a second per request.
#[agent(name = "blocker", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct Blocker;

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
struct Quick;

impl Agent for Quick {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "quick": true }))
    }
}

// ---------------------------------------------------------------------------------------------
// Replicas that die are replaced.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicked_replica_is_replaced_and_no_later_request_fails() {
    let server = serve_on(node(), App::new().agent::<Panicky>()).await;
    let addr = server.local_addr();

    let r = post(addr, &chat("panicky"), r#"{"data": {"panic": true}}"#).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
    assert!(detail.contains("panicky was asked to panic"), "{detail:?}");

    for i in 0..30 {
        let r = post(addr, &chat("panicky"), r#"{"data": {}}"#).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "request {i} after the panic: {}",
            r.body
        );
    }
    let s = until_status(
        &server,
        "panicky",
        "2 running replicas, one a replacement",
        |s| {
            s.running_replicas == 2
                && s.replicas_started >= 3
                && s.status == DeploymentState::Healthy
        },
    )
    .await;
    assert_eq!(s.target_replicas, 2, "{s:#?}");
    assert!(
        s.replicas
            .iter()
            .all(|r| r.state == rayai::ReplicaState::Running),
        "{s:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_after_the_only_replica_panicked_waits_for_its_replacement() {
    let lone = Deployment::agent::<Panicky>().map_config(|c| c.with_num_replicas(1));
    let server = serve_on(node(), App::new().deployment(lone)).await;
    let addr = server.local_addr();
    let first = replica_of(&post(addr, &chat("panicky"), r#"{"data": {}}"#).await);

    let r = post(addr, &chat("panicky"), r#"{"data": {"panic": true}}"#).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    let r = post(addr, &chat("panicky"), r#"{"data": {}}"#).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the request right after the panic: {}",
        r.body
    );
    assert_ne!(
        replica_of(&r),
        first,
        "answered by the replica that panicked"
    );

    let s = status_of(&server, "panicky").await;
    assert_eq!(s.replicas_started, 2, "{s:#?}");
    assert_eq!(s.running_replicas, 1, "{s:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_that_fails_its_health_check_is_replaced() {
    let flaky = Deployment::agent::<Flaky>().map_config(|c| c.with_health_check_period(ms(100)));
    let server = serve_on(node(), App::new().deployment(flaky)).await;
    let addr = server.local_addr();
    let before = status_of(&server, "flaky").await;
    assert_eq!(before.replicas.len(), 1, "{before:#?}");
    let old = before.replicas[0].replica_id.clone();

    let r = post(addr, &chat("flaky"), r#"{"data": {"fail_health": true}}"#).await;
    assert_eq!(replica_of(&r), old);

    let after = until_status(
        &server,
        "flaky",
        "a new replica in place of the unhealthy one",
        |s| {
            s.replicas_started > before.replicas_started
                && s.running_replicas == 1
                && s.replicas.len() == 1
                && s.replicas[0].replica_id != old
        },
    )
    .await;
    let new = after.replicas[0].replica_id.clone();
    let r = post(addr, &chat("flaky"), r#"{"data": {}}"#).await;
    assert_eq!(replica_of(&r), new, "{after:#?}");
    until_status(&server, "flaky", "HEALTHY with the new replica", |s| {
        s.status == DeploymentState::Healthy && s.replicas[0].replica_id == new
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Constructors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constructor_that_fails_once_is_retried_and_the_deploy_succeeds() {
    let server = serve_on(node(), App::new().agent::<SecondTime>()).await;
    let s = status_of(&server, "second_time").await;
    assert_eq!(SECOND_TIME_ATTEMPTS.load(Ordering::SeqCst), 2);
    assert_eq!(s.replicas.len(), 1, "{s:#?}");
    assert_eq!(s.replicas[0].starts, 2, "{s:#?}");
    assert_eq!(
        s.replicas_started, 1,
        "a retry is not a new replica: {s:#?}"
    );

    let r = post(server.local_addr(), &chat("second_time"), r#"{"data": {}}"#).await;
    assert_eq!(replica_of(&r), s.replicas[0].replica_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constructor_that_always_fails_fails_the_deploy_and_routes_nothing() {
    let server = start_on(node()).await;
    let addr = server.local_addr();

    let err = server
        .deploy(App::new().agent::<Broken>(), "/")
        .await
        .expect_err("a deploy whose constructor always fails");
    let text = error_text(&err);
    assert!(text.contains(BROKEN_MESSAGE), "{text}");
    assert!(
        text.contains("broken"),
        "the error names the deployment: {text}"
    );
    assert!(
        BROKEN_ATTEMPTS.load(Ordering::SeqCst) >= 2,
        "the constructor was retried"
    );

    let routes = get(addr, "/-/routes").await;
    assert_eq!(routes.status, StatusCode::OK);
    assert_eq!(routes.json(), json!({}), "nothing is routed");
    let r = post(addr, &chat("broken"), r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert!(
        r.body.starts_with("Path '/agents/broken/chat' not found"),
        "{}",
        r.body
    );
    assert!(server.status().await.is_empty());
    assert!(server.controller().status().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deploy_gives_back_what_its_started_replicas_reserved() {
    // One CPU: `half_broken` reserves 2 x 0.5; replica #0 starts, replica #1 never does.
    let server = start_on(Controller::new(NodeResources::new(1.0, GIB))).await;
    let err = server
        .deploy(App::new().agent::<HalfBroken>(), "/")
        .await
        .expect_err("replica #1 cannot start");
    assert!(
        error_text(&err).contains("cannot load"),
        "{}",
        error_text(&err)
    );

    // Nothing runs, so the whole CPU is free again.
    let whole_cpu = Deployment::agent::<Quick>().map_config(|c| c.with_num_cpus(1.0));
    let deployed = server.deploy(App::new().deployment(whole_cpu), "/").await;
    if let Err(e) = &deployed {
        panic!("the node's CPU was not given back: {}", error_text(e));
    }
    let r = post(server.local_addr(), &chat("quick"), r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_redeploy_leaves_the_running_app_serving() {
    let server = serve_on(node(), App::new().agent::<Quick>()).await;
    let addr = server.local_addr();
    assert_eq!(
        post(addr, &chat("quick"), r#"{"data": {}}"#).await.status,
        StatusCode::OK
    );

    // A new version of `quick` whose constructor always fails.
    let broken_quick = Deployment::agent::<Broken>().map_config(|c| c.with_name("quick"));
    let err = server
        .deploy(App::new().deployment(broken_quick), "/")
        .await
        .expect_err("the new version cannot start");
    assert!(
        error_text(&err).contains(BROKEN_MESSAGE),
        "{}",
        error_text(&err)
    );

    // "Nothing changes on error": the old version still answers.
    let r = post(addr, &chat("quick"), r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        r#"{"result":{"quick":true},"session_id":"default"}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Sticky sessions.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stays_on_one_replica_and_the_default_session_spreads() {
    let server = serve_on(node(), App::new().agent::<Sticky>()).await;
    let addr = server.local_addr();

    let mut alice = BTreeSet::new();
    for _ in 0..10 {
        let r = post(
            addr,
            &chat("sticky"),
            r#"{"data": {}, "session_id": "alice"}"#,
        )
        .await;
        assert_eq!(r.json()["session_id"], "alice");
        alice.insert(replica_of(&r));
    }
    assert_eq!(alice.len(), 1, "alice's requests went to {alice:?}");

    let mut bob = BTreeSet::new();
    for _ in 0..10 {
        let r = post_with(
            addr,
            &chat("sticky"),
            &[("x-session-id", "bob")],
            r#"{"data": {}}"#,
        )
        .await;
        assert_eq!(
            r.json()["session_id"],
            "default",
            "the header does not change the body"
        );
        bob.insert(replica_of(&r));
    }
    assert_eq!(
        bob.len(),
        1,
        "bob's requests (x-session-id) went to {bob:?}"
    );

    let mut anyone = BTreeSet::new();
    for _ in 0..40 {
        anyone.insert(replica_of(
            &post(addr, &chat("sticky"), r#"{"data": {}}"#).await,
        ));
    }
    assert!(
        anyone.len() >= 2,
        "40 default-session requests all went to {anyone:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// GPUs and the resource plan.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_half_gpu_replicas_share_gpu_0() {
    let server = serve_on(gpu_node(2), App::new().agent::<HalfGpu>()).await;
    let seen = gpus_by_replica(server.local_addr(), "half_gpu", 2).await;
    assert!(seen.values().all(|gpus| gpus == &[0]), "{seen:?}");

    let s = status_of(&server, "half_gpu").await;
    let in_status: BTreeMap<String, Vec<u32>> = s
        .replicas
        .iter()
        .map(|r| (r.replica_id.clone(), r.gpu_ids.clone()))
        .collect();
    assert_eq!(in_status, seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_whole_gpu_replicas_get_distinct_gpus() {
    let server = serve_on(gpu_node(2), App::new().agent::<WholeGpu>()).await;
    let seen = gpus_by_replica(server.local_addr(), "whole_gpu", 2).await;
    let ids: BTreeSet<Vec<u32>> = seen.values().cloned().collect();
    assert_eq!(ids, BTreeSet::from([vec![0], vec![1]]), "{seen:?}");

    let s = status_of(&server, "whole_gpu").await;
    let in_status: BTreeMap<String, Vec<u32>> = s
        .replicas
        .iter()
        .map(|r| (r.replica_id.clone(), r.gpu_ids.clone()))
        .collect();
    assert_eq!(in_status, seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_whole_gpu_replicas_than_gpus_is_refused_with_the_plan() {
    let server = start_on(gpu_node(2)).await;
    let three = Deployment::agent::<WholeGpu>().map_config(|c| c.with_num_replicas(3));
    let err = server
        .deploy(App::new().deployment(three), "/")
        .await
        .expect_err("3 whole GPUs do not fit on 2");
    let text = error_text(&err);
    assert!(text.contains("Resource Planning"), "{text}");
    assert!(text.contains("whole_gpu"), "{text}");
    assert!(text.contains("GPUs: need 3.0, node has 2"), "{text}");
    assert!(server.status().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infeasible_cpus_are_refused_with_the_plan_and_nothing_starts() {
    let server = start_on(Controller::new(NodeResources::new(1.0, GIB))).await;
    let app = App::new().agent::<CpuHungry>();

    let plan = server.controller().plan(&app);
    assert!(!plan.fits(), "{plan}");
    assert_eq!(plan.shortages(), ["CPUs: need 2.0, node has 1.0"], "{plan}");
    let table = plan.to_string();
    assert!(table.starts_with("Resource Planning\n"), "{table}");
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("cpu_hungry "))
        .unwrap_or_else(|| panic!("no cpu_hungry row in {table}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            "cpu_hungry",
            "4",
            "0.5",
            "0",
            "16.0MiB",
            "2.00",
            "0",
            "64.0MiB"
        ],
        "{table}"
    );

    let err = server
        .deploy(app, "/")
        .await
        .expect_err("2 CPUs do not fit on 1");
    let text = error_text(&err);
    assert!(text.contains(&table), "the error carries the plan:\n{text}");

    assert_eq!(
        CPU_HUNGRY_BUILT.load(Ordering::SeqCst),
        0,
        "no replica was built"
    );
    assert!(server.status().await.is_empty());
    assert!(server.controller().status().is_empty());
    assert_eq!(
        get(server.local_addr(), "/-/routes").await.json(),
        json!({})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploying_an_app_hands_its_gpu_to_the_new_replica() {
    let server = serve_on(gpu_node(1), one_gpu_app()).await;
    let addr = server.local_addr();
    assert_eq!(
        gpus_of(&post(addr, &chat("whole_gpu"), r#"{"data": {}}"#).await),
        [0]
    );

    // While it runs, the GPU is taken: another app that wants one is refused.
    let other = Deployment::agent::<WholeGpu>()
        .map_config(|c| c.with_name("other_gpu").with_num_replicas(1));
    let err = server
        .deploy(App::new().deployment(other), "/")
        .await
        .expect_err("the only GPU is taken");
    assert!(error_text(&err).contains("GPUs"), "{}", error_text(&err));

    // The same app again replaces the old one, whose GPU comes back for the new replica.
    if let Err(e) = server.deploy(one_gpu_app(), "/").await {
        panic!("the redeploy did not get the GPU back: {}", error_text(&e));
    }
    let s = status_of(&server, "whole_gpu").await;
    assert_eq!(s.running_replicas, 1, "{s:#?}");
    assert_eq!(s.replicas[0].gpu_ids, [0], "{s:#?}");
    assert_eq!(
        gpus_of(&post(addr, &chat("whole_gpu"), r#"{"data": {}}"#).await),
        [0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shut_down_server_gives_its_gpu_back_to_the_node() {
    let controller = gpu_node(1);
    let first = serve_on(controller.clone(), one_gpu_app()).await;
    within(POLL, "the first server to shut down", first.shutdown()).await;

    let second = start_on(controller).await;
    if let Err(e) = second.deploy(one_gpu_app(), "/").await {
        panic!(
            "the GPU of the shut-down app was not given back: {}",
            error_text(&e)
        );
    }
    let r = post(second.local_addr(), &chat("whole_gpu"), r#"{"data": {}}"#).await;
    assert_eq!(gpus_of(&r), [0]);
}

// ---------------------------------------------------------------------------------------------
// Autoscaling.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_deployment_scales_to_zero_and_back_on_the_first_request() {
    let config = AutoscalingConfig::new(0, 2, 1.0)
        .with_upscale_delay(Duration::ZERO)
        .with_downscale_delay(ms(300))
        .with_downscale_to_zero_delay(ms(300));
    let server = serve_on(node(), autoscaled_slow(config, 0.1)).await;
    let addr = server.local_addr();
    let s = status_of(&server, "slow").await;
    assert_eq!(
        (s.target_replicas, s.running_replicas, s.replicas_started),
        (0, 0, 0),
        "{s:#?}"
    );

    let r = post(addr, &chat("slow"), r#"{"data": {"ms": 0}}"#).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the first request to zero replicas: {}",
        r.body
    );
    let s = status_of(&server, "slow").await;
    assert_eq!((s.running_replicas, s.replicas_started), (1, 1), "{s:#?}");

    until_status(
        &server,
        "slow",
        "0 replicas once the traffic stopped",
        |s| s.target_replicas == 0 && s.running_replicas == 0,
    )
    .await;

    let r = post(addr, &chat("slow"), r#"{"data": {"ms": 0}}"#).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a request after scaling to zero: {}",
        r.body
    );
    assert_eq!(status_of(&server, "slow").await.replicas_started, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_scales_replicas_up_to_max_and_back_down_to_min() {
    let config = AutoscalingConfig::new(1, 3, 1.0)
        .with_upscale_delay(Duration::ZERO)
        .with_downscale_delay(ms(200));
    let server = serve_on(node(), autoscaled_slow(config, 0.1)).await;
    let addr = server.local_addr();
    let s = status_of(&server, "slow").await;
    assert_eq!((s.target_replicas, s.running_replicas), (1, 1), "{s:#?}");
    let peaks = Peaks::watch(handle(&server, "slow").await);

    let requests: Vec<_> = (0..3)
        .map(|_| start_post(addr, &chat("slow"), r#"{"data": {"ms": 300}}"#))
        .collect();
    until_status(
        &server,
        "slow",
        "3 replicas for 3 concurrent requests",
        |s| s.target_replicas == 3 && s.running_replicas == 3,
    )
    .await;
    for r in requests {
        let r = r.reply().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    until_status(&server, "slow", "back to 1 replica after the load", |s| {
        s.target_replicas == 1 && s.running_replicas == 1
    })
    .await;
    assert!(
        peaks.target() <= 3,
        "the target reached {}, above max_replicas",
        peaks.target()
    );
    assert!(
        peaks.running() <= 3,
        "{} replicas ran, above max_replicas",
        peaks.running()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_stops_at_what_the_node_holds_and_says_so() {
    // One CPU holds two replicas of 0.5; four concurrent requests ask for four.
    let config = AutoscalingConfig::new(1, 4, 1.0)
        .with_upscale_delay(Duration::ZERO)
        .with_downscale_delay(ms(200));
    let controller = Controller::new(NodeResources::new(1.0, GIB));
    let server = serve_on(controller, autoscaled_slow(config, 0.5)).await;
    let addr = server.local_addr();
    let peaks = Peaks::watch(handle(&server, "slow").await);

    let requests: Vec<_> = (0..4)
        .map(|_| start_post(addr, &chat("slow"), r#"{"data": {"ms": 600}}"#))
        .collect();
    let s = until_status(
        &server,
        "slow",
        "2 replicas, limited by node resources",
        |s| s.running_replicas == 2 && s.message.contains("node resources"),
    )
    .await;
    assert!(
        s.message
            .contains("limited to 2 replicas by node resources"),
        "{:?}",
        s.message
    );
    for r in requests {
        let r = r.reply().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert!(
        peaks.running() <= 2,
        "{} replicas ran on a node that holds 2",
        peaks.running()
    );
    assert!(
        peaks.target() <= 2,
        "the target reached {} on a node that holds 2",
        peaks.target()
    );
}

// ---------------------------------------------------------------------------------------------
// Shutdown and isolation.

/// Whether a new connection to `addr` is turned away: refused, or closed without a response.
/// Panics when it is served a `200`: `/-/healthz` says 503 from the moment shutdown begins.
async fn turned_away(addr: std::net::SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return true;
    };
    let request = b"GET /-/healthz HTTP/1.1\r\nhost: rayai\r\nconnection: close\r\n\r\n";
    if tcp.write_all(request).await.is_err() {
        return true;
    }
    let mut answer = Vec::new();
    within(EXCHANGE_TIMEOUT, "the server to answer or close", async {
        // A reset counts as closing.
        let _ = tcp.read_to_end(&mut answer).await;
    })
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "a connection made after shutdown began was served: {answer:?}"
    );
    answer.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_stream_finish_and_turns_new_connections_away() {
    let server = serve_on(node(), App::new().agent::<Ticker>()).await;
    let addr = server.local_addr();
    let mut stream = open_post(addr, &chat("ticker"), r#"{"data": {}, "stream": "text"}"#).await;
    assert_eq!(stream.status, StatusCode::OK);
    let mut body = String::new();
    while !body.contains("tick 1") {
        let frame = stream
            .frame(EXCHANGE_TIMEOUT)
            .await
            .expect("the first chunk");
        body.push_str(&String::from_utf8_lossy(&frame));
    }

    let stopping = {
        let server = server.clone();
        tokio::spawn(async move {
            server.shutdown().await;
            Instant::now()
        })
    };
    eventually(POLL, "new connections to be turned away", || {
        turned_away(addr)
    })
    .await;

    while let Some(frame) = stream.frame(EXCHANGE_TIMEOUT).await {
        body.push_str(&String::from_utf8_lossy(&frame));
    }
    assert_eq!(
        body,
        "data: tick 1\n\ndata: tick 2\n\ndata: tick 3\n\ndata: tick 4\n\ndata: tick 5\n\n\
         data: {\"type\": \"done\"}\n\n"
    );

    let returned = within(POLL, "shutdown to return", stopping)
        .await
        .expect("the shutdown task");
    let ended = TICKER_ENDED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .expect("the stream ran to its end");
    assert!(
        returned >= ended,
        "shutdown returned before the stream ended"
    );
    assert!(
        turned_away(addr).await,
        "a connection after shutdown was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_blocking_its_thread_stalls_neither_other_agents_nor_healthz() {
    let app = App::new().agent::<Blocker>().agent::<Quick>();
    let server = serve_on(node(), app).await;
    let addr = server.local_addr();

    let blocked = start_post(addr, &chat("blocker"), r#"{"data": {}}"#);
    eventually(POLL, "the blocking request to start", || async {
        BLOCKER_STARTED.load(Ordering::SeqCst)
    })
    .await;
    let started = Instant::now();

    let path = chat("quick");
    let quick = (0..20).map(|_| post(addr, &path, r#"{"data": {}}"#));
    let (replies, health) = tokio::join!(futures::future::join_all(quick), get(addr, "/-/healthz"));
    let elapsed = started.elapsed();
    assert!(
        !blocked.is_finished(),
        "the blocking request returned first ({elapsed:?})"
    );
    for r in &replies {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "success")
    );
    assert!(
        elapsed < Duration::from_secs(1),
        "20 requests took {elapsed:?}"
    );

    let r = blocked.reply().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
