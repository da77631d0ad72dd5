//! End to end: model composition. The composition example (`examples/composition/apps.rs`) served
//! over real HTTP on `127.0.0.1:0` (pipeline, ensemble, router, streaming pipeline), and
//! deployment handles used outside HTTP on test-local deployments: by name and typed, with errors
//! and overload reaching the caller typed, a dropped call cancelling the callee, sticky sessions,
//! and an ingress whose constructor takes handles starting after what it composes.
//!
//! Each test runs its own `Controller` (a node of declared resources), so no two tests share
//! deployments; a test-local deployment whose statics a test reads belongs to that test alone.

mod common;

#[path = "../examples/composition/apps.rs"]
mod apps;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use rayai::prelude::*;
use rayai::{
    Controller, Deployment, DeploymentConfig, DeploymentHandle, Error, NodeResources, Server,
    TypedHandle,
};
use tokio::sync::Notify;

use common::{EXCHANGE_TIMEOUT, Reply, Streaming, eventually, open_post, post, serve_on, within};

// ---------------------------------------------------------------------------------------------
// Support
// ---------------------------------------------------------------------------------------------

/// A node of its own for each test.
fn node() -> NodeResources {
    NodeResources::new(64.0, 64 << 30)
}

/// The composition example served at `/` on a fresh server.
async fn composition() -> Server {
    serve_on(Controller::new(node()), apps::app()).await
}

/// `app` running on a fresh controller, with no server. The controller only keeps weak references
/// to its deployments: the returned handles are what keeps them running.
async fn deploy_locally(app: App) -> (Controller, Vec<DeploymentHandle>) {
    let controller = Controller::new(node());
    let handles = within(
        EXCHANGE_TIMEOUT,
        "the app to deploy",
        controller.deploy_app(app),
    )
    .await
    .expect("the app deploys");
    (controller, handles)
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

// ---------------------------------------------------------------------------------------------
// The example over HTTP
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_preprocesses_counts_and_formats() {
    let server = composition().await;
    let reply = post(
        server.local_addr(),
        "/pipeline",
        r#"{"text": "  Hello Big World "}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, r#"{"result":"3 words: hello big world"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_without_string_text_is_422_json() {
    let server = composition().await;
    let addr = server.local_addr();
    for body in [
        r#"{}"#,
        r#"{"text": 5}"#,
        r#"{"text": null}"#,
        r#"{"text": ["a"]}"#,
    ] {
        let reply = post(addr, "/pipeline", body).await;
        assert_unprocessable(&reply);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_answers_each_model_and_their_mean() {
    let server = composition().await;
    let reply = post(server.local_addr(), "/ensemble", r#"{"x": 3}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let body = reply.json();
    let output = |name: &str| {
        body["outputs"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("output `{name}` is a number: {body}"))
    };
    let (a, b, c) = (output("a"), output("b"), output("c"));
    assert_eq!((a, b, c), (6.0, 13.0, 9.0), "{body}");
    let combined = body["combined"].as_f64().expect("combined is a number");
    assert!((combined - (a + b + c) / 3.0).abs() < 1e-9, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_without_a_number_is_422_json() {
    let server = composition().await;
    let addr = server.local_addr();
    for body in [r#"{}"#, r#"{"x": "3"}"#, r#"{"x": null}"#] {
        let reply = post(addr, "/ensemble", body).await;
        assert_unprocessable(&reply);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_picks_the_model_by_kind() {
    let server = composition().await;
    let addr = server.local_addr();

    let a = post(addr, "/route", r#"{"kind": "a", "text": "Hello"}"#).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(
        a.json(),
        json!({ "model": "reverse_model", "result": { "text": "olleH" } })
    );

    let b = post(addr, "/route", r#"{"kind": "b", "text": "Hello"}"#).await;
    assert_eq!(b.status, StatusCode::OK, "{b:?}");
    assert_eq!(
        b.json(),
        json!({ "model": "upper_model", "result": { "text": "HELLO" } })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_with_another_kind_is_422_json() {
    let server = composition().await;
    let addr = server.local_addr();
    for body in [
        r#"{"kind": "c", "text": "Hello"}"#,
        r#"{"kind": "A", "text": "Hello"}"#,
        r#"{"text": "Hello"}"#,
        r#"{"kind": 1, "text": "Hello"}"#,
    ] {
        let reply = post(addr, "/route", body).await;
        assert_unprocessable(&reply);
    }
    // Nothing reached either model.
    for name in ["reverse_model", "upper_model"] {
        let model = server.deployment(name).await.expect("the model runs");
        let served: u64 = model.replicas().iter().map(|r| r.served).sum();
        assert_eq!(served, 0, "`{name}` served a refused request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_sends_each_token_as_produced_then_done() {
    let server = composition().await;
    let tokens = server
        .deployment("tokens")
        .await
        .expect("the token model runs");
    let response = open_post(server.local_addr(), "/stream", r#"{"n": 5}"#).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response
            .header("content-type")
            .starts_with("text/event-stream"),
        "{:?}",
        response.headers
    );
    let mut events = Events::new(response);

    let first = events.next().await;
    assert_eq!(first.as_deref(), Some("data: token0\n\n"));
    // The first token is in while the model still produces the rest: nothing more has arrived
    // with it, and the model's stream still holds its replica.
    assert!(
        events.buffer.is_empty(),
        "more arrived with the first token: {:?}",
        events.buffer
    );
    assert_eq!(
        ongoing(&tokens),
        1,
        "the token model had already finished when the first token arrived"
    );

    let mut rest = Vec::new();
    while let Some(event) = events.next().await {
        rest.push(event);
    }
    let expected: Vec<String> = (1..5)
        .map(|i| format!("data: token{i}\n\n"))
        .chain(["data: {\"type\": \"done\"}\n\n".to_owned()])
        .collect();
    assert_eq!(rest, expected);
    eventually(EXCHANGE_TIMEOUT, "the token model to be idle", || async {
        ongoing(&tokens) == 0
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Test-local deployments
// ---------------------------------------------------------------------------------------------

/// Greets `data.name`.
#[agent(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct Greeter;

impl Agent for Greeter {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let name = data.get("name").and_then(Value::as_str).unwrap_or("nobody");
        Ok(json!({ "greeting": format!("hello, {name}") }))
    }
}

/// Squares an integer: a typed deployment.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct Square;

impl Callable for Square {
    type Request = i64;
    type Response = i64;
    async fn call(&self, n: i64) -> Result<i64, AgentError> {
        Ok(n * n)
    }
}

/// Halves a float: a typed deployment whose types differ from [`Square`]'s.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct Halve;

impl Callable for Halve {
    type Request = f64;
    type Response = f64;
    async fn call(&self, x: f64) -> Result<f64, AgentError> {
        Ok(x / 2.0)
    }
}

/// Always refuses.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct Refuser;

impl Callable for Refuser {
    type Request = ();
    type Response = ();
    async fn call(&self, (): ()) -> Result<(), AgentError> {
        Err(AgentError::new("nope"))
    }
}

/// Always fails, as a JSON agent.
#[agent(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct FailingAgent;

impl Agent for FailingAgent {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Err(AgentError::new("agent says nope"))
    }
}

/// Opened by `busy_callee_rejects_a_second_call_with_backpressure` to let [`OneAtATime`] answer.
static ONE_AT_A_TIME_GATE: Notify = Notify::const_new();

/// Takes one request at a time and queues none; each waits for [`ONE_AT_A_TIME_GATE`].
#[deployment(
    num_cpus = 0.1,
    memory = "16MB",
    isolation = "shared",
    max_ongoing_requests = 1,
    max_queued_requests = 0
)]
#[derive(Default)]
struct OneAtATime;

impl Callable for OneAtATime {
    type Request = u32;
    type Response = u32;
    async fn call(&self, n: u32) -> Result<u32, AgentError> {
        ONE_AT_A_TIME_GATE.notified().await;
        Ok(n + 1)
    }
}

/// Callables that sleep 30 s and record in their flag when their future is dropped before that.
macro_rules! sleepers {
    ($($name:ident, $started:ident, $flag:ident, $doc:literal, #[$config:meta];)*) => {$(
        #[doc = concat!("Set when a [`", stringify!($name), "`] call starts running.")]
        static $started: AtomicBool = AtomicBool::new(false);

        #[doc = concat!("Set when a [`", stringify!($name), "`] call is dropped before it finished.")]
        static $flag: AtomicBool = AtomicBool::new(false);

        #[doc = $doc]
        #[$config]
        #[derive(Default)]
        struct $name;

        impl Callable for $name {
            type Request = ();
            type Response = ();
            async fn call(&self, (): ()) -> Result<(), AgentError> {
                struct OnCancel;
                impl Drop for OnCancel {
                    fn drop(&mut self) {
                        $flag.store(true, Ordering::SeqCst);
                    }
                }
                let on_cancel = OnCancel;
                $started.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(30)).await;
                std::mem::forget(on_cancel);
                Ok(())
            }
        }
    )*};
}

sleepers! {
    Sleeper, SLEEPER_STARTED, SLEEPER_CANCELLED,
    "Sleeps on a thread of its own (the default isolation): cancellation crosses runtimes.",
    #[deployment(num_cpus = 0.1, memory = "16MB")];
    SharedSleeper, SHARED_SLEEPER_STARTED, SHARED_SLEEPER_CANCELLED,
    "Sleeps on the caller's runtime (shared isolation).",
    #[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")];
}

/// Answers its replica's id.
#[agent(
    num_cpus = 0.1,
    memory = "16MB",
    num_replicas = 4,
    isolation = "shared"
)]
struct WhoAmI {
    replica: String,
}

impl Construct for WhoAmI {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(WhoAmI {
            replica: ctx.replica_id().to_owned(),
        })
    }
}

impl Agent for WhoAmI {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "replica": self.replica }))
    }
}

/// Asks [`WhoAmI`] through a handle taken from its replica context, inside its own request.
#[agent(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
struct Forwarder {
    ctx: ReplicaContext,
}

impl Construct for Forwarder {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(Forwarder { ctx })
    }
}

impl Agent for Forwarder {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let who = self
            .ctx
            .handle("who_am_i")
            .map_err(|e| AgentError::new(e.to_string()))?;
        who.call(data)
            .await
            .map_err(|e| AgentError::new(e.to_string()))
    }
}

/// The replica of `who_am_i` that answered.
fn replica_of(answer: &Value) -> String {
    answer["replica"]
        .as_str()
        .unwrap_or_else(|| panic!("an answer with a replica: {answer}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// Handles outside HTTP
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_handle_by_name_calls_an_agent() {
    let (controller, _running) = deploy_locally(App::new().agent::<Greeter>()).await;
    let greeter = handle(&controller, "greeter");
    assert_eq!(greeter.name(), "greeter");
    let answer = within(
        EXCHANGE_TIMEOUT,
        "the greeter",
        greeter.call(json!({ "name": "ada" })),
    )
    .await
    .expect("the greeter answers");
    assert_eq!(answer, json!({ "greeting": "hello, ada" }));
    assert_eq!(greeter.replicas()[0].served, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_handle_calls_a_callable_with_rust_values() {
    let (controller, _running) = deploy_locally(App::new().callable::<Square>()).await;
    let square = TypedHandle::<Square>::new(handle(&controller, "square"));
    for n in [-3_i64, 0, 7, 1 << 20] {
        let answer = within(EXCHANGE_TIMEOUT, "square", square.call(n))
            .await
            .expect("square answers");
        assert_eq!(answer, n * n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_handle_of_the_wrong_type_is_wrong_kind() {
    let app = App::new()
        .agent::<Greeter>()
        .callable::<Square>()
        .callable::<Halve>();
    let (controller, _running) = deploy_locally(app).await;

    // A typed handle on an agent.
    let on_agent = TypedHandle::<Square>::new(handle(&controller, "greeter"));
    let result = within(EXCHANGE_TIMEOUT, "the call", on_agent.call(2)).await;
    assert!(matches!(result, Err(Error::WrongKind { .. })), "{result:?}");

    // A typed handle whose request type is not the callee's.
    let on_square = TypedHandle::<Halve>::new(handle(&controller, "square"));
    let result = within(EXCHANGE_TIMEOUT, "the call", on_square.call(2.0)).await;
    assert!(matches!(result, Err(Error::WrongKind { .. })), "{result:?}");

    // Neither broke anything: the right types still work.
    let halve = TypedHandle::<Halve>::new(handle(&controller, "halve"));
    let half = within(EXCHANGE_TIMEOUT, "halve", halve.call(3.0)).await;
    assert_eq!(half.expect("halve answers"), 1.5);
    assert_eq!(ongoing(on_square.handle()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_name_has_no_handle() {
    let (controller, _running) = deploy_locally(App::new().agent::<Greeter>()).await;
    assert!(controller.handle("no_such_deployment").is_none());
    assert!(controller.handle("Greeter").is_none(), "names are exact");
    assert!(Controller::new(node()).handle("greeter").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_controller_hands_out_handles_to_the_example_deployments() {
    let server = composition().await;
    let controller = server.controller();

    let upper = handle(controller, "upper_model");
    let answer = within(
        EXCHANGE_TIMEOUT,
        "upper_model",
        upper.call(json!({ "text": "shout" })),
    )
    .await;
    assert_eq!(
        answer.expect("upper_model answers"),
        json!({ "text": "SHOUT" })
    );

    let words = TypedHandle::<apps::WordCount>::new(handle(controller, "word_count"));
    let count = within(
        EXCHANGE_TIMEOUT,
        "word_count",
        words.call("one two three four".to_owned()),
    )
    .await;
    assert_eq!(count.expect("word_count answers"), 4);

    let mut tokens = within(
        EXCHANGE_TIMEOUT,
        "the token stream to open",
        handle(controller, "tokens").stream(json!({ "n": 3 })),
    )
    .await
    .expect("the token stream opens");
    let mut got = Vec::new();
    while let Some(token) = within(EXCHANGE_TIMEOUT, "a token", tokens.next()).await {
        got.push(token.expect("a token"));
    }
    assert_eq!(got, ["token0", "token1", "token2"]);
}

// ---------------------------------------------------------------------------------------------
// Errors and overload reach the caller typed
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_error_reaches_the_caller_as_agent_error() {
    let app = App::new().callable::<Refuser>().agent::<FailingAgent>();
    let (controller, _running) = deploy_locally(app).await;

    let refuser = TypedHandle::<Refuser>::new(handle(&controller, "refuser"));
    match within(EXCHANGE_TIMEOUT, "refuser", refuser.call(())).await {
        Err(Error::Agent(e)) => assert_eq!(e.message(), "nope"),
        other => panic!("expected Error::Agent(\"nope\"), got {other:?}"),
    }

    let failing = handle(&controller, "failing_agent");
    match within(EXCHANGE_TIMEOUT, "failing_agent", failing.call(json!({}))).await {
        Err(Error::Agent(e)) => assert_eq!(e.message(), "agent says nope"),
        other => panic!("expected Error::Agent(\"agent says nope\"), got {other:?}"),
    }

    // An error is an answer, not a dead replica.
    assert_eq!(refuser.handle().replicas()[0].last_error, None);
    assert_eq!(ongoing(refuser.handle()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callee_rejects_a_second_call_with_backpressure() {
    let (controller, _running) = deploy_locally(App::new().callable::<OneAtATime>()).await;
    let callee = TypedHandle::<OneAtATime>::new(handle(&controller, "one_at_a_time"));

    let first = tokio::spawn({
        let callee = callee.clone();
        async move { callee.call(1).await }
    });
    eventually(
        EXCHANGE_TIMEOUT,
        "the first call to be in flight",
        || async { ongoing(callee.handle()) == 1 },
    )
    .await;

    let second = within(EXCHANGE_TIMEOUT, "the second call", callee.call(2)).await;
    assert!(
        matches!(second, Err(Error::Backpressure { queued: 0, max: 0 })),
        "{second:?}"
    );

    // The refusal left the first call alone.
    ONE_AT_A_TIME_GATE.notify_one();
    let first = within(EXCHANGE_TIMEOUT, "the first call", first)
        .await
        .expect("the first call's task");
    assert_eq!(first.expect("the first call answers"), 2);
    assert_eq!(callee.handle().queued_requests(), 0);
}

/// Starts a call to the sleeper `T` in a task, aborts the task once the call runs (`started`), and
/// waits until the sleeper's future was dropped (`cancelled`) and its slot freed.
async fn assert_dropped_call_cancels<T>(
    name: &str,
    started: &'static AtomicBool,
    cancelled: &'static AtomicBool,
) where
    T: Callable<Request = (), Response = ()> + rayai::Deploy,
{
    let (controller, _running) = deploy_locally(App::new().callable::<T>()).await;
    let sleeper = TypedHandle::<T>::new(handle(&controller, name));

    let call = tokio::spawn({
        let sleeper = sleeper.clone();
        async move { sleeper.call(()).await }
    });
    // One ongoing request counts the slot reserved for the call; the callee's work may not have
    // started yet (on a replica of its own, its task may not have been polled), and work
    // cancelled before it starts drops nothing. Wait for both.
    eventually(
        EXCHANGE_TIMEOUT,
        "the call to run on the sleeper",
        || async { ongoing(sleeper.handle()) == 1 && started.load(Ordering::SeqCst) },
    )
    .await;
    assert!(!cancelled.load(Ordering::SeqCst));

    call.abort();
    eventually(
        EXCHANGE_TIMEOUT,
        "the sleeper's work to be dropped and its slot freed",
        || async { cancelled.load(Ordering::SeqCst) && ongoing(sleeper.handle()) == 0 },
    )
    .await;
    assert!(call.await.expect_err("the call was aborted").is_cancelled());
    assert_eq!(sleeper.handle().replicas()[0].last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_call_cancels_the_callees_work() {
    assert_dropped_call_cancels::<Sleeper>("sleeper", &SLEEPER_STARTED, &SLEEPER_CANCELLED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_call_cancels_the_callees_work_in_shared_isolation() {
    assert_dropped_call_cancels::<SharedSleeper>(
        "shared_sleeper",
        &SHARED_SLEEPER_STARTED,
        &SHARED_SLEEPER_CANCELLED,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Sticky sessions
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_with_one_session_reach_one_replica() {
    let (controller, _running) = deploy_locally(App::new().agent::<WhoAmI>()).await;
    let who = handle(&controller, "who_am_i");
    assert_eq!(who.replicas().len(), 4);

    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let ctx = RequestContext::new(format!("r{i}"), "alice");
        let answer = within(EXCHANGE_TIMEOUT, "who_am_i", who.call_with(ctx, json!({})))
            .await
            .expect("who_am_i answers");
        seen.insert(replica_of(&answer));
    }
    assert_eq!(seen.len(), 1, "alice's calls reached {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_inside_a_request_carries_its_session_to_the_callee() {
    let app = App::new().agent::<WhoAmI>().agent::<Forwarder>();
    let (controller, _running) = deploy_locally(app).await;
    let forwarder = handle(&controller, "forwarder");
    let who = handle(&controller, "who_am_i");

    // Where alice's calls land when made directly.
    let direct = within(
        EXCHANGE_TIMEOUT,
        "who_am_i",
        who.call_with(RequestContext::new("direct", "alice"), json!({})),
    )
    .await
    .expect("who_am_i answers");
    let alices = replica_of(&direct);

    for i in 0..20 {
        let ctx = RequestContext::new(format!("r{i}"), "alice");
        let answer = within(
            EXCHANGE_TIMEOUT,
            "the forwarder",
            forwarder.call_with(ctx, json!({})),
        )
        .await
        .expect("the forwarder answers");
        assert_eq!(replica_of(&answer), alices, "call {i} left alice's replica");
    }
}

// ---------------------------------------------------------------------------------------------
// An ingress that takes handles in its constructor
// ---------------------------------------------------------------------------------------------

/// An ingress answering `POST /square {"n": k}` through a typed handle it takes when built.
fn square_ingress() -> Deployment {
    use axum::Json;
    use axum::extract::State;
    use axum::routing::post;

    async fn square(
        State(square): State<TypedHandle<Square>>,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        let n = body["n"].as_i64().unwrap_or(0);
        let result = square.call(n).await.map_err(|e| e.to_string());
        Json(match result {
            Ok(squared) => json!({ "squared": squared }),
            Err(e) => json!({ "error": e }),
        })
    }

    Deployment::ingress(
        DeploymentConfig::new("square_api")
            .with_num_cpus(0.1)
            .with_memory_bytes(16 << 20),
        |ctx| {
            let handle = ctx
                .typed_handle::<Square>()
                .expect("`square` runs before the ingress starts");
            axum::Router::new()
                .route("/square", post(square))
                .with_state(handle)
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_listed_first_still_starts_after_what_it_composes() {
    // The ingress comes first in the app; its constructor needs `square` to run already.
    let app = App::named("squares")
        .deployment(square_ingress())
        .callable::<Square>();
    let server = serve_on(Controller::new(node()), app).await;
    let reply = post(server.local_addr(), "/square", r#"{"n": 12}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json(), json!({ "squared": 144 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploying_the_example_wires_the_new_ingress_to_the_new_deployments() {
    let server = composition().await;
    let addr = server.local_addr();
    let before = post(addr, "/pipeline", r#"{"text": "a b"}"#).await;
    assert_eq!(before.body, r#"{"result":"2 words: a b"}"#);

    within(
        EXCHANGE_TIMEOUT,
        "the redeploy",
        server.deploy(apps::app(), "/"),
    )
    .await
    .expect("the same app deploys again");

    // The old deployments go away; only one of each name is left on the node.
    eventually(EXCHANGE_TIMEOUT, "the old deployments to stop", || async {
        let mut names: Vec<String> = server
            .controller()
            .status()
            .into_iter()
            .map(|s| s.name)
            .collect();
        let all = names.len();
        names.sort();
        names.dedup();
        all == names.len() && all == apps::app().deployments().len()
    })
    .await;

    // The new ingress answers, through handles to the new deployments (the old ones refuse).
    let pipeline = post(addr, "/pipeline", r#"{"text": "  Hello Big World "}"#).await;
    assert_eq!(pipeline.status, StatusCode::OK, "{pipeline:?}");
    assert_eq!(pipeline.body, r#"{"result":"3 words: hello big world"}"#);

    let ensemble = post(addr, "/ensemble", r#"{"x": 3}"#).await;
    assert_eq!(ensemble.status, StatusCode::OK, "{ensemble:?}");
    assert_eq!(ensemble.json()["outputs"]["b"].as_f64(), Some(13.0));

    let route = post(addr, "/route", r#"{"kind": "b", "text": "again"}"#).await;
    assert_eq!(route.status, StatusCode::OK, "{route:?}");
    assert_eq!(route.json()["result"], json!({ "text": "AGAIN" }));

    let mut events = Events::new(open_post(addr, "/stream", r#"{"n": 2}"#).await);
    let mut got = Vec::new();
    while let Some(event) = events.next().await {
        got.push(event);
    }
    assert_eq!(
        got,
        [
            "data: token0\n\n",
            "data: token1\n\n",
            "data: {\"type\": \"done\"}\n\n"
        ]
    );

    // What the requests reached is what the controller now runs.
    let words = handle(server.controller(), "word_count");
    let served: u64 = words.replicas().iter().map(|r| r.served).sum();
    assert_eq!(served, 1, "the new word_count served the new pipeline call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_whose_handles_do_not_resolve_fails_the_deploy_not_the_caller() {
    // As the example's ingress does, it `expect`s its handles; here one names nothing that runs.
    let ingress = Deployment::ingress(
        DeploymentConfig::new("orphan_api")
            .with_num_cpus(0.1)
            .with_memory_bytes(16 << 20),
        |ctx| {
            let missing = ctx
                .handle("not_deployed")
                .expect("the composed deployment runs before the ingress starts");
            axum::Router::new().with_state(missing)
        },
    );
    let app = App::named("orphan")
        .callable::<Square>()
        .deployment(ingress);
    let server = common::start_on(Controller::new(node())).await;
    let deploying = tokio::spawn({
        let server = server.clone();
        async move { server.deploy(app, "/").await }
    });
    let outcome = within(EXCHANGE_TIMEOUT, "the deploy", deploying).await;
    match outcome {
        Ok(Err(Error::ReplicaStart { deployment, .. })) => assert_eq!(deployment, "orphan_api"),
        Ok(other) => panic!("expected the deploy to fail with ReplicaStart, got {other:?}"),
        Err(join) => panic!(
            "the ingress constructor's panic unwound into the caller of deploy: {:?}",
            join.into_panic()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default()
        ),
    }
    // Nothing of the failed app is left running.
    eventually(EXCHANGE_TIMEOUT, "the failed app to be gone", || async {
        server.controller().status().is_empty()
    })
    .await;
}
