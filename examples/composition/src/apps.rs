//! The deployments of the composition example.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::post;
use rayai::batch::Batcher;
use rayai::prelude::*;
use rayai::stream::BoxStream;
use rayai::{Crossing, Deployment, DeploymentConfig, DeploymentHandle, TypedHandle};

/// Pipeline stage 1: trim and lowercase.
#[deployment(num_cpus = 0.1, memory = "32MB", isolation = "shared")]
#[derive(Default)]
pub struct Preprocess;

impl Callable for Preprocess {
    type Request = String;
    type Response = String;
    async fn call(&self, text: String) -> Result<String, AgentError> {
        Ok(text.trim().to_lowercase())
    }

    // Strings cross processes as JSON when a stage runs in another process (RAYAI_ROLE).
    fn crossing() -> Option<Crossing<Self::Request, Self::Response>> {
        Some(Crossing::serde())
    }
}

/// Pipeline stage 2, the "model": counts words, in batches as a GPU model would (up to 8
/// concurrent calls, or whatever arrived within 5 ms, in one batch call).
#[deployment(
    num_cpus = 0.1,
    memory = "32MB",
    num_replicas = 2,
    isolation = "shared"
)]
pub struct WordCount {
    batcher: Batcher<String, usize>,
}

impl Construct for WordCount {
    async fn construct(_ctx: ReplicaContext) -> Result<Self, AgentError> {
        let batcher = Batcher::new(
            8,
            Duration::from_millis(5),
            |texts: Vec<String>| async move {
                texts
                    .iter()
                    .map(|text| Ok(text.split_whitespace().count()))
                    .collect()
            },
        );
        Ok(WordCount { batcher })
    }
}

impl Callable for WordCount {
    type Request = String;
    type Response = usize;
    async fn call(&self, text: String) -> Result<usize, AgentError> {
        Ok(self.batcher.call(text).await?)
    }

    // Values cross processes as JSON when a stage runs in another process (RAYAI_ROLE).
    fn crossing() -> Option<Crossing<Self::Request, Self::Response>> {
        Some(Crossing::serde())
    }
}

/// Pipeline stage 3: formats the text and its count.
#[deployment(num_cpus = 0.1, memory = "32MB", isolation = "shared")]
#[derive(Default)]
pub struct Postprocess;

impl Callable for Postprocess {
    type Request = (String, usize);
    type Response = String;
    async fn call(&self, (text, words): (String, usize)) -> Result<String, AgentError> {
        Ok(format!("{words} words: {text}"))
    }

    // Values cross processes as JSON when a stage runs in another process (RAYAI_ROLE).
    fn crossing() -> Option<Crossing<Self::Request, Self::Response>> {
        Some(Crossing::serde())
    }
}

/// The ensemble's models: each maps a number its own way.
macro_rules! number_model {
    ($($name:ident: $doc:literal => |$x:ident| $body:expr;)*) => {$(
        #[doc = $doc]
        #[deployment(num_cpus = 0.1, memory = "32MB", isolation = "shared")]
        #[derive(Default)]
        pub struct $name;

        impl Callable for $name {
            type Request = f64;
            type Response = f64;
            async fn call(&self, $x: f64) -> Result<f64, AgentError> {
                Ok($body)
            }

            fn crossing() -> Option<Crossing<f64, f64>> {
                Some(Crossing::serde())
            }
        }
    )*};
}

number_model! {
    Doubler: "Model a: twice the input." => |x| x * 2.0;
    Adder: "Model b: the input plus ten." => |x| x + 10.0;
    Squarer: "Model c: the input squared." => |x| x * x;
}

/// A JSON agent for the router: model `a` reverses text.
#[agent(num_cpus = 0.1, memory = "32MB", isolation = "shared")]
#[derive(Default)]
pub struct ReverseModel;

impl Agent for ReverseModel {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let text = data.get("text").and_then(Value::as_str).unwrap_or_default();
        Ok(json!({ "text": text.chars().rev().collect::<String>() }))
    }
}

/// A JSON agent for the router: model `b` upper-cases text.
#[agent(num_cpus = 0.1, memory = "32MB", isolation = "shared")]
#[derive(Default)]
pub struct UpperModel;

impl Agent for UpperModel {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let text = data.get("text").and_then(Value::as_str).unwrap_or_default();
        Ok(json!({ "text": text.to_uppercase() }))
    }
}

/// The token model of the streaming pipeline: `data.n` tokens, 50 ms apart.
#[agent(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
pub struct Tokens;

impl Agent for Tokens {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let n = data.get("n").and_then(Value::as_u64).unwrap_or(0);
        Ok(json!({ "tokens": (0..n).map(|i| format!("token{i}")).collect::<Vec<_>>() }))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        let n = data.get("n").and_then(Value::as_u64).unwrap_or(0);
        Some(
            rayai::stream::stream! {
                for i in 0..n {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    yield Ok(format!("token{i}"));
                }
            }
            .boxed(),
        )
    }
}

/// The handles the ingress composes, taken once per ingress replica.
#[derive(Clone)]
struct Handles {
    preprocess: TypedHandle<Preprocess>,
    model: TypedHandle<WordCount>,
    postprocess: TypedHandle<Postprocess>,
    doubler: TypedHandle<Doubler>,
    adder: TypedHandle<Adder>,
    squarer: TypedHandle<Squarer>,
    reverse: DeploymentHandle,
    upper: DeploymentHandle,
    tokens: DeploymentHandle,
}

/// A JSON error with a status, as FastAPI writes them.
fn error(status: StatusCode, detail: impl std::fmt::Display) -> AxumResponse {
    (status, Json(json!({ "detail": detail.to_string() }))).into_response()
}

/// `POST /pipeline {"text": s}`: preprocess -> model -> postprocess.
async fn pipeline(State(h): State<Handles>, Json(body): Json<Value>) -> AxumResponse {
    let Some(text) = body.get("text").and_then(Value::as_str) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "`text` must be a string");
    };
    let run = async {
        let clean = h.preprocess.call(text.to_owned()).await?;
        let words = h.model.call(clean.clone()).await?;
        h.postprocess.call((clean, words)).await
    };
    match run.await {
        Ok(result) => Json(json!({ "result": result })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `POST /ensemble {"x": n}`: the three models at once, and their mean.
async fn ensemble(State(h): State<Handles>, Json(body): Json<Value>) -> AxumResponse {
    let Some(x) = body.get("x").and_then(Value::as_f64) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "`x` must be a number");
    };
    match tokio::try_join!(h.doubler.call(x), h.adder.call(x), h.squarer.call(x)) {
        Ok((a, b, c)) => Json(json!({
            "outputs": { "a": a, "b": b, "c": c },
            "combined": (a + b + c) / 3.0,
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `POST /route {"kind": "a"|"b", "text": s}`: one model or the other, by input.
async fn route(State(h): State<Handles>, Json(body): Json<Value>) -> AxumResponse {
    let model = match body.get("kind").and_then(Value::as_str) {
        Some("a") => &h.reverse,
        Some("b") => &h.upper,
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`kind` must be \"a\" or \"b\"",
            );
        }
    };
    match model.call(body.clone()).await {
        Ok(result) => Json(json!({ "model": model.name(), "result": result })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `POST /stream {"n": k}`: the token model's stream as SSE, each token as it is produced.
async fn stream(State(h): State<Handles>, Json(body): Json<Value>) -> AxumResponse {
    let tokens = match h.tokens.stream(body).await {
        Ok(tokens) => tokens,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let frames: BoxStream<'static, Result<String, Infallible>> = rayai::stream::stream! {
        let mut tokens = tokens;
        while let Some(token) = tokens.next().await {
            match token {
                Ok(token) => yield Ok(format!("data: {token}\n\n")),
                Err(e) => {
                    yield Ok(format!("data: {}\n\n", json!({"type": "error", "content": e.to_string()})));
                    return;
                }
            }
        }
        yield Ok("data: {\"type\": \"done\"}\n\n".to_owned());
    }
    .boxed();
    (
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(frames),
    )
        .into_response()
}

/// The ingress router over the composed deployments.
fn router(ctx: &ReplicaContext) -> Result<axum::Router, rayai::Error> {
    let handles = Handles {
        preprocess: ctx.typed_handle()?,
        model: ctx.typed_handle()?,
        postprocess: ctx.typed_handle()?,
        doubler: ctx.typed_handle()?,
        adder: ctx.typed_handle()?,
        squarer: ctx.typed_handle()?,
        reverse: ctx.handle("reverse_model")?,
        upper: ctx.handle("upper_model")?,
        tokens: ctx.handle("tokens")?,
    };
    Ok(axum::Router::new()
        .route("/pipeline", post(pipeline))
        .route("/ensemble", post(ensemble))
        .route("/route", post(route))
        .route("/stream", post(stream))
        .with_state(handles))
}

/// The whole application: every stage, and the ingress that composes them.
pub fn app() -> App {
    let ingress = Deployment::ingress(
        DeploymentConfig::new("composition")
            .with_num_cpus(0.1)
            .with_memory_bytes(32 << 20),
        // The ingress starts after the deployments it composes, so the handles resolve.
        |ctx| router(ctx).expect("the composed deployments run before the ingress starts"),
    );
    App::named("composition")
        .callable::<Preprocess>()
        .callable::<WordCount>()
        .callable::<Postprocess>()
        .callable::<Doubler>()
        .callable::<Adder>()
        .callable::<Squarer>()
        .agent::<ReverseModel>()
        .agent::<UpperModel>()
        .agent::<Tokens>()
        .deployment(ingress)
}
