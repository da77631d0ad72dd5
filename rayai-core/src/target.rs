//! What a replica runs, and how one is built: the link between a declared [`crate::Deployment`]
//! and the replicas that serve it.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::agent::DynAgent;
use crate::callable::DynCallable;
use crate::context::ReplicaContext;
use crate::error::AgentError;
use crate::handler::DynHandler;

/// What a replica runs: an agent (the chat contract), a handler (any HTTP) or a typed
/// deployment (reached through handles).
#[derive(Clone)]
pub(crate) enum Target {
    Agent(Arc<dyn DynAgent>),
    Handler(Arc<dyn DynHandler>),
    Callable(Arc<dyn DynCallable>),
}

/// Builds one replica's target, on the replica's executor.
pub(crate) type Factory =
    Arc<dyn Fn(ReplicaContext) -> BoxFuture<'static, Result<Target, AgentError>> + Send + Sync>;
