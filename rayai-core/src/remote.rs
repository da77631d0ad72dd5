//! Replicas in other processes: what the controller needs to route to them. Where the replicas
//! of a deployment are comes from a [`Discovery`]; how a request reaches one is a
//! [`Transport`] (rayai-http implements it with HTTP/2 to the replica process's serving port).
//! Both are small traits so that the router, its policies and the status do not care where the
//! replicas run.
//!
//! A [`Roles`] given to [`crate::Controller::set_roles`] decides which deployments run in this
//! process (none in the proxy role, the named ones in the replica role); every other deployment
//! of the applications deployed becomes a remote set fed by the discovery.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;

use crate::error::Error;
use crate::handler::HttpBody;
use crate::request::RequestContext;

/// Where the replicas of each deployment are: a set of `host:port` addresses per deployment
/// name, read again every [`Discovery::period`].
pub trait Discovery: Send + Sync + 'static {
    /// What it reads, for messages (`static:/etc/rayai/replicas.toml`, `dns:*.svc.local`).
    fn describe(&self) -> String;

    /// The addresses of `deployment`'s replica processes now (empty when it has none). An error
    /// keeps the set the deployment had (a file being rewritten, a DNS server down).
    fn resolve<'a>(&'a self, deployment: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>>;

    /// How often the sets are read again.
    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// Why a request to a remote replica did not get the replica's answer.
#[derive(Debug)]
pub enum Failure {
    /// The request never reached the replica (no connection, the connection was reset before
    /// the request was sent): it may go to another replica, and this one is taken out of the set
    /// until it is healthy again.
    Unsent(String),
    /// The replica refused the request before its code saw it (it is draining): it may go to
    /// another replica.
    Refused(String),
    /// The replica had the request and the connection failed before the answer: the request
    /// may have run, so it is not sent again (a `502`).
    Lost(String),
    /// The replica's answer was an error (the agent's own, a panic, backpressure...).
    Answered(Error),
}

/// A text or event stream coming from a remote replica: its items, and the error that ends it.
pub type RemoteStream<T> = BoxStream<'static, Result<T, Error>>;

/// How requests reach a replica in another process: one connection pool for all of them.
/// Dropping a returned future or stream cancels the request on the replica.
pub trait Transport: Send + Sync + 'static {
    /// Runs an agent's `run`, its answer as the JSON text the replica process wrote (an object).
    fn call_json(
        &self,
        address: &str,
        deployment: &str,
        ctx: &RequestContext,
        data: &Value,
    ) -> BoxFuture<'static, Result<bytes::Bytes, Failure>>;

    /// Runs a typed deployment's `call`, its request and response as JSON.
    fn call_typed(
        &self,
        address: &str,
        deployment: &str,
        ctx: &RequestContext,
        data: &Value,
    ) -> BoxFuture<'static, Result<Value, Failure>>;

    /// Opens an agent's text stream.
    fn stream_text(
        &self,
        address: &str,
        deployment: &str,
        ctx: &RequestContext,
        data: &Value,
    ) -> BoxFuture<'static, Result<RemoteStream<String>, Failure>>;

    /// Opens an agent's event stream.
    fn stream_events(
        &self,
        address: &str,
        deployment: &str,
        ctx: &RequestContext,
        data: &Value,
    ) -> BoxFuture<'static, Result<RemoteStream<Value>, Failure>>;

    /// Sends an HTTP request to a handler (an ingress) deployment.
    fn serve(
        &self,
        address: &str,
        deployment: &str,
        ctx: &RequestContext,
        req: http::Request<HttpBody>,
    ) -> BoxFuture<'static, Result<http::Response<HttpBody>, Failure>>;

    /// Asks the replica process whether it takes `deployment`'s requests now; the answer is how
    /// many it takes at once (its replicas of the deployment times their
    /// `max_ongoing_requests`), which the proxy holds it to.
    fn probe(&self, address: &str, deployment: &str) -> BoxFuture<'static, Result<u32, String>>;
}

/// Which deployments run in this process, and how the others are found and reached.
#[derive(Clone)]
pub struct Roles {
    /// The deployments whose replicas run here (none: the proxy role).
    pub local: Vec<String>,
    /// Replicas of each local deployment in this process, instead of its `num_replicas`.
    pub num_replicas: Option<u32>,
    /// Where the other deployments' replicas are.
    pub discovery: Arc<dyn Discovery>,
    /// How requests reach them.
    pub transport: Arc<dyn Transport>,
    /// How often each remote replica's health is probed.
    pub probe_period: Duration,
    /// How long a request waits for a remote deployment that has no live replica before it
    /// fails with `503`.
    pub wait_for_replica: Duration,
}

impl std::fmt::Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roles")
            .field("local", &self.local)
            .field("num_replicas", &self.num_replicas)
            .field("discovery", &self.discovery.describe())
            .field("probe_period", &self.probe_period)
            .finish_non_exhaustive()
    }
}

impl Roles {
    /// Whether the deployment `name` runs in this process.
    pub fn runs_here(&self, name: &str) -> bool {
        self.local.iter().any(|l| l == name)
    }
}
