//! rayai-core: what an agent and a deployment are, replicas and the per-deployment router, the
//! route-prefix table. It knows no HTTP beyond the `http` crate's types; `rayai-http` serves it.
//!
//! Most users depend on the `rayai` facade instead, which re-exports this crate.
//!
//! # Feature flags
//!
//! | flag | default | what it enables |
//! |---|---|---|
//! | (none) | | this crate has no optional features |

mod agent;
mod app;
pub mod autoscale;
pub mod batch;
pub mod callable;
mod config;
mod context;
mod controller;
mod deployment;
mod error;
pub mod handler;
pub mod hashring;
pub mod memory;
mod plan;
mod replica;
pub mod resources;
pub mod route;
mod router;
pub mod scheduler;
mod status;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use agent::{Agent, Construct, Deploy, EventStream, TextStream};
pub use app::App;
pub use autoscale::{Autoscaler, AutoscalingConfig, Decision};
pub use batch::{BatchError, Batcher};
pub use callable::{Callable, TypedHandle};
pub use config::{DeploymentConfig, Isolation, Resources, is_url_safe_name};
pub use context::{ReplicaContext, RequestContext};
pub use controller::Controller;
pub use deployment::{Deployment, DeploymentHandle, DeploymentKind};
pub use error::{AgentError, Error, Result};
pub use handler::{Handler, HttpBody, RootPath};
pub use plan::{Plan, PlanRow};
pub use replica::ReplicaStream;
pub use resources::{Gpu, NodeResources};
pub use route::{Route, RouteTable};
pub use scheduler::{Reservation, Scheduler, Shortfall};
pub use status::{DeploymentState, DeploymentStatus, ReplicaState, ReplicaStatus};

/// The resource plan of `app` on this node (beside what already runs in this process), without
/// starting anything: every deployment's replicas times their resources against what the node
/// has, and what is short.
pub fn plan(app: &App) -> Plan {
    Controller::global().plan(app)
}

/// The `#[agent(...)]` attribute (see the `rayai-macros` crate).
pub use rayai_macros::agent;
