//! rayai-http: a thin hyper server in front of rayai-core. It looks up the route prefix, serves
//! the agent chat contract (JSON and Server-Sent Events), and answers `/-/healthz` and
//! `/-/routes`. Every response carries `x-request-id`.
//!
//! # Feature flags
//!
//! | flag | default | what it enables |
//! |---|---|---|
//! | (none) | | this crate has no optional features |

pub mod auth;
mod body;
mod chat;
mod dashboard;
mod error;
mod idle;
mod metrics;
mod options;
pub mod serve;
mod server;
mod service;
mod sse;

pub use body::Body;
pub use dashboard::LogLayer;
pub use options::HttpOptions;
pub use server::Server;
pub use service::ServerService;
pub use sse::DONE_FRAME;
