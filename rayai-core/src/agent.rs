//! What an agent is: the [`Agent`] trait users implement, [`Construct`] for replicas that load
//! something at start, and [`Deploy`], which `#[agent(...)]` implements.

use std::future::Future;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;

use crate::config::DeploymentConfig;
use crate::context::ReplicaContext;
use crate::error::AgentError;
use crate::schema::AgentSchema;

/// The text chunks of `run_stream`, sent as SSE `data:` frames as they are yielded.
pub type TextStream<'a> = BoxStream<'a, Result<String, AgentError>>;

/// The JSON events of `run_stream_events`, sent as SSE `data:` frames as they are yielded.
pub type EventStream<'a> = BoxStream<'a, Result<Value, AgentError>>;

/// An AI agent (or anything that answers JSON with JSON) served at `/agents/{name}/chat`.
///
/// One value is built per replica and serves many requests, concurrently up to the deployment's
/// `max_ongoing_requests`, so state that must change lives behind atomics or locks.
///
/// # Examples
///
/// ```
/// use rayai_core::{Agent, AgentError, TextStream};
/// use futures::StreamExt;
/// use serde_json::{json, Value};
///
/// struct Echo;
///
/// impl Agent for Echo {
///     async fn run(&self, data: Value) -> Result<Value, AgentError> {
///         Ok(json!({ "echo": data }))
///     }
///
///     fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
///         let words: Vec<String> = data["text"]
///             .as_str()
///             .unwrap_or_default()
///             .split(' ')
///             .map(str::to_owned)
///             .collect();
///         Some(futures::stream::iter(words.into_iter().map(Ok)).boxed())
///     }
/// }
/// ```
pub trait Agent: Send + Sync + 'static {
    /// Answers one request: `data` is the request's `data` object; the result must be a JSON
    /// object, sent back as `{"result": ..., "session_id": ...}`. An error answers with its
    /// status and detail ([`AgentError::new`]: a 500 whose detail is the message;
    /// [`AgentError::not_found`] and the like: a client error).
    fn run(&self, data: Value) -> impl Future<Output = Result<Value, AgentError>> + Send;

    /// Streams text chunks for `stream: "text"`; `None` (the default) means the agent does not
    /// stream text, and such requests get a 400.
    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        let _ = data;
        None
    }

    /// Streams JSON events for `stream: "events"`; `None` (the default) means the agent does not
    /// stream events, and such requests get a 400.
    fn run_stream_events(&self, data: Value) -> Option<EventStream<'_>> {
        let _ = data;
        None
    }

    /// Checked every `health_check_period` (default 10 s) on the replica's executor; an error,
    /// a panic or a timeout marks the replica dead and the controller replaces it. The default
    /// is always healthy.
    fn check_health(&self) -> impl Future<Output = Result<(), AgentError>> + Send {
        async { Ok(()) }
    }

    /// Applies the deployment's `user_config` (Ray Serve's `reconfigure`). When the deployment
    /// has a `user_config`, it runs on each replica after its constructor and before the replica
    /// takes a request (an error there fails the replica's start, retried as a failing
    /// constructor), and again on every running replica, without a restart, whenever the
    /// `user_config` changes ([`crate::Controller::apply_app`]). It runs on the replica's
    /// executor while requests may be served, so the state it sets lives behind atomics or
    /// locks. An error on an update marks the deployment `UNHEALTHY` with the error as its
    /// message; the replicas keep serving. The default does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::RwLock;
    /// use rayai_core::{Agent, AgentError};
    /// use serde_json::{Value, json};
    ///
    /// struct Greeter { greeting: RwLock<String> }
    ///
    /// impl Agent for Greeter {
    ///     async fn run(&self, data: Value) -> Result<Value, AgentError> {
    ///         let greeting = self.greeting.read().map_err(|e| AgentError::new(e.to_string()))?;
    ///         Ok(json!({ "greeting": format!("{greeting}, {}!", data["name"].as_str().unwrap_or("you")) }))
    ///     }
    ///
    ///     async fn reconfigure(&self, user_config: &Value) -> Result<(), AgentError> {
    ///         let greeting = user_config["greeting"]
    ///             .as_str()
    ///             .ok_or_else(|| AgentError::new("user_config.greeting must be a string"))?;
    ///         *self.greeting.write().map_err(|e| AgentError::new(e.to_string()))? = greeting.to_owned();
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let agent = Greeter { greeting: RwLock::new("Hello".to_owned()) };
    /// agent.reconfigure(&json!({ "greeting": "Bonjour" })).await.unwrap();
    /// let answer = agent.run(json!({ "name": "Ada" })).await.unwrap();
    /// assert_eq!(answer, json!({ "greeting": "Bonjour, Ada!" }));
    /// assert!(agent.reconfigure(&json!({})).await.is_err());
    /// # }
    /// ```
    fn reconfigure(
        &self,
        user_config: &Value,
    ) -> impl Future<Output = Result<(), AgentError>> + Send {
        let _ = user_config;
        async { Ok(()) }
    }

    /// The JSON schemas of the agent's `data` and `result`, for its documentation (OpenAPI).
    /// The default is any object for both ([`AgentSchema::any`]); a [`crate::TypedAgent`]'s
    /// come from its types.
    fn schema() -> AgentSchema
    where
        Self: Sized,
    {
        AgentSchema::any()
    }
}

/// Builds an agent for one replica when `Default` is not enough: load a model, open a client,
/// read the replica's GPU ids. The constructor runs once per replica, on the replica's own
/// executor; an error fails the replica's start.
///
/// # Examples
///
/// ```
/// use rayai_core::{AgentError, Construct, ReplicaContext};
///
/// struct Model { weights: Vec<f32>, replica: String }
///
/// impl Construct for Model {
///     async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
///         Ok(Model { weights: vec![0.5; 4], replica: ctx.replica_id().to_owned() })
///     }
/// }
/// ```
pub trait Construct: Sized {
    /// Builds the value for the replica described by `ctx`.
    fn construct(ctx: ReplicaContext) -> impl Future<Output = Result<Self, AgentError>> + Send;
}

/// A type that knows how to deploy itself: its configuration and its constructor.
/// `#[agent(...)]` (and `#[deployment(...)]` for handlers) implements it; implement it by hand
/// only to build configurations at run time.
pub trait Deploy: Sized + Send + Sync + 'static {
    /// The deployment's configuration (name, replicas, resources, bounds).
    fn config() -> DeploymentConfig;

    /// Builds one replica's agent.
    fn construct(ctx: ReplicaContext) -> BoxFuture<'static, Result<Self, AgentError>>;
}

/// [`Agent`] with its futures boxed, so that replicas of any agent type share one code path.
pub(crate) trait DynAgent: Send + Sync + 'static {
    fn run(&self, data: Value) -> BoxFuture<'_, Result<Value, AgentError>>;
    fn run_stream(&self, data: Value) -> Option<TextStream<'_>>;
    fn run_stream_events(&self, data: Value) -> Option<EventStream<'_>>;
    fn check_health(&self) -> BoxFuture<'_, Result<(), AgentError>>;
    fn reconfigure<'a>(&'a self, user_config: &'a Value) -> BoxFuture<'a, Result<(), AgentError>>;
}

impl<T: Agent> DynAgent for T {
    fn run(&self, data: Value) -> BoxFuture<'_, Result<Value, AgentError>> {
        Box::pin(Agent::run(self, data))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        Agent::run_stream(self, data)
    }

    fn run_stream_events(&self, data: Value) -> Option<EventStream<'_>> {
        Agent::run_stream_events(self, data)
    }

    fn check_health(&self) -> BoxFuture<'_, Result<(), AgentError>> {
        Box::pin(Agent::check_health(self))
    }

    fn reconfigure<'a>(&'a self, user_config: &'a Value) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(Agent::reconfigure(self, user_config))
    }
}
