//! The agents of the conformance server: what each one does is in the crate's documentation.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use rayai::prelude::*;
use rayai::stream::BoxStream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `run` returns `{"echo": data}`, or fails with `data.fail`; `run_stream` yields `data.chunks`,
/// `run_stream_events` yields `data.events` (then fails with `data.fail` if given), waiting
/// `data.delay_ms` before each item.
#[agent(num_cpus = 0.25, memory = "64MB")]
#[derive(Default)]
pub struct Echo;

/// `data.delay_ms`, if any.
fn delay(data: &Value) -> Option<Duration> {
    data.get("delay_ms")
        .and_then(Value::as_u64)
        .map(Duration::from_millis)
}

/// `data.fail`, if it is a string.
fn failure(data: &Value) -> Option<String> {
    data.get("fail").and_then(Value::as_str).map(str::to_owned)
}

/// The items of `data[key]`, each after the delay, then the failure if asked for.
fn items<T: Send + 'static>(
    data: Value,
    key: &str,
    pick: fn(&Value) -> Option<T>,
) -> BoxStream<'static, Result<T, AgentError>> {
    let list: Vec<T> = data
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(pick).collect())
        .unwrap_or_default();
    let (delay, fail) = (delay(&data), failure(&data));
    try_stream! {
        for item in list {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            yield item;
        }
        if let Some(message) = fail {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            Err(AgentError::new(message))?;
        }
    }
    .boxed()
}

impl Agent for Echo {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        if let Some(message) = failure(&data) {
            return Err(AgentError::new(message));
        }
        if let Some(d) = delay(&data) {
            tokio::time::sleep(d).await;
        }
        Ok(json!({ "echo": data }))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        Some(items(data, "chunks", |v| v.as_str().map(str::to_owned)))
    }

    fn run_stream_events(&self, data: Value) -> Option<EventStream<'_>> {
        Some(items(data, "events", |v| v.is_object().then(|| v.clone())))
    }
}

/// `run` only: `{"ok": true}`.
#[agent(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
pub struct Plain;

impl Agent for Plain {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "ok": true }))
    }
}

/// 2 replicas: `{"replica": <replica id>, "count": <requests this replica served>}`.
#[agent(num_cpus = 0.25, memory = "32MB", num_replicas = 2)]
pub struct Counter {
    replica: String,
    served: AtomicU64,
}

impl Construct for Counter {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(Counter {
            replica: ctx.replica_id().to_owned(),
            served: AtomicU64::new(0),
        })
    }
}

impl Agent for Counter {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        let count = self.served.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(json!({ "replica": self.replica, "count": count }))
    }
}

/// 1 replica, 1 request at a time, 1 queued: sleeps `data.ms`, returns `{"slept_ms": ms}`.
#[agent(
    num_cpus = 0.1,
    memory = "32MB",
    max_ongoing_requests = 1,
    max_queued_requests = 1
)]
#[derive(Default)]
pub struct Slow;

impl Agent for Slow {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let ms = data.get("ms").and_then(Value::as_u64).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(json!({ "slept_ms": ms }))
    }
}

/// Panics when `data.panic` is true, else answers `{"ok": true}`.
#[agent(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
pub struct Panicky;

impl Agent for Panicky {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        if data.get("panic").and_then(Value::as_bool) == Some(true) {
            panic!("panicky was asked to panic");
        }
        Ok(json!({ "ok": true }))
    }
}

/// Blocks its thread for `data.ms`, returns `{"blocked_ms": ms}`.
#[agent(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
pub struct Blocking;

impl Agent for Blocking {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let ms = data.get("ms").and_then(Value::as_u64).unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms));
        Ok(json!({ "blocked_ms": ms }))
    }
}

/// Fails with the status `data.status` (default 400) and the detail `data.detail` (default
/// `"picky says no"`; a string is the message, any other JSON value the detail), with
/// `Retry-After: data.retry_after` when given. `run_stream` yields `checking`, then fails the
/// same way (an error frame, whatever the status).
#[agent(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
pub struct Picky;

/// The error `data` asks picky for, made with the constructor of its status.
fn refusal(data: &Value) -> AgentError {
    let status = data
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(400);
    let detail = data
        .get("detail")
        .cloned()
        .unwrap_or_else(|| json!("picky says no"));
    let message = match &detail {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let error = match status {
        400 => AgentError::bad_request(message),
        404 => AgentError::not_found(message),
        409 => AgentError::conflict(message),
        422 => AgentError::unprocessable(detail.clone()),
        429 => AgentError::too_many_requests(message),
        other => AgentError::new(message)
            .with_status(StatusCode::from_u16(other).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)),
    };
    let error = if detail.is_string() {
        error
    } else {
        error.with_detail(detail)
    };
    match data
        .get("retry_after")
        .and_then(Value::as_u64)
        .and_then(|s| u32::try_from(s).ok())
    {
        Some(secs) => error.with_retry_after(secs),
        None => error,
    }
}

impl Agent for Picky {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Err(refusal(&data))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        Some(
            try_stream! {
                yield "checking".to_owned();
                Err(refusal(&data))?;
            }
            .boxed(),
        )
    }
}

/// Who wrote a text, in [`TypedEcho`]'s input and output.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct Author {
    /// The author's name.
    pub name: String,
    /// The author's age.
    pub age: u32,
}

/// What [`TypedEcho`] takes: a required string, an optional integer, a nested struct, a list.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TypedEchoInput {
    /// The text to echo.
    pub text: String,
    /// How many times (default 1).
    pub times: Option<u32>,
    /// Who wrote it.
    pub author: Author,
    /// Labels, echoed in order.
    pub tags: Vec<String>,
}

/// What [`TypedEcho`] answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TypedEchoOutput {
    /// The text `times` times, joined by spaces.
    pub echo: String,
    /// The author, as given.
    pub author: Author,
    /// The tags, as given.
    pub tags: Vec<String>,
}

/// A typed agent: `run` answers `{"echo": <text times times, joined by spaces>, "author": ...,
/// "tags": [...]}`; `run_stream` yields the text `times` times. A `data` that does not fit
/// [`TypedEchoInput`] is a 422 listing every field error.
#[agent(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
pub struct TypedEcho;

impl TypedAgent for TypedEcho {
    type Input = TypedEchoInput;
    type Output = TypedEchoOutput;

    async fn run(&self, input: TypedEchoInput) -> Result<TypedEchoOutput, AgentError> {
        let times = input.times.unwrap_or(1) as usize;
        Ok(TypedEchoOutput {
            echo: vec![input.text.as_str(); times].join(" "),
            author: input.author,
            tags: input.tags,
        })
    }

    fn run_stream(&self, input: TypedEchoInput) -> Option<TextStream<'_>> {
        let times = input.times.unwrap_or(1) as usize;
        let chunks = vec![input.text; times];
        Some(rayai::stream::iter(chunks.into_iter().map(Ok)).boxed())
    }
}

/// What [`Greeter`] takes: who to greet.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GreeterInput {
    /// The name to greet.
    pub name: String,
}

/// What [`Greeter`] answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Greeting {
    /// `"<greeting>, <name>!"`.
    pub greeting: String,
}

/// Answers `{"greeting": "<greeting>, <name>!"}`, its greeting from the deployment's
/// `user_config` (`{"greeting": "Bonjour"}`), `"Hello"` without one. A new `user_config` reaches
/// the running replicas through `reconfigure`, without a restart (`rayai deploy`, or
/// `Controller::apply_app`); a `greeting` that is not a string fails the `reconfigure`.
#[agent(num_cpus = 0.1, memory = "64MB")]
pub struct Greeter {
    greeting: RwLock<String>,
}

impl Greeter {
    /// The greeting without a `user_config`.
    pub const DEFAULT_GREETING: &str = "Hello";
}

impl Default for Greeter {
    fn default() -> Self {
        Greeter {
            greeting: RwLock::new(Greeter::DEFAULT_GREETING.to_owned()),
        }
    }
}

impl TypedAgent for Greeter {
    type Input = GreeterInput;
    type Output = Greeting;

    async fn run(&self, input: GreeterInput) -> Result<Greeting, AgentError> {
        let greeting = self
            .greeting
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(Greeting {
            greeting: format!("{greeting}, {}!", input.name),
        })
    }

    async fn reconfigure(&self, user_config: &Value) -> Result<(), AgentError> {
        let greeting = match user_config.get("greeting") {
            None | Some(Value::Null) => Greeter::DEFAULT_GREETING,
            Some(Value::String(greeting)) => greeting,
            Some(other) => {
                return Err(AgentError::new(format!(
                    "user_config.greeting must be a string, not {other}"
                )));
            }
        };
        *self
            .greeting
            .write()
            .unwrap_or_else(PoisonError::into_inner) = greeting.to_owned();
        Ok(())
    }
}

/// The greeter alone, as the application `greeter` (served as `greeter-service` at
/// `/agents/greeter`): what a declarative config names to reconfigure it.
pub fn greeter_app() -> App {
    App::named("greeter").agent::<Greeter>()
}

/// Every agent of the conformance server but the greeter ([`greeter_app`]).
pub fn app() -> App {
    App::new()
        .agent::<Echo>()
        .agent::<Plain>()
        .agent::<Counter>()
        .agent::<Slow>()
        .agent::<Panicky>()
        .agent::<Blocking>()
}
