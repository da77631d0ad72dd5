//! Handles: how the HTTP front and other deployments reach a running deployment, with no HTTP in
//! between. A [`DeploymentHandle`] talks to a [`Backend`]: today the deployment's router and
//! replicas in this process.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::config::{DeploymentConfig, DeploymentKind};
use crate::error::Error;
use crate::handler::HttpBody;
use crate::request::RequestContext;
use crate::schema::AgentSchema;
use crate::serving::DeploymentStats;
use crate::status::{DeploymentStatus, ReplicaStatus};
use crate::stream::ReplicaStream;

/// A boxed value crossing from a typed handle to a replica.
pub(crate) type AnyBox = Box<dyn Any + Send>;

/// What a running deployment does for its handles. One implementation per place replicas can
/// be: the in-process router and replicas now.
pub(crate) trait Backend: Send + Sync + 'static {
    fn name(&self) -> &str;
    /// The configuration now (lightweight options change in place).
    fn config(&self) -> Arc<DeploymentConfig>;
    fn kind(&self) -> DeploymentKind;
    /// An agent's schemas, when they say more than "any object".
    fn schema(&self) -> Option<&AgentSchema>;
    fn status(&self) -> DeploymentStatus;
    fn queued(&self) -> u32;
    fn stats(&self) -> DeploymentStats;
    /// Runs `run` on a replica (its result as it came, object or not).
    fn call(&self, ctx: RequestContext, data: Value) -> BoxFuture<'_, Result<Value, Error>>;
    /// Runs `run` on a replica for the HTTP front: the value, or, from another process, its JSON
    /// text as the replica process wrote it (already checked to be an object).
    fn call_answer(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<Answer, Error>> {
        Box::pin(async move { self.call(ctx, data).await.map(Answer::Value) })
    }
    fn stream_text(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<ReplicaStream<String>, Error>>;
    fn stream_events(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<ReplicaStream<Value>, Error>>;
    fn call_any(
        &self,
        ctx: RequestContext,
        request: AnyBox,
    ) -> BoxFuture<'_, Result<AnyBox, Error>>;
    /// A typed call with JSON in and out, through the deployment's `Callable::crossing`.
    fn call_typed_json(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<Value, Error>>;
    fn serve(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> BoxFuture<'_, Result<http::Response<HttpBody>, Error>>;
    fn shutdown(&self, timeout: Duration) -> BoxFuture<'_, ()>;
}

/// An agent's answer as [`DeploymentHandle::call_answer`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The JSON object `run` returned.
    Value(Value),
    /// The same object as compact JSON text, as a replica process in another process wrote it:
    /// the HTTP front copies it into its answer without parsing it again.
    Json(bytes::Bytes),
}

/// A running deployment: send it requests; they are load-balanced over its replicas.
///
/// Cloning is cheap; every clone routes through the same replicas and queue. Two handles are
/// equal when they reach the same running deployment (not merely one of the same name).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), rayai_core::Error> {
/// use rayai_core::{Agent, AgentError, App, Controller, Deployment, DeploymentConfig, NodeResources};
/// use serde_json::{Value, json};
///
/// struct Upper;
/// impl Agent for Upper {
///     async fn run(&self, data: Value) -> Result<Value, AgentError> {
///         Ok(json!({ "text": data["text"].as_str().unwrap_or("").to_uppercase() }))
///     }
/// }
///
/// let controller = Controller::new(NodeResources::new(2.0, 4 << 30));
/// let upper = Deployment::from_fn(DeploymentConfig::new("upper").with_num_cpus(0.5), |_| async { Ok(Upper) });
/// controller.deploy_app(App::new().deployment(upper), "/").await?;
/// let handle = controller.handle("upper").expect("it runs");
/// assert_eq!(handle.call(json!({ "text": "hi" })).await?, json!({ "text": "HI" }));
/// # controller.shutdown(std::time::Duration::ZERO).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DeploymentHandle {
    inner: Arc<dyn Backend>,
    /// The multiplexed model its calls ask for ([`DeploymentHandle::with_multiplexed_model_id`]).
    model_id: Option<Arc<str>>,
}

impl std::fmt::Debug for DeploymentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentHandle")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl PartialEq for DeploymentHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for DeploymentHandle {}

impl DeploymentHandle {
    pub(crate) fn new(inner: Arc<dyn Backend>) -> Self {
        DeploymentHandle {
            inner,
            model_id: None,
        }
    }

    /// The same handle, its calls asking for the multiplexed model `model_id` (Ray Serve's
    /// `handle.options(multiplexed_model_id=...)`): the router prefers a replica that holds the
    /// model, and the replica's [`crate::ModelCache::current`] loads it. An empty id asks for
    /// none.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), rayai_core::Error> {
    /// use rayai_core::{Agent, AgentError, App, Controller, Deployment, DeploymentConfig, NodeResources, RequestContext};
    /// use serde_json::{Value, json};
    ///
    /// struct Which;
    /// impl Agent for Which {
    ///     async fn run(&self, _: Value) -> Result<Value, AgentError> {
    ///         let ctx = RequestContext::current().expect("inside a request");
    ///         Ok(json!({ "model": ctx.multiplexed_model_id() }))
    ///     }
    /// }
    ///
    /// let controller = Controller::new(NodeResources::new(1.0, 4 << 30));
    /// let which = Deployment::from_fn(DeploymentConfig::new("which").with_num_cpus(0.5), |_| async { Ok(Which) });
    /// controller.deploy_app(App::new().deployment(which), "/").await?;
    /// let handle = controller.handle("which").expect("it runs");
    /// assert_eq!(handle.call(json!({})).await?, json!({ "model": "" }));
    /// let adapter = handle.with_multiplexed_model_id("adapter-1");
    /// assert_eq!(adapter.call(json!({})).await?, json!({ "model": "adapter-1" }));
    /// # controller.shutdown(std::time::Duration::ZERO).await;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_multiplexed_model_id(&self, model_id: impl Into<Arc<str>>) -> Self {
        let model_id: Arc<str> = model_id.into();
        DeploymentHandle {
            inner: self.inner.clone(),
            model_id: (!model_id.is_empty()).then_some(model_id),
        }
    }

    /// The context of a call through this handle: the current request's (or a fresh one), with
    /// the handle's model id.
    fn context(&self) -> RequestContext {
        let ctx = current_context();
        match &self.model_id {
            Some(id) => ctx.with_multiplexed_model_id(id.clone()),
            None => ctx,
        }
    }

    /// What the handle talks to.
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.inner
    }

    /// The deployment's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The name the deployment is shown by (`<name>-deployment` for an agent, as RayAI names
    /// it; see [`DeploymentKind::served_name`]).
    pub fn served_name(&self) -> std::borrow::Cow<'_, str> {
        self.kind().served_name(self.name())
    }

    /// The deployment's configuration now: its lightweight options (replicas, limits,
    /// `user_config`, timeouts) change in place when [`crate::Controller::apply_app`] updates a
    /// running application, so this is a snapshot.
    pub fn config(&self) -> Arc<DeploymentConfig> {
        self.inner.config()
    }

    /// What the deployment serves.
    pub fn kind(&self) -> DeploymentKind {
        self.inner.kind()
    }

    /// An agent's input and output schemas (a typed agent's, from its types); `None` when it
    /// takes and answers any object.
    pub fn schema(&self) -> Option<&AgentSchema> {
        self.inner.schema()
    }

    /// Requests waiting for a free replica now.
    pub fn queued_requests(&self) -> u32 {
        self.inner.queued()
    }

    /// A snapshot of the deployment and its replicas.
    pub fn status(&self) -> DeploymentStatus {
        self.inner.status()
    }

    /// The deployment's counters: requests through its handles and router, each replica's
    /// processed requests, errors and latencies, its control loop; what the metrics export.
    pub fn stats(&self) -> DeploymentStats {
        self.inner.stats()
    }

    /// A snapshot of the replicas.
    pub fn replicas(&self) -> Vec<ReplicaStatus> {
        self.inner.status().replicas
    }

    /// Runs the agent's `run` on a replica, within the current request's context when called
    /// from one (its request id and session travel along: sticky sessions hold across
    /// deployments), else a fresh one. This is composition: no HTTP in between.
    ///
    /// # Errors
    ///
    /// As [`DeploymentHandle::call_with`].
    pub async fn call(&self, data: Value) -> Result<Value, Error> {
        self.call_with(self.context(), data).await
    }

    /// Opens the agent's text stream on a replica, within the current request's context.
    ///
    /// # Errors
    ///
    /// As [`DeploymentHandle::stream_text`].
    pub async fn stream(&self, data: Value) -> Result<ReplicaStream<String>, Error> {
        self.stream_text(self.context(), data).await
    }

    /// A typed call: what [`crate::callable::TypedHandle::call`] sends.
    pub(crate) async fn call_any(&self, request: AnyBox) -> Result<AnyBox, Error> {
        self.inner.call_any(self.context(), request).await
    }

    /// Runs the agent's `run` on a replica with the request context `ctx`.
    ///
    /// Dropping the future cancels the work on the replica and frees its slot.
    ///
    /// # Errors
    ///
    /// The agent's error or panic, [`Error::NotAnObject`] when `run` returns something other than
    /// a JSON object, [`Error::Backpressure`] when the queue is full.
    pub async fn call_with(&self, ctx: RequestContext, data: Value) -> Result<Value, Error> {
        let value = self.inner.call(ctx, data).await?;
        if value.is_object() {
            Ok(value)
        } else {
            Err(Error::NotAnObject(json_kind(&value)))
        }
    }

    /// Runs the agent's `run` on a replica as [`DeploymentHandle::call_with`] does, for a caller
    /// that writes the answer out as JSON (the HTTP front): from a replica in another process the
    /// answer stays the JSON text it came as.
    ///
    /// # Errors
    ///
    /// As [`DeploymentHandle::call_with`].
    pub async fn call_answer(&self, ctx: RequestContext, data: Value) -> Result<Answer, Error> {
        match self.inner.call_answer(ctx, data).await? {
            Answer::Value(value) if !value.is_object() => {
                Err(Error::NotAnObject(json_kind(&value)))
            }
            answer => Ok(answer),
        }
    }

    /// Opens the agent's text stream (`run_stream`) on a replica.
    ///
    /// # Errors
    ///
    /// [`Error::TextStreamUnsupported`] when the agent has no `run_stream`; the errors of
    /// [`DeploymentHandle::call`]. Errors after the stream opened are items of the stream.
    pub async fn stream_text(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> Result<ReplicaStream<String>, Error> {
        self.inner.stream_text(ctx, data).await
    }

    /// Opens the agent's event stream (`run_stream_events`) on a replica.
    ///
    /// # Errors
    ///
    /// As [`DeploymentHandle::stream_text`], with [`Error::EventStreamUnsupported`].
    pub async fn stream_events(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> Result<ReplicaStream<Value>, Error> {
        self.inner.stream_events(ctx, data).await
    }

    /// Runs a typed (`Callable`) deployment's `call` with its request and response as JSON, as
    /// another process sends it: the deployment's [`crate::Callable::crossing`] converts them.
    ///
    /// # Errors
    ///
    /// [`Error::WrongKind`] for a deployment without a crossing, a `400` agent error for JSON
    /// that is not its request type, and the errors of a typed call.
    pub async fn call_typed_json(&self, ctx: RequestContext, data: Value) -> Result<Value, Error> {
        self.inner.call_typed_json(ctx, data).await
    }

    /// Sends an HTTP request to a handler replica; the replica's slot is held until the response
    /// body ends. Dropping the future before the response cancels the handler.
    ///
    /// # Errors
    ///
    /// [`Error::Backpressure`] when the queue is full, the handler's panic or its service's
    /// error, or [`Error::WrongKind`] for a deployment that is not a handler.
    pub async fn serve(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> Result<http::Response<HttpBody>, Error> {
        self.inner.serve(ctx, req).await
    }

    /// Stops taking requests, waits for the ongoing ones to finish (at most `timeout`), then
    /// stops the replicas and gives their resources back.
    pub async fn shutdown(&self, timeout: Duration) {
        self.inner.shutdown(timeout).await;
    }
}

/// The current request's context, or a fresh one outside a request.
fn current_context() -> RequestContext {
    RequestContext::current()
        .map(RequestContext::for_downstream)
        .unwrap_or_else(|| {
            let mut buf = uuid::Uuid::encode_buffer();
            RequestContext::new(
                uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf),
                "default",
            )
        })
}

/// Python's name for a JSON value's type, for messages a RayAI user recognises.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}
