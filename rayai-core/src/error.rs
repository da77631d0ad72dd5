//! The errors of rayai-core: what a user's agent returns ([`AgentError`]) and what the runtime
//! reports ([`Error`]).

use std::fmt;

use crate::handler::BoxError;
use crate::node::{Plan, Shortfall};

/// An error returned by a user's agent.
///
/// Its message becomes the `detail` of the 500 response, or the `content` of a stream's error
/// frame. Any `std::error::Error` converts into it with `?`; [`AgentError::new`] makes one from a
/// message.
///
/// # Examples
///
/// ```
/// use rayai_core::AgentError;
///
/// fn check(n: i64) -> Result<i64, AgentError> {
///     if n < 0 {
///         return Err(AgentError::new("n must not be negative"));
///     }
///     let parsed: i64 = "42".parse()?; // any std error converts
///     Ok(n + parsed)
/// }
/// assert_eq!(check(-1).unwrap_err().message(), "n must not be negative");
/// ```
pub struct AgentError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl AgentError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        AgentError {
            message: message.into(),
            source: None,
        }
    }

    /// The message a client sees.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error this one was converted from, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Debug for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentError")
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for AgentError {
    fn from(error: E) -> Self {
        AgentError {
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }
}

/// What can go wrong in rayai: setting up an application, or serving one request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The agent's own code returned an error.
    #[error("{0}")]
    Agent(AgentError),
    /// The agent's code panicked; the message is the panic's.
    #[error("agent panicked: {0}")]
    Panicked(String),
    /// `run` returned something other than a JSON object.
    #[error("Agent run() must return a JSON object (a dict), but it returned {0}.")]
    NotAnObject(&'static str),
    /// `stream: "text"` on an agent without `run_stream`.
    #[error("Agent does not support text streaming. Implement run_stream() method.")]
    TextStreamUnsupported,
    /// `stream: "events"` on an agent without `run_stream_events`.
    #[error("Agent does not support event streaming. Implement run_stream_events() method.")]
    EventStreamUnsupported,
    /// Every replica is busy and the deployment's queue is full.
    #[error(
        "Request dropped due to backpressure (num_queued_requests={queued}, max_queued_requests={max})."
    )]
    Backpressure {
        /// Requests waiting when this one arrived.
        queued: u32,
        /// The deployment's `max_queued_requests`.
        max: u32,
    },
    /// A request of one kind reached a deployment of another (a chat request to a handler).
    #[error("deployment `{deployment}` is not {expected}")]
    WrongKind {
        /// The deployment's name.
        deployment: String,
        /// What the request needed.
        expected: &'static str,
    },
    /// No running deployment has this name.
    #[error("no deployment named `{0}` is running")]
    UnknownDeployment(String),
    /// The replica serving the request went away before it answered.
    #[error("the replica serving this request stopped before it finished")]
    ReplicaStopped,
    /// The deployment is shutting down and takes no new requests.
    #[error("deployment `{0}` is shutting down")]
    ShuttingDown(String),
    /// A replica could not be constructed.
    #[error("replica {replica} of deployment `{deployment}` failed to start")]
    ReplicaStart {
        /// The deployment's name.
        deployment: String,
        /// The replica's id.
        replica: String,
        /// Why: the constructor's error, or a panic.
        #[source]
        cause: Box<Error>,
    },
    /// The deployments do not fit on the node; the plan (a table) says what is short.
    #[error("the deployments do not fit on this node:\n{plan}")]
    Infeasible {
        /// The resource plan: every deployment's replicas against what the node has.
        plan: Box<Plan>,
    },
    /// One more replica of a deployment does not fit on the node now.
    #[error("no room for another replica of deployment `{deployment}`: {shortfall}")]
    NoRoom {
        /// The deployment's name.
        deployment: String,
        /// What the node is short of.
        shortfall: Shortfall,
    },
    /// A deployment's configuration is not valid.
    #[error("invalid configuration for deployment `{deployment}`: {reason}")]
    InvalidConfig {
        /// The deployment's name.
        deployment: String,
        /// The key of the value at fault, as `rayai.toml` spells it under the deployment's table:
        /// `num_cpus`, `autoscaling.max_replicas`, `name` (see `rayai_rules::Problem::key`).
        field: &'static str,
        /// What is wrong: the rule's message, such as "num_cpus must be greater than 0".
        reason: String,
    },
    /// Two deployments of one application share a name.
    #[error("two deployments are named `{0}`; names must be unique within an application")]
    DuplicateDeployment(String),
    /// An application has nothing to serve.
    #[error("the application has no deployments (did you add an agent?)")]
    EmptyApp,
    /// A route prefix breaks the rules of route prefixes.
    #[error("invalid route prefix {prefix:?}: {reason}")]
    InvalidRoutePrefix {
        /// The prefix given.
        prefix: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// Two applications want the same route prefix.
    #[error(
        "route prefix {prefix:?} is already used by application `{existing}`; cannot also serve `{new}` there"
    )]
    RouteConflict {
        /// The contested prefix.
        prefix: String,
        /// The application already there.
        existing: String,
        /// The application that asked for it.
        new: String,
    },
    /// A replica's threads could not be started.
    #[error("could not start a replica's threads")]
    Executor(#[source] std::io::Error),
    /// An ingress service (a tower service such as an axum `Router`) failed.
    #[error("the ingress service failed")]
    Service(#[source] BoxError),
}

impl Error {
    /// Whether the error says the node lacks the resources (the plan or one replica).
    pub(crate) fn is_infeasible(&self) -> bool {
        matches!(self, Error::Infeasible { .. } | Error::NoRoom { .. })
    }
}

impl From<AgentError> for Error {
    fn from(error: AgentError) -> Self {
        Error::Agent(error)
    }
}

/// The message of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// A `Result` whose error is rayai's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
