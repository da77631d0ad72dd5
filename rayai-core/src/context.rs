//! What a replica knows about itself: its deployment, id and GPUs, and the other deployments
//! it may call.

use std::sync::{Arc, Weak};

use crate::error::Error;
use crate::handle::DeploymentHandle;
use crate::serving::models::ModelSet;

/// Finds running deployments by name: what a replica needs of its controller, and no more.
pub(crate) trait Registry: Send + Sync + 'static {
    /// A handle to the running deployment `name` (the newest, while one replaces another).
    fn handle(&self, name: &str) -> Option<DeploymentHandle>;
}

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
    registry: Option<Weak<dyn Registry>>,
    /// The multiplexed models it holds (empty unless the agent builds a `ModelCache`).
    models: Arc<ModelSet>,
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
                registry: None,
                models: Arc::default(),
            }),
        }
    }

    /// A context that finds the other deployments in `registry`.
    pub(crate) fn with_registry(
        deployment: impl Into<String>,
        replica_id: impl Into<String>,
        gpu_ids: Vec<u32>,
        registry: Weak<dyn Registry>,
    ) -> Self {
        ReplicaContext {
            inner: Arc::new(ReplicaInfo {
                deployment: deployment.into(),
                replica_id: replica_id.into(),
                gpu_ids,
                registry: Some(registry),
                models: Arc::default(),
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
    /// [`Error::UnknownDeployment`] when no deployment of that name runs.
    pub fn handle(&self, name: &str) -> Result<DeploymentHandle, Error> {
        self.inner
            .registry
            .as_ref()
            .and_then(Weak::upgrade)
            .and_then(|r| r.handle(name))
            .ok_or_else(|| Error::UnknownDeployment(name.to_owned()))
    }

    /// The deployment's name.
    pub fn deployment(&self) -> &str {
        &self.inner.deployment
    }

    /// This replica's id, unique within the process (`echo#0`, `echo#1`, ...).
    pub fn replica_id(&self) -> &str {
        &self.inner.replica_id
    }

    /// The multiplexed models of this replica, shared with its router.
    pub(crate) fn models(&self) -> &Arc<ModelSet> {
        &self.inner.models
    }

    /// The GPU ids assigned to this replica (empty without GPUs).
    pub fn gpu_ids(&self) -> &[u32] {
        &self.inner.gpu_ids
    }
}
