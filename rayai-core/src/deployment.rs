//! Deployments as declared: a configuration and how to build a replica. The controller starts
//! them; [`crate::DeploymentHandle`] reaches them once they run.

use std::any::TypeId;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::agent::{Agent, Deploy, DynAgent};
use crate::callable::{Callable, Codec, Crossing, DynCallable};
use crate::config::{DeploymentConfig, DeploymentKind};
use crate::context::ReplicaContext;
use crate::error::AgentError;
use crate::handler::{BoxError, DynHandler, Handler, HttpBody, ServiceHandler};
use crate::schema::AgentSchema;
use crate::target::{Factory, Target};

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
    /// An agent's input and output schemas, when they say more than "any object".
    schema: Option<Arc<AgentSchema>>,
    /// Which code builds the replicas: the Rust types of the target and its constructor. Two
    /// deployments with the same one run the same code.
    code: TypeId,
    /// A `reconfigure` given with [`Deployment::with_reconfigure`].
    reconfigure: Option<ReconfigureFn>,
    /// How a typed deployment's values cross processes ([`Callable::crossing`]).
    codec: Option<Codec>,
}

/// A `reconfigure` hook given as a closure: called with the `user_config` on each replica.
pub(crate) type ReconfigureFn =
    Arc<dyn Fn(Value) -> BoxFuture<'static, Result<(), AgentError>> + Send + Sync>;

/// A declared deployment taken apart for the controller.
pub(crate) struct Parts {
    pub(crate) config: DeploymentConfig,
    pub(crate) factory: Factory,
    pub(crate) kind: DeploymentKind,
    pub(crate) schema: Option<Arc<AgentSchema>>,
    pub(crate) reconfigure: Option<ReconfigureFn>,
    pub(crate) code: TypeId,
    pub(crate) codec: Option<Codec>,
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
        Fut: std::future::Future<Output = Result<T, AgentError>> + Send + 'static,
    {
        let construct = Arc::new(construct);
        let schema = T::schema();
        Deployment {
            config,
            kind: DeploymentKind::Agent,
            schema: (schema != AgentSchema::any()).then(|| Arc::new(schema)),
            code: TypeId::of::<(T, F)>(),
            reconfigure: None,
            codec: None,
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
        Fut: std::future::Future<Output = Result<T, AgentError>> + Send + 'static,
    {
        let construct = Arc::new(construct);
        Deployment {
            config,
            kind: DeploymentKind::Handler,
            schema: None,
            code: TypeId::of::<(T, F)>(),
            reconfigure: None,
            codec: None,
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
        code: TypeId,
        make: impl Fn(ReplicaContext) -> Arc<dyn DynHandler> + Send + Sync + 'static,
    ) -> Self {
        let make = Arc::new(make);
        Deployment {
            config,
            kind: DeploymentKind::Handler,
            schema: None,
            code,
            reconfigure: None,
            codec: None,
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
    /// With the `axum` feature, an axum `Router` reports the route pattern each request
    /// matched ([`crate::handler::MatchedRoute`]), which labels the request's metrics as Ray
    /// labels a FastAPI route (`/items/{item_id}`, not the raw path).
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
        Deployment::dyn_handler(config, TypeId::of::<F>(), move |ctx| {
            let service = make(&ctx);
            #[cfg(feature = "axum")]
            let service = crate::handler::report_matched_routes(service);
            Arc::new(ServiceHandler(service))
        })
    }

    /// The deployment of a gRPC service: `T` (a `#[deployment(...)]` type, which gives the
    /// configuration and is constructed once per replica) implements a service trait that
    /// tonic generated from a `.proto`, and `wrap` makes it the generated server
    /// (`GreeterServer::from_arc`). As the application's ingress, it answers the calls the gRPC
    /// listener routes to the application (Ray Serve's gRPC servicers), with the replicas,
    /// queues and backpressure of any deployment.
    pub fn grpc<T, S, B, W>(wrap: W) -> Self
    where
        T: Deploy,
        W: Fn(Arc<T>) -> S + Send + Sync + 'static,
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
        let wrap = Arc::new(wrap);
        Deployment {
            config: T::config(),
            kind: DeploymentKind::Handler,
            schema: None,
            code: TypeId::of::<(T, W)>(),
            reconfigure: None,
            codec: None,
            factory: Arc::new(move |ctx| {
                let fut = T::construct(ctx);
                let wrap = wrap.clone();
                Box::pin(async move {
                    let service = wrap(Arc::new(fut.await?));
                    let handler: Arc<dyn DynHandler> = Arc::new(ServiceHandler(service));
                    Ok(Target::Handler(handler))
                })
            }),
        }
    }

    /// What the deployment serves.
    pub fn kind(&self) -> DeploymentKind {
        self.kind
    }

    /// The deployment of a [`Callable`] type: reached through [`crate::TypedHandle`]s, with Rust
    /// values in and out (as JSON between processes when [`Callable::crossing`] says how).
    pub fn callable<T: Deploy + Callable>() -> Self {
        let construct = T::construct;
        Deployment {
            config: T::config(),
            kind: DeploymentKind::Callable,
            schema: None,
            code: TypeId::of::<T>(),
            reconfigure: None,
            codec: T::crossing().map(Crossing::codec),
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
    #[must_use]
    pub fn map_config(mut self, f: impl FnOnce(DeploymentConfig) -> DeploymentConfig) -> Self {
        self.config = f(self.config);
        self
    }

    /// Gives the deployment a `reconfigure` hook: `hook` is called with the deployment's
    /// `user_config` on each replica, after its constructor and the type's own `reconfigure`,
    /// before the replica takes a request, and again on every running replica whenever the
    /// `user_config` changes ([`crate::Controller::apply_app`]). It runs on the replica's
    /// executor; an error fails the replica's start, or (on an update) marks the deployment
    /// `UNHEALTHY`. Meant for an [ingress](Deployment::ingress), whose tower service has no hook
    /// of its own: the state the hook sets is what the service reads. Every replica calls the same
    /// hook; a later call replaces an earlier one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::{Arc, RwLock};
    /// use http::{Request, Response};
    /// use rayai_core::{AgentError, Deployment, DeploymentConfig};
    /// use rayai_core::handler::{HttpBody, full};
    /// use serde_json::json;
    ///
    /// let motd = Arc::new(RwLock::new(String::from("hello")));
    /// let read = motd.clone();
    /// let service = tower::service_fn(move |_req: Request<HttpBody>| {
    ///     let text = read.read().map(|t| t.clone()).unwrap_or_default();
    ///     async move { Ok::<_, Infallible>(Response::new(full(text))) }
    /// });
    /// let config = DeploymentConfig::new("api").with_user_config(json!({ "motd": "hi" }));
    /// let d = Deployment::ingress(config, move |_ctx| service.clone()).with_reconfigure(
    ///     move |user_config| {
    ///         let motd = motd.clone();
    ///         async move {
    ///             let text = user_config["motd"].as_str().ok_or_else(|| AgentError::new("no motd"))?;
    ///             *motd.write().map_err(|e| AgentError::new(e.to_string()))? = text.to_owned();
    ///             Ok(())
    ///         }
    ///     },
    /// );
    /// assert_eq!(d.config().user_config(), Some(&json!({ "motd": "hi" })));
    /// ```
    #[must_use]
    pub fn with_reconfigure<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), AgentError>> + Send + 'static,
    {
        self.reconfigure = Some(Arc::new(move |user_config| Box::pin(hook(user_config))));
        self
    }

    /// Whether `self` and `other` run the same code: the same kind, built by the same Rust types
    /// (the agent, handler or callable, and its constructor). Only their configurations may
    /// differ; a hook given with [`Deployment::with_reconfigure`] is not compared.
    pub fn same_code(&self, other: &Deployment) -> bool {
        self.kind == other.kind && self.code == other.code
    }

    /// The Rust types that build the replicas (see [`Deployment::same_code`]).
    pub(crate) fn code(&self) -> TypeId {
        self.code
    }

    pub(crate) fn into_parts(self) -> Parts {
        Parts {
            config: self.config,
            factory: self.factory,
            kind: self.kind,
            schema: self.schema,
            reconfigure: self.reconfigure,
            code: self.code,
            codec: self.codec,
        }
    }
}
