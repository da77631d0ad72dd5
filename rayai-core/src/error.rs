//! The errors of rayai-core: what a user's agent returns ([`AgentError`]) and what the runtime
//! reports ([`Error`]).

use std::any::Any;
use std::borrow::Cow;
use std::fmt;

use http::StatusCode;
use serde_json::Value;

use crate::node::{Placement, Plan, Shortfall};

/// `handler::BoxError`, spelled out: `handler` uses this module, so this one does not use it.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error returned by a user's agent, with the HTTP status and `detail` a client receives.
///
/// [`AgentError::new`] (and any `std::error::Error`, converted with `?`) is a server error: a
/// `500` whose `detail` is the message. The other constructors choose the status, as FastAPI's
/// `HTTPException` does: [`AgentError::bad_request`] (400), [`AgentError::forbidden`] (403),
/// [`AgentError::not_found`] (404), [`AgentError::conflict`] (409),
/// [`AgentError::unprocessable`] (422), [`AgentError::too_many_requests`] (429), or any `4xx`
/// or `5xx` with [`AgentError::with_status`]. The body is `{"detail": ...}`: the message, or any
/// JSON value given with [`AgentError::with_detail`].
///
/// Inside a stream, an error of any status is the stream's error frame, whose `content` is the
/// message. Through a [`crate::DeploymentHandle`] the error arrives as [`Error::Agent`], status
/// and detail included; an agent that forwards it with `?` keeps them.
///
/// # Examples
///
/// ```
/// use http::StatusCode;
/// use rayai_core::AgentError;
/// use serde_json::json;
///
/// fn check(n: i64) -> Result<i64, AgentError> {
///     if n < 0 {
///         return Err(AgentError::bad_request("n must not be negative"));
///     }
///     let parsed: i64 = "42".parse()?; // any std error converts, as a 500
///     Ok(n + parsed)
/// }
/// let e = check(-1).unwrap_err();
/// assert_eq!(e.status(), StatusCode::BAD_REQUEST);
/// assert_eq!(*e.detail(), json!("n must not be negative"));
///
/// let e = AgentError::new("the model is not loaded");
/// assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
///
/// let e = AgentError::not_found("no such document").with_detail(json!({"id": 7}));
/// assert_eq!((e.status(), e.message()), (StatusCode::NOT_FOUND, "no such document"));
/// assert_eq!(*e.detail(), json!({"id": 7}));
/// ```
pub struct AgentError {
    message: String,
    status: StatusCode,
    /// What few errors carry: a JSON detail and a `Retry-After`; boxed to keep results small.
    extra: Option<Box<Extra>>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The rarer parts of an [`AgentError`].
#[derive(Debug, Clone, Default)]
struct Extra {
    detail: Option<Value>,
    retry_after_s: Option<u32>,
}

impl AgentError {
    /// A server error (`500`) with this message as its detail.
    pub fn new(message: impl Into<String>) -> Self {
        AgentError {
            message: message.into(),
            status: StatusCode::INTERNAL_SERVER_ERROR,
            extra: None,
            source: None,
        }
    }

    /// A `400 Bad Request` with this message as its detail.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::AgentError;
    ///
    /// let e = AgentError::bad_request("`text` must not be empty");
    /// assert_eq!(e.status().as_u16(), 400);
    /// ```
    pub fn bad_request(message: impl Into<String>) -> Self {
        AgentError::new(message).with_status(StatusCode::BAD_REQUEST)
    }

    /// A `403 Forbidden` with this message as its detail.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::AgentError;
    ///
    /// assert_eq!(AgentError::forbidden("not yours").status().as_u16(), 403);
    /// ```
    pub fn forbidden(message: impl Into<String>) -> Self {
        AgentError::new(message).with_status(StatusCode::FORBIDDEN)
    }

    /// A `404 Not Found` with this message as its detail.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::AgentError;
    ///
    /// assert_eq!(AgentError::not_found("no such document").status().as_u16(), 404);
    /// ```
    pub fn not_found(message: impl Into<String>) -> Self {
        AgentError::new(message).with_status(StatusCode::NOT_FOUND)
    }

    /// A `409 Conflict` with this message as its detail.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::AgentError;
    ///
    /// assert_eq!(AgentError::conflict("already running").status().as_u16(), 409);
    /// ```
    pub fn conflict(message: impl Into<String>) -> Self {
        AgentError::new(message).with_status(StatusCode::CONFLICT)
    }

    /// A `422 Unprocessable Entity` whose detail is `detail`: a message, or any JSON value such
    /// as a list of field errors in FastAPI's shape. The message (for logs and stream error
    /// frames) is the detail itself when it is a string, else its compact JSON.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::AgentError;
    /// use serde_json::json;
    ///
    /// let e = AgentError::unprocessable(json!([{
    ///     "type": "value_error",
    ///     "loc": ["body", "data", "date"],
    ///     "msg": "Value error, the date is in the past",
    ///     "input": "2001-01-01",
    /// }]));
    /// assert_eq!(e.status().as_u16(), 422);
    /// assert_eq!(e.detail()[0]["loc"][2], "date");
    /// ```
    pub fn unprocessable(detail: impl Into<Value>) -> Self {
        let detail = detail.into();
        let message = match &detail {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        AgentError::new(message)
            .with_status(StatusCode::UNPROCESSABLE_ENTITY)
            .with_detail(detail)
    }

    /// A `429 Too Many Requests` with this message as its detail; add
    /// [`AgentError::with_retry_after`] to say when to come back.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::AgentError;
    ///
    /// let e = AgentError::too_many_requests("the quota is spent").with_retry_after(30);
    /// assert_eq!((e.status().as_u16(), e.retry_after()), (429, Some(30)));
    /// ```
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        AgentError::new(message).with_status(StatusCode::TOO_MANY_REQUESTS)
    }

    /// The same error with this status, when it is an error status (`400..=599`); any other
    /// status (a success, a redirect) makes it a `500`.
    ///
    /// # Examples
    ///
    /// ```
    /// use http::StatusCode;
    /// use rayai_core::AgentError;
    ///
    /// let e = AgentError::new("I am a teapot").with_status(StatusCode::IM_A_TEAPOT);
    /// assert_eq!(e.status(), StatusCode::IM_A_TEAPOT);
    /// let e = AgentError::new("not an error").with_status(StatusCode::OK);
    /// assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    /// ```
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = if status.is_client_error() || status.is_server_error() {
            status
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        self
    }

    /// The same error with `detail` as the response's `detail` (any JSON value) instead of the
    /// message; the message stays what logs and stream error frames show.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Value>) -> Self {
        self.extra.get_or_insert_default().detail = Some(detail.into());
        self
    }

    /// The same error with a `Retry-After: secs` header on its response.
    #[must_use]
    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.extra.get_or_insert_default().retry_after_s = Some(secs);
        self
    }

    /// The message: the `detail` unless one was given with [`AgentError::with_detail`], and
    /// the `content` of a stream's error frame.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The response's status: `500` unless chosen (always `400..=599`).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response's `detail`: the one given with [`AgentError::with_detail`] (or
    /// [`AgentError::unprocessable`]), else the message as a JSON string.
    pub fn detail(&self) -> Cow<'_, Value> {
        match self.extra.as_ref().and_then(|extra| extra.detail.as_ref()) {
            Some(detail) => Cow::Borrowed(detail),
            None => Cow::Owned(Value::String(self.message.clone())),
        }
    }

    /// The `Retry-After` seconds given with [`AgentError::with_retry_after`], if any.
    pub fn retry_after(&self) -> Option<u32> {
        self.extra.as_ref().and_then(|extra| extra.retry_after_s)
    }

    /// The error this one was converted from, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Debug for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("AgentError");
        s.field("message", &self.message)
            .field("status", &self.status);
        if let Some(extra) = &self.extra {
            s.field("detail", &extra.detail)
                .field("retry_after_s", &extra.retry_after_s);
        }
        s.field("source", &self.source).finish()
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Any error converts into a `500` with its message; an agent's error coming back through a
/// handle ([`Error::Agent`]) keeps its status, detail and `Retry-After`, so that an agent that
/// forwards it with `?` answers what the agent it called answered.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for AgentError {
    fn from(error: E) -> Self {
        let (status, extra) = match (&error as &dyn Any).downcast_ref::<Error>() {
            Some(Error::Agent(inner)) => (inner.status, inner.extra.clone()),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        AgentError {
            message: error.to_string(),
            status,
            extra,
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
    /// A deployment in other processes has no replica that can take the request now.
    #[error("deployment `{deployment}` is unavailable: {reason}")]
    Unavailable {
        /// The deployment's name.
        deployment: String,
        /// Why: what discovery found, what each replica answered.
        reason: String,
    },
    /// A replica in another process had the request, and the connection to it failed before it
    /// answered: the request may have run, so it was not sent again.
    #[error(
        "replica {replica} of deployment `{deployment}` failed while serving the request: {reason}"
    )]
    ReplicaLost {
        /// The deployment's name.
        deployment: String,
        /// The replica's address.
        replica: String,
        /// What the connection said.
        reason: String,
    },
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
    /// The deployments do not fit on the node; the plan (a table) says what is short, and the
    /// message the ways out.
    #[error(
        "{}:\n{plan}\n\n{}",
        match placement {
            Placement::Strict => "the deployments do not fit on this node",
            _ => "the deployments do not fit on this node, not even with one replica each (or min_replicas)",
        },
        ways_out(*placement)
    )]
    Infeasible {
        /// The resource plan: the replicas that had to fit against what the node has.
        plan: Box<Plan>,
        /// The placement asked for: with [`Placement::Strict`] every replica had to fit, else
        /// the minimum of every deployment.
        placement: Placement,
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

/// What to do when an application does not fit, said after its plan.
fn ways_out(placement: Placement) -> String {
    let mut text = String::from(
        "Ways out: lower `num_cpus`, `memory` or `num_replicas` in #[agent(...)]; override them \
         in rayai.toml ([agents.<name>]); or declare the node's size with RAYAI_NUM_CPUS, \
         RAYAI_MEMORY or RAYAI_NUM_GPUS (reservations are promises to the scheduler, not limits \
         on what the code uses).",
    );
    if placement == Placement::Strict {
        text.push_str(
            " Without strict placement (`--strict`, `strict_placement`), what fits starts and \
             the rest waits as pending.",
        );
    }
    text
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

#[cfg(test)]
mod agent_error_tests {
    use http::StatusCode;
    use serde_json::json;

    use super::*;

    #[test]
    fn statuses_are_error_statuses_or_500() {
        let cases = [
            (AgentError::new("m"), 500),
            (AgentError::bad_request("m"), 400),
            (AgentError::forbidden("m"), 403),
            (AgentError::not_found("m"), 404),
            (AgentError::conflict("m"), 409),
            (AgentError::unprocessable("m"), 422),
            (AgentError::too_many_requests("m"), 429),
            (
                AgentError::new("m").with_status(StatusCode::BAD_GATEWAY),
                502,
            ),
            (AgentError::new("m").with_status(StatusCode::OK), 500),
            (
                AgentError::not_found("m").with_status(StatusCode::FOUND),
                500,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(*e.detail(), json!("m"), "{e:?}");
            assert_eq!(e.message(), "m");
        }
    }

    #[test]
    fn a_json_detail_leaves_the_message() {
        let e = AgentError::unprocessable(json!([{"loc": ["body", "data", "x"]}]));
        assert_eq!(e.message(), r#"[{"loc":["body","data","x"]}]"#);
        assert_eq!(e.detail()[0]["loc"][2], "x");
        let e = AgentError::conflict("taken")
            .with_detail(json!({"id": 1}))
            .with_retry_after(5);
        assert_eq!((e.message(), e.retry_after()), ("taken", Some(5)));
        assert_eq!(*e.detail(), json!({"id": 1}));
        assert!(format!("{e:?}").contains("409"));
    }

    #[test]
    fn std_errors_are_500s_and_agent_errors_through_handles_keep_their_status() {
        let parse = "x".parse::<i32>().unwrap_err();
        let e = AgentError::from(parse);
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.source().is_some());

        let inner = AgentError::too_many_requests("slow down")
            .with_detail(json!(["x"]))
            .with_retry_after(3);
        let forwarded = AgentError::from(Error::Agent(inner));
        assert_eq!(forwarded.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(*forwarded.detail(), json!(["x"]));
        assert_eq!(forwarded.retry_after(), Some(3));
        assert_eq!(forwarded.message(), "slow down");

        let other = AgentError::from(Error::ReplicaStopped);
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
