//! rayai serves AI agents, and any request handler, as HTTP endpoints: replicas with declared
//! CPU, GPU and memory, load balancing, streaming, backpressure. It is the Rust counterpart of
//! RayAI's `rayai serve` on Ray Serve, as one library and one binary.
//!
//! ```no_run
//! use rayai::prelude::*;
//!
//! #[agent(num_cpus = 0.5, memory = "512MB", num_replicas = 2)]
//! #[derive(Default)]
//! struct Echo;
//!
//! impl Agent for Echo {
//!     async fn run(&self, data: Value) -> Result<Value, AgentError> {
//!         Ok(json!({ "echo": data }))
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> rayai::Result<()> {
//!     rayai::serve::run(App::new().agent::<Echo>(), "/").await
//! }
//! ```
//!
//! Then `curl -X POST localhost:8000/agents/echo/chat -H 'content-type: application/json' -d
//! '{"data": {"hi": 1}}'` answers `{"result":{"echo":{"hi":1}},"session_id":"default"}`.
//!
//! # Feature flags
//!
//! | flag | default | what it enables |
//! |---|---|---|
//! | `axum` | yes | [`docs::router`]: `/openapi.json` and Swagger UI at `/docs` for an axum ingress; and an axum `Router` served as an ingress reports the route pattern each request matched, so the metrics label it `/items/{item_id}`, as Ray labels a FastAPI route |

//!
//! # Errors
//!
//! [`Error`] is what starting and serving can fail with (binding, TLS, and the runtime beneath);
//! it is what `main` returns, and its `Debug` prints a readable message with its causes (the
//! resource plan as a table). [`DeploymentError`] is what a deployment reports: a handle call's
//! error, a deploy that does not fit, an agent's own error.

/// The status an [`AgentError`] answers with (`AgentError::with_status`).
pub use http::StatusCode;
/// Where an application came from (its `source` in the status API).
pub use rayai_core::AppSource;
/// What a deployment reports: a handle call, a deploy, an agent's own error.
pub use rayai_core::Error as DeploymentError;
pub use rayai_core::batch;
pub use rayai_core::handler::{Handler, HttpBody, RootPath};
pub use rayai_core::{
    Agent, AgentError, App, Application, AutoscalingConfig, Callable, Construct, Controller,
    Crossing, Deploy, Deployment, DeploymentConfig, DeploymentHandle, DeploymentKind,
    DeploymentState, DeploymentStatus, EventStream, Gpu, Isolation, ModelCache, ModelStats,
    NodeResources, OpenAiRoutes, Plan, PlanRow, ReplicaContext, ReplicaState, ReplicaStatus,
    ReplicaStream, RequestContext, Resources, Shortfall, Snapshot, TextStream, TypedHandle, memory,
    plan, route,
};
pub use rayai_core::{AgentSchema, TypedAgent, schemars};

/// Bodies for handlers: a response body whole, empty or streamed, and any body boxed.
pub mod handler {
    pub use rayai_core::handler::{BoxError, HttpService, boxed, empty, full, stream_body};
}
pub use rayai_http::auth::BearerAuthLayer;
/// Declarative deploys: Ray's config schema ([`deploy::DeployConfig`]), applied with
/// [`Server::apply_config`], `PUT /api/serve/applications/` or `rayai deploy`.
pub use rayai_http::deploy;
pub use rayai_http::docs;
/// gRPC (the `grpc` feature): the `rayai.v1.Agents` service's types and client
/// ([`grpc::pb`]); applications add their tonic services with [`App::grpc`].
#[cfg(feature = "grpc")]
pub use rayai_http::grpc;
pub use rayai_http::{Error, HttpOptions, LogLayer, Result, Server};
/// Kubernetes manifests from the agents' attributes, and EndpointSlice discovery (the
/// `kubernetes` feature): see the crate [`rayai_k8s`].
#[cfg(feature = "kubernetes")]
pub use rayai_k8s as k8s;
pub use rayai_macros::{agent, deployment};

/// A request as handlers see it: the path below the route prefix, the prefix in [`RootPath`].
pub type Request = http::Request<HttpBody>;

/// A handler's response; the body may stream.
pub type Response = http::Response<HttpBody>;

/// `Hello::deployment()`: an application whose ingress is the handler type `Hello`.
pub trait HandlerApp: Deploy + Handler {
    /// An application (named after the deployment) with this handler as its ingress.
    fn deployment() -> App {
        App::named(Self::config().name()).handler::<Self>()
    }
}

impl<T: Deploy + Handler> HandlerApp for T {}
pub use serde_json::{Map, Value, json};

/// Serving applications: [`serve::run`] (blocks until shutdown) and [`serve::start`].
pub mod serve {
    pub use crate::args::ServeArgs;
    pub use rayai_http::serve::shutdown_signal;

    use crate::{App, Error, HttpOptions, Server};

    /// Starts the process's server with `options` and returns it (it also becomes the server
    /// that later [`run`] calls deploy to). When the program's allocator is
    /// [`crate::alloc::Allocator`], memory freed after a burst of large bodies goes back to the
    /// system in the background.
    ///
    /// Like [`run`], it installs a log subscriber when the program has none: `RUST_LOG`
    /// (default `info`, with the access log), `RAYAI_LOG_FORMAT=json` for one JSON object per
    /// line, and the dashboard's log view fed. A program that installs its own keeps it.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] when the address cannot be bound.
    pub async fn start(options: HttpOptions) -> Result<Server, Error> {
        crate::alloc::return_memory_when_idle();
        rayai_http::serve::start(options).await
    }

    /// Serves `app` at `route_prefix` and returns when the server has shut down: on Ctrl-C or
    /// SIGTERM, gracefully, as [`Server::shutdown`] says (`/-/healthz` answers `503` for the
    /// drain delay while the listener still accepts, then in-flight work gets the grace period;
    /// at most `drain_delay_s + graceful_shutdown_timeout_s + 1` seconds in all).
    ///
    /// The first call starts the process's server with [`HttpOptions::from_env`] (127.0.0.1:8000
    /// unless `RAYAI_HOST`/`RAYAI_PORT` say otherwise), unless [`start`] started one; later calls
    /// add their application to the same server. Logs and memory as [`start`] says.
    ///
    /// # Errors
    ///
    /// As [`start`] and [`Server::deploy`].
    pub async fn run(app: App, route_prefix: &str) -> Result<(), Error> {
        crate::alloc::return_memory_when_idle();
        rayai_http::serve::run(app, route_prefix).await
    }
}

mod args;

/// The memory allocator rayai's binaries use: declare it in a server's `main.rs` so that memory
/// taken by a burst of large request bodies goes back to the system once they are done.
///
/// ```no_run
/// #[global_allocator]
/// static ALLOCATOR: rayai::alloc::Allocator = rayai::alloc::Allocator;
/// # fn main() {}
/// ```
///
/// It is jemalloc, whose background thread ([`serve::start`] and [`serve::run`] turn it on when
/// jemalloc is the program's allocator) returns freed memory to the system within seconds, even
/// while the server is idle. The system's allocator (glibc's `malloc`) keeps it. Measured on the
/// conformance example, idle resident memory before, at the peak of twenty 15 MB bodies at once,
/// and 20 s after: glibc 7, 269, 269 MB (and a minute later); jemalloc without the background
/// thread 9, 316, 91 MB; jemalloc as rayai runs it 9, 282, 11 MB. Off with
/// `default-features = false` (the feature `jemalloc`).
#[cfg(feature = "jemalloc")]
pub mod alloc {
    pub use tikv_jemallocator::Jemalloc as Allocator;

    /// Turns jemalloc's background purging on when jemalloc is the program's allocator (it then
    /// has allocated something); `true` when it did. [`crate::serve::start`] and
    /// [`crate::serve::run`] call it.
    pub fn return_memory_when_idle() -> bool {
        use tikv_jemalloc_ctl::{background_thread, epoch, stats};
        // The statistics are refreshed by an epoch.
        if epoch::advance().is_err() {
            return false;
        }
        match stats::allocated::read() {
            Ok(bytes) if bytes > 0 => background_thread::write(true).is_ok(),
            _ => false,
        }
    }
}

/// Without jemalloc there is nothing to turn on.
#[cfg(not(feature = "jemalloc"))]
mod alloc {
    pub(crate) fn return_memory_when_idle() -> bool {
        false
    }
}

pub mod project;

/// Streams for `run_stream` and `run_stream_events`: the `stream!`/`try_stream!` macros and the
/// `StreamExt` combinators (`.boxed()`).
pub mod stream {
    pub use async_stream::{stream, try_stream};
    pub use futures::stream::{BoxStream, Stream, StreamExt, iter};
}

/// Everything an agent file needs: `use rayai::prelude::*;`.
pub mod prelude {
    pub use crate::stream::{Stream, StreamExt, try_stream};
    pub use crate::{
        Agent, AgentError, App, Callable, Construct, EventStream, Handler, HandlerApp, ModelCache,
        ReplicaContext, RequestContext, TextStream, Value, agent, deployment, json,
    };
    pub use crate::{StatusCode, TypedAgent};
    pub use std::sync::atomic::{AtomicU64, Ordering};
}

#[doc(hidden)]
pub use rayai_core::__private;

/// The README's code, compiled as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
