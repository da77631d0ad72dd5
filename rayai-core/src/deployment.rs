//! Deployments as declared: a configuration and how to build a replica. The controller starts
//! them; [`crate::DeploymentHandle`] reaches them once they run.

use std::sync::Arc;

use crate::agent::{Agent, Deploy, DynAgent};
use crate::callable::{Callable, DynCallable};
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
            schema: None,
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
        Deployment::dyn_handler(config, move |ctx| {
            let service = make(&ctx);
            #[cfg(feature = "axum")]
            let service = crate::handler::report_matched_routes(service);
            Arc::new(ServiceHandler(service))
        })
    }

    /// What the deployment serves.
    pub fn kind(&self) -> DeploymentKind {
        self.kind
    }

    /// The deployment of a [`Callable`] type: reached through [`crate::TypedHandle`]s, with Rust
    /// values in and out.
    pub fn callable<T: Deploy + Callable>() -> Self {
        let construct = T::construct;
        Deployment {
            config: T::config(),
            kind: DeploymentKind::Callable,
            schema: None,
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

    pub(crate) fn into_parts(
        self,
    ) -> (
        DeploymentConfig,
        Factory,
        DeploymentKind,
        Option<Arc<AgentSchema>>,
    ) {
        (self.config, self.factory, self.kind, self.schema)
    }
}
