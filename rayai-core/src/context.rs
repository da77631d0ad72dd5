//! What a replica and a request know about themselves.

use std::sync::Arc;

/// Handed to an agent's constructor: which deployment and replica it is, and its GPUs.
///
/// # Examples
///
/// ```
/// use rayai_core::ReplicaContext;
///
/// let ctx = ReplicaContext::new("echo", "echo#0", vec![]);
/// assert_eq!(ctx.deployment(), "echo");
/// assert_eq!(ctx.replica_id(), "echo#0");
/// assert!(ctx.gpu_ids().is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct ReplicaContext {
    inner: Arc<ReplicaInfo>,
}

struct ReplicaInfo {
    deployment: String,
    replica_id: String,
    gpu_ids: Vec<u32>,
    controller: Option<crate::Controller>,
}

impl std::fmt::Debug for ReplicaInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaInfo")
            .field("deployment", &self.deployment)
            .field("replica_id", &self.replica_id)
            .field("gpu_ids", &self.gpu_ids)
            .finish_non_exhaustive()
    }
}

impl ReplicaContext {
    /// A context for one replica.
    pub fn new(
        deployment: impl Into<String>,
        replica_id: impl Into<String>,
        gpu_ids: Vec<u32>,
    ) -> Self {
        ReplicaContext {
            inner: Arc::new(ReplicaInfo {
                deployment: deployment.into(),
                replica_id: replica_id.into(),
                gpu_ids,
                controller: None,
            }),
        }
    }

    /// The same context, able to find the controller's other deployments.
    pub(crate) fn with_controller(self, controller: crate::Controller) -> Self {
        let info = &self.inner;
        ReplicaContext {
            inner: Arc::new(ReplicaInfo {
                deployment: info.deployment.clone(),
                replica_id: info.replica_id.clone(),
                gpu_ids: info.gpu_ids.clone(),
                controller: Some(controller),
            }),
        }
    }

    /// A handle to the running deployment `name`, for composition: calls go through its router
    /// (power of two choices, backpressure, sticky sessions) with no HTTP in between. Take it
    /// when you need it (or in the constructor once the deployment exists: an application's
    /// ingress starts after its other deployments).
    ///
    /// # Errors
    ///
    /// [`crate::Error::UnknownDeployment`] when no deployment of that name runs.
    pub fn handle(&self, name: &str) -> Result<crate::DeploymentHandle, crate::Error> {
        self.inner
            .controller
            .as_ref()
            .and_then(|c| c.handle(name))
            .ok_or_else(|| crate::Error::UnknownDeployment(name.to_owned()))
    }

    /// A typed handle to the running deployment of the [`crate::callable::Callable`] type `T`.
    ///
    /// # Errors
    ///
    /// As [`ReplicaContext::handle`].
    pub fn typed_handle<T: crate::callable::Callable + crate::Deploy>(
        &self,
    ) -> Result<crate::callable::TypedHandle<T>, crate::Error> {
        self.handle(T::config().name())
            .map(crate::callable::TypedHandle::new)
    }

    /// The deployment's name.
    pub fn deployment(&self) -> &str {
        &self.inner.deployment
    }

    /// This replica's id, unique within the process (`echo#0`, `echo#1`, ...).
    pub fn replica_id(&self) -> &str {
        &self.inner.replica_id
    }

    /// The GPU ids assigned to this replica (empty without GPUs).
    pub fn gpu_ids(&self) -> &[u32] {
        &self.inner.gpu_ids
    }
}

/// The request being served: readable from inside `run` and the stream methods with
/// [`RequestContext::current`].
///
/// # Examples
///
/// ```
/// use rayai_core::RequestContext;
///
/// // Outside a request there is none.
/// assert!(RequestContext::current().is_none());
/// ```
#[derive(Debug, Clone)]
pub struct RequestContext {
    request_id: Arc<str>,
    session_id: Arc<str>,
    sticky: Option<Arc<str>>,
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

impl RequestContext {
    /// A context with these ids.
    pub fn new(request_id: impl Into<Arc<str>>, session_id: impl Into<Arc<str>>) -> Self {
        let session_id: Arc<str> = session_id.into();
        let sticky = (&*session_id != "default").then(|| session_id.clone());
        RequestContext {
            request_id: request_id.into(),
            session_id,
            sticky,
        }
    }

    /// Keeps the request's session on one replica under `key` (an `x-session-id` header) when the
    /// session id is the default one.
    pub fn with_session_key(mut self, key: impl Into<Arc<str>>) -> Self {
        if self.sticky.is_none() {
            self.sticky = Some(key.into());
        }
        self
    }

    /// The key that keeps this request's session on one replica, if it has a session.
    pub(crate) fn routing_key(&self) -> Option<&str> {
        self.sticky.as_deref()
    }

    /// The request id (the client's `X-Request-ID`, or a fresh UUID).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The session id from the request body (`"default"` when absent).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The context of the request the calling code serves, if it serves one.
    pub fn current() -> Option<RequestContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with `self` as the current request context.
    pub(crate) fn scope<F: std::future::Future>(
        self,
        fut: F,
    ) -> tokio::task::futures::TaskLocalFuture<RequestContext, F> {
        CURRENT.scope(self, fut)
    }
}
