//! rayai-core: what an agent and a deployment are, the node and its scheduler, replicas and the
//! per-deployment router, the controller that owns applications and route prefixes, handles
//! for composition, and the status everyone reads. It knows no HTTP beyond the `http` crate's
//! types; `rayai-http` serves it.
//!
//! Most users depend on the `rayai` facade instead, which re-exports this crate.
//!
//! # Module map
//!
//! | module | what it holds |
//! |---|---|
//! | `agent`, `typed`, `handler`, `callable` | what users implement: [`Agent`] (or [`TypedAgent`]), [`handler::Handler`], [`Callable`] |
//! | `schema` | [`AgentSchema`]: an agent's input and output schemas, and FastAPI-shaped validation |
//! | `deployment`, `app`, `config` | declarations: [`Deployment`], [`App`], [`DeploymentConfig`] |
//! | `context`, `request` | [`ReplicaContext`] for constructors, [`RequestContext`] inside requests |
//! | `handle`, `stream` | [`DeploymentHandle`] and the [`ReplicaStream`]s it opens |
//! | `node` | [`NodeResources`] (detected or declared), the scheduler, the resource [`Plan`] |
//! | `serving` | the [`Controller`], its published [`Snapshot`], running deployments, router, replicas |
//! | `route` | the route-prefix table |
//! | `status`, `error` | [`DeploymentStatus`]; [`Error`] and [`AgentError`] |
//! | `batch` | dynamic batching for a deployment's calls |
//! | `remote` | replicas in other processes: [`remote::Discovery`], [`remote::Transport`], [`remote::Roles`] |
//!
//! Dependencies run one way: the types users write against sit at the bottom, `serving` on
//! top; nothing below `serving` reaches the controller.
//!
//! # Feature flags
//!
//! | flag | default | what it enables |
//! |---|---|---|
//! | `axum` | no | an axum `Router` served by [`Deployment::ingress`] reports the route pattern each request matched ([`handler::MatchedRoute`]), for the metrics' `route` label |

mod agent;
mod app;
pub mod batch;
mod callable;
mod config;
mod context;
mod deployment;
mod error;
mod handle;
pub mod handler;
pub mod memory;
mod multiplex;
mod node;
pub mod remote;
mod request;
pub mod route;
mod schema;
mod serving;
mod status;
mod stream;
pub mod striped;
mod target;
mod typed;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use agent::{Agent, Construct, Deploy, EventStream, TextStream};
pub use app::App;
pub use callable::{Callable, Crossing, TypedHandle};
pub use config::{DeploymentConfig, DeploymentKind, Isolation};
pub use context::ReplicaContext;
pub use deployment::Deployment;
pub use error::{AgentError, Error, Result};
pub use handle::{Answer, DeploymentHandle};
pub use multiplex::ModelCache;
pub use node::{Gpu, NodeResources, Placement, Plan, PlanRow, Resources, Shortfall};
pub use request::RequestContext;
pub use schema::AgentSchema;
/// `schemars`, whose `JsonSchema` derive a [`TypedAgent`]'s types need.
pub use schemars;
pub use serving::{
    AppSource, Application, AutoscalingConfig, Controller, Decision, DeploymentStats, Endpoint,
    LATENCY_BUCKETS_MS, Latency, ModelStats, OpenAiRoutes, ReplicaStats, Snapshot, SnapshotRef,
};
pub use status::{DeploymentState, DeploymentStatus, ReplicaState, ReplicaStatus};
pub use stream::ReplicaStream;
pub use typed::TypedAgent;

/// The resource plan of `app` on this node (beside what already runs in this process), without
/// starting anything: every deployment's replicas times their resources against what the node
/// has, and what is short.
pub async fn plan(app: &App) -> Plan {
    Controller::global().await.plan(app)
}

/// The `#[agent(...)]` attribute (see the `rayai-macros` crate).
pub use rayai_macros::agent;
