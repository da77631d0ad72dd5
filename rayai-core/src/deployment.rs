//! Deployments: the declaration ([`Deployment`]) and the running thing ([`DeploymentHandle`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::agent::{Deploy, DynAgent};
use crate::replica::{AgentFactory, Events, Replica, ReplicaStream, Text};
use crate::router::Router;
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
    factory: AgentFactory,
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
    pub fn agent<T: Deploy>() -> Self {
        Deployment {
            config: T::config(),
            factory: Arc::new(|ctx| {
                Box::pin(async move {
                    let agent: Arc<dyn DynAgent> = Arc::new(T::construct(ctx).await?);
                    Ok(agent)
                })
            }),
        }
    }

    /// A deployment whose replicas are built by an async function.
    pub fn from_fn<T, F, Fut>(config: DeploymentConfig, construct: F) -> Self
    where
        T: crate::Agent,
        F: Fn(ReplicaContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, crate::AgentError>> + Send + 'static,
    {
        let construct = Arc::new(construct);
        Deployment {
            config,
            factory: Arc::new(move |ctx| {
                let fut = construct(ctx);
                Box::pin(async move {
                    let agent: Arc<dyn DynAgent> = Arc::new(fut.await?);
                    Ok(agent)
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

    /// Starts every replica and returns a handle to the running deployment.
    ///
    /// # Errors
    ///
    /// An invalid configuration, or a replica whose constructor fails or panics.
    pub async fn start(self) -> Result<DeploymentHandle, Error> {
        self.config.validate()?;
        let running = Arc::new(Running {
            router: Arc::new(Router::new(
                self.config.name().to_owned(),
                self.config.max_queued_requests(),
            )),
            next_replica: AtomicU64::new(0),
            config: self.config,
            factory: self.factory,
        });
        let starts = (0..running.config.num_replicas()).map(|_| running.start_replica());
        let replicas = futures::future::try_join_all(starts).await?;
        running.router.set_replicas(replicas);
        Ok(DeploymentHandle { inner: running })
    }
}

struct Running {
    config: DeploymentConfig,
    factory: AgentFactory,
    router: Arc<Router>,
    next_replica: AtomicU64,
}

impl Running {
    async fn start_replica(&self) -> Result<Arc<Replica>, Error> {
        let n = self.next_replica.fetch_add(1, Ordering::Relaxed);
        let ctx = ReplicaContext::new(
            self.config.name(),
            format!("{}#{n}", self.config.name()),
            Vec::new(),
        );
        Replica::start(
            ctx,
            self.config.max_ongoing_requests(),
            self.config.threads_per_replica(),
            &self.factory,
        )
        .await
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

/// A snapshot of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The replica's id.
    pub replica_id: String,
    /// Requests it serves now.
    pub ongoing_requests: u32,
    /// Requests it has been given since it started.
    pub served: u64,
    /// Its GPU ids.
    pub gpu_ids: Vec<u32>,
}

impl DeploymentHandle {
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

    /// A snapshot of the replicas.
    pub fn replicas(&self) -> Vec<ReplicaStatus> {
        self.inner
            .router
            .replicas()
            .iter()
            .map(|r| ReplicaStatus {
                replica_id: r.id().to_owned(),
                ongoing_requests: r.load().ongoing(),
                served: r.served(),
                gpu_ids: r.context().gpu_ids().to_vec(),
            })
            .collect()
    }

    /// Runs the agent's `run` on a replica with the request context `ctx`.
    ///
    /// Dropping the future cancels the work on the replica and frees its slot.
    ///
    /// # Errors
    ///
    /// The agent's error or panic, [`Error::NotAnObject`] when `run` returns something other than
    /// a JSON object, [`Error::Backpressure`] when the queue is full.
    pub async fn call(&self, ctx: RequestContext, data: Value) -> Result<Value, Error> {
        let slot = self.inner.router.acquire().await?;
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
        let slot = self.inner.router.acquire().await?;
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
        let slot = self.inner.router.acquire().await?;
        slot.stream::<Events>(ctx, data).await
    }

    /// Stops taking requests, waits for the ongoing ones to finish (at most `timeout`), then
    /// stops the replicas.
    pub async fn shutdown(&self, timeout: std::time::Duration) {
        self.inner.router.close();
        let replicas = self.inner.router.replicas();
        for r in replicas.iter() {
            r.load().stop_accepting();
        }
        let drained = async {
            while replicas.iter().any(|r| r.load().ongoing() > 0) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        let _ = tokio::time::timeout(timeout, drained).await;
        self.inner.router.set_replicas(Vec::new());
    }
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
