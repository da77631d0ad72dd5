//! Deployments: the declaration ([`Deployment`]) and the running thing ([`DeploymentHandle`]).

use std::sync::Arc;

use serde_json::Value;

use crate::agent::{Agent, Deploy, DynAgent};
use crate::callable::AnyBox;
use crate::callable::{Callable, DynCallable};
use crate::controller::{Controller, Running};
use crate::handler::{BoxError, DynHandler, Handler, HttpBody, ServiceHandler};
use crate::replica::{Events, Factory, ReplicaStream, Target, Text};
use crate::status::{DeploymentStatus, ReplicaStatus};
use crate::{DeploymentConfig, Error, ReplicaContext, RequestContext};

/// A deployment as declared: its configuration and how to build a replica.
///
/// # Examples
///
/// ```
/// use rayai_core::{Agent, AgentError, Deployment, DeploymentConfig, ReplicaContext};
/// use serde_json::Value;
///
/// #[derive(Default)]
/// struct Echo;
/// impl Agent for Echo {
///     async fn run(&self, data: Value) -> Result<Value, AgentError> { Ok(data) }
/// }
///
/// let d = Deployment::from_fn(DeploymentConfig::new("echo").with_num_replicas(2), |_ctx: ReplicaContext| async {
///     Ok(Echo)
/// });
/// assert_eq!(d.config().num_replicas(), 2);
/// ```
#[derive(Clone)]
pub struct Deployment {
    config: DeploymentConfig,
    factory: Factory,
    kind: DeploymentKind,
}

/// What a deployment serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentKind {
    /// An agent: the chat contract at `{prefix}/agents/{name}/chat`.
    Agent,
    /// A handler or ingress: any HTTP, at the application's route prefix.
    Handler,
    /// A typed deployment, reached only through handles.
    Callable,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Deployment {
    /// The deployment of an `#[agent]` type.
    pub fn agent<T: Deploy + Agent>() -> Self {
        Deployment::from_fn(T::config(), T::construct)
    }

    /// A deployment of agents built by an async function.
    pub fn from_fn<T, F, Fut>(config: DeploymentConfig, construct: F) -> Self
    where
        T: Agent,
        F: Fn(ReplicaContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, crate::AgentError>> + Send + 'static,
    {
        let construct = Arc::new(construct);
        Deployment {
            config,
            kind: DeploymentKind::Agent,
            factory: Arc::new(move |ctx| {
                let fut = construct(ctx);
                Box::pin(async move {
                    let agent: Arc<dyn DynAgent> = Arc::new(fut.await?);
                    Ok(Target::Agent(agent))
                })
            }),
        }
    }

    /// The deployment of a [`Handler`] type (`#[deployment(...)]` gives it its configuration).
    pub fn handler<T: Deploy + Handler>() -> Self {
        Deployment::handler_fn(T::config(), T::construct)
    }

    /// A deployment of handlers built by an async function.
    pub fn handler_fn<T, F, Fut>(config: DeploymentConfig, construct: F) -> Self
    where
        T: Handler,
        F: Fn(ReplicaContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, crate::AgentError>> + Send + 'static,
    {
        let construct = Arc::new(construct);
        Deployment {
            config,
            kind: DeploymentKind::Handler,
            factory: Arc::new(move |ctx| {
                let fut = construct(ctx);
                Box::pin(async move {
                    let handler: Arc<dyn DynHandler> = Arc::new(fut.await?);
                    Ok(Target::Handler(handler))
                })
            }),
        }
    }

    fn dyn_handler(
        config: DeploymentConfig,
        make: impl Fn(ReplicaContext) -> Arc<dyn DynHandler> + Send + Sync + 'static,
    ) -> Self {
        let make = Arc::new(make);
        Deployment {
            config,
            kind: DeploymentKind::Handler,
            // `make` runs inside the future, on the replica's executor, like every constructor:
            // a panic there fails (and retries) the replica's start instead of unwinding into
            // whoever deploys it.
            factory: Arc::new(move |ctx| {
                let make = make.clone();
                Box::pin(async move { Ok(Target::Handler(make(ctx))) })
            }),
        }
    }

    /// A deployment whose HTTP face is a tower `Service` (an axum `Router`): `make` builds one
    /// per replica (Ray Serve's `@serve.ingress(app)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::{Deployment, DeploymentConfig};
    /// use rayai_core::handler::{HttpBody, full};
    /// use http::{Request, Response};
    /// use std::convert::Infallible;
    ///
    /// let service = tower::service_fn(|_req: Request<HttpBody>| async {
    ///     Ok::<_, Infallible>(Response::new(full("hi")))
    /// });
    /// let d = Deployment::ingress(DeploymentConfig::new("api"), move |_ctx| service.clone());
    /// assert_eq!(d.config().name(), "api");
    /// ```
    pub fn ingress<S, B, F>(config: DeploymentConfig, make: F) -> Self
    where
        F: Fn(&ReplicaContext) -> S + Send + Sync + 'static,
        S: tower::Service<http::Request<HttpBody>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError> + 'static,
    {
        Deployment::dyn_handler(config, move |ctx| Arc::new(ServiceHandler(make(&ctx))))
    }

    /// What the deployment serves.
    pub fn kind(&self) -> DeploymentKind {
        self.kind
    }

    /// The deployment of a [`Callable`] type: reached through [`TypedHandle`]s, with Rust
    /// values in and out.
    pub fn callable<T: Deploy + Callable>() -> Self {
        let construct = T::construct;
        Deployment {
            config: T::config(),
            kind: DeploymentKind::Callable,
            factory: Arc::new(move |ctx| {
                let fut = construct(ctx);
                Box::pin(async move {
                    let callable: Arc<dyn DynCallable> = Arc::new(fut.await?);
                    Ok(Target::Callable(callable))
                })
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DeploymentConfig {
        &self.config
    }

    /// The same deployment with its configuration changed by `f` (overrides from a config file).
    pub fn map_config(mut self, f: impl FnOnce(DeploymentConfig) -> DeploymentConfig) -> Self {
        self.config = f(self.config);
        self
    }

    /// Starts every replica on the process's [`Controller`] and returns a handle to the running
    /// deployment.
    ///
    /// # Errors
    ///
    /// An invalid configuration, a deployment that does not fit on the node, or a replica whose
    /// constructor keeps failing.
    pub async fn start(self) -> Result<DeploymentHandle, Error> {
        Controller::global().deploy(self).await
    }

    pub(crate) fn into_parts(self) -> (DeploymentConfig, Factory, DeploymentKind) {
        (self.config, self.factory, self.kind)
    }
}

/// A running deployment: send it requests; they are load-balanced over its replicas.
///
/// Cloning is cheap; every clone routes through the same replicas and queue.
#[derive(Clone)]
pub struct DeploymentHandle {
    inner: Arc<Running>,
}

impl std::fmt::Debug for DeploymentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentHandle")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl DeploymentHandle {
    pub(crate) fn new(inner: Arc<Running>) -> Self {
        DeploymentHandle { inner }
    }

    /// The deployment's name.
    pub fn name(&self) -> &str {
        self.inner.config.name()
    }

    /// The deployment's configuration.
    pub fn config(&self) -> &DeploymentConfig {
        &self.inner.config
    }

    /// Requests waiting for a free replica now.
    pub fn queued_requests(&self) -> u32 {
        self.inner.router.queued()
    }

    /// A snapshot of the deployment and its replicas.
    pub fn status(&self) -> DeploymentStatus {
        self.inner.status()
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
        self.call_with(current_context(), data).await
    }

    /// Opens the agent's text stream on a replica, within the current request's context.
    ///
    /// # Errors
    ///
    /// As [`DeploymentHandle::stream_text`].
    pub async fn stream(&self, data: Value) -> Result<ReplicaStream<String>, Error> {
        self.stream_text(current_context(), data).await
    }

    /// A typed call: what [`crate::callable::TypedHandle::call`] sends.
    pub(crate) async fn call_any(&self, request: AnyBox) -> Result<AnyBox, Error> {
        let ctx = current_context();
        let slot = self.inner.router.acquire(ctx.routing_key()).await?;
        slot.call_any(ctx, request).await
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
        let slot = self.inner.router.acquire(ctx.routing_key()).await?;
        let value = slot.call(ctx, data).await?;
        if value.is_object() {
            Ok(value)
        } else {
            Err(Error::NotAnObject(json_kind(&value)))
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
        let slot = self.inner.router.acquire(ctx.routing_key()).await?;
        slot.stream::<Text>(ctx, data).await
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
        let slot = self.inner.router.acquire(ctx.routing_key()).await?;
        slot.stream::<Events>(ctx, data).await
    }

    /// What the deployment serves.
    pub fn kind(&self) -> DeploymentKind {
        self.inner.kind
    }

    /// Sends an HTTP request to a handler replica; the replica's slot is held until the response
    /// body ends. Dropping the future before the response cancels the handler.
    ///
    /// # Errors
    ///
    /// [`Error::Backpressure`] when the queue is full, the handler's panic, or
    /// [`Error::WrongKind`] for an agent deployment.
    pub async fn serve(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> Result<http::Response<HttpBody>, Error> {
        let slot = self.inner.router.acquire(ctx.routing_key()).await?;
        slot.serve(ctx, req).await
    }

    /// Stops taking requests, waits for the ongoing ones to finish (at most `timeout`), then
    /// stops the replicas and gives their resources back.
    pub async fn shutdown(&self, timeout: std::time::Duration) {
        self.inner.shutdown(timeout).await;
    }
}

/// The current request's context, or a fresh one outside a request.
fn current_context() -> RequestContext {
    RequestContext::current().unwrap_or_else(|| {
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
