//! rayai-http: a thin hyper front in front of rayai-core. It reads the route table the
//! controller publishes, serves the agent chat contract (JSON and Server-Sent Events) and
//! applications' ingress services, answers `/-/healthz` and `/-/routes`, and runs the
//! dashboard. Every response carries `x-request-id`.
//!
//! # Module map
//!
//! | module | job |
//! |---|---|
//! | `server` | [`Server`]: bind, serve, shut down; deploys go to the controller |
//! | `conn` | the accept loop and one connection, with the timeouts, shared by every listener |
//! | `service` | one request: request id, route lookup, timeouts, dispatch, metrics, access log |
//! | `chat`, `sse` | the agent chat contract: body validation, JSON answers, SSE frames |
//! | [`docs`] | each agent's OpenAPI document and Swagger UI; `docs::router` for an axum ingress |
//! | `error` | [`Error`], and the one place errors become HTTP responses |
//! | `monitor` | metrics, the status API, time series and process figures |
//! | `dashboard` | the dashboard's listener, page and router (the status API, `/metrics`), and the metrics export port |
//! | `deploy` | declarative deploys: Ray's config schema, import paths, `PUT`/`DELETE /api/serve/applications/` |
//! | `auth` | [`auth::BearerAuthLayer`] |
//! | `body`, `intake`, `idle`, `options` | [`Body`]; reading request bodies within the timeout and the process's budget; each connection's phases and their bounds; [`HttpOptions`] |
//! | `logging` | the default subscriber: `RUST_LOG`, `RAYAI_LOG_FORMAT=json`, lines built cheaply and written in batches, and [`LogLayer`], the dashboard's feed |
//!
//! # Feature flags
//!
//! | flag | default | what it enables |
//! |---|---|---|
//! | `axum` | no | `docs::router`: `/openapi.json` and `/docs` for an axum ingress's utoipa document |

pub mod auth;
mod body;
mod chat;
mod conn;
mod dashboard;
pub mod deploy;
pub mod docs;
mod error;
#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "grpc")]
pub mod grpc;
mod idle;
mod intake;
mod logging;
mod monitor;
mod openai;
mod options;
mod render;
mod roles;
pub mod serve;
mod server;
mod service;
mod sse;

pub use body::Body;
pub use error::{Error, Result, TlsProblem};
pub use logging::LogLayer;
pub use options::HttpOptions;
pub use server::Server;
pub use service::ServerService;
pub use sse::DONE_FRAME;
