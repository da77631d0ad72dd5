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
mod config;
mod context;
mod deployment;
mod error;
pub mod memory;
mod replica;
pub mod route;
mod router;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use agent::{Agent, Construct, Deploy, EventStream, TextStream};
pub use app::App;
pub use config::{DeploymentConfig, Resources, is_url_safe_name};
pub use context::{ReplicaContext, RequestContext};
pub use deployment::{Deployment, DeploymentHandle, ReplicaStatus};
pub use error::{AgentError, Error, Result};
pub use replica::ReplicaStream;
pub use route::{Route, RouteTable};

/// The `#[agent(...)]` attribute (see the `rayai-macros` crate).
pub use rayai_macros::agent;
