//! The errors of rayai-http, and the one place where errors become HTTP responses (the status
//! codes of the contract, `docs/contract.md`).

use std::fmt;
use std::path::PathBuf;

use bytes::{BufMut, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::body::Body;

/// What can go wrong starting or running a server: binding, TLS, or the runtime beneath.
///
/// Its `Debug` prints the message and its causes, one per line (as `anyhow` does), so that a
/// `main` returning `Result<(), Error>` prints something readable, with the resource plan as a
/// table.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server (or the dashboard) could not listen on its address.
    #[error("could not listen on {address} ({what}); {hint}")]
    Bind {
        /// What was to listen: `the server` or `the dashboard`.
        what: &'static str,
        /// The address asked for.
        address: String,
        /// The option or variable that changes it.
        hint: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS settings are incomplete or unreadable.
    #[error("{0}")]
    Tls(TlsProblem),
    /// An environment variable has a value that means nothing.
    #[error("{variable}={value:?} is not {expected}")]
    Env {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The dashboard would listen on an address other machines can reach with no token.
    #[error(
        "the dashboard would listen on {address}, which is not a loopback address, without a \
         token; set dashboard_token (RAYAI_DASHBOARD_TOKEN), bind a loopback address with \
         dashboard_host (RAYAI_DASHBOARD_HOST), or set dashboard_allow_insecure \
         (RAYAI_DASHBOARD_ALLOW_INSECURE=1) to serve it to anyone who can reach it"
    )]
    InsecureDashboard {
        /// The address it bound.
        address: std::net::SocketAddr,
    },
    /// The role settings (`RAYAI_ROLE`, `RAYAI_DEPLOYMENT`, `RAYAI_DISCOVERY`) do not fit
    /// together, or name what the program does not have.
    #[error("{0}")]
    Role(String),
    /// `RAYAI_RENDER` cannot render this program's manifests (no `kubernetes` feature, no
    /// `RAYAI_IMAGE`, a setting that means nothing).
    #[error("{0}")]
    Render(String),
    /// The gRPC listener cannot start (no `grpc` feature).
    #[error("{0}")]
    Grpc(String),
    /// The runtime failed: a deployment that does not fit, a replica that does not start.
    #[error(transparent)]
    Runtime(#[from] rayai_core::Error),
}

/// What is wrong with the TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsProblem {
    /// Only one of `tls_cert_path` and `tls_key_path` was given.
    Incomplete,
    /// A file could not be read or parsed, or the certificate and key do not go together.
    Unreadable {
        /// `certificate`, `key`, or `certificate and key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why, as the TLS library says it.
        reason: String,
    },
}

impl fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsProblem::Incomplete => f.write_str("TLS needs both tls_cert_path and tls_key_path"),
            TlsProblem::Unreadable { what, path, reason } => {
                write!(f, "cannot read the TLS {what} {}: {reason}", path.display())
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        if source.is_some() {
            f.write_str("\n\nCaused by:")?;
        }
        while let Some(cause) = source {
            write!(f, "\n    {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl Error {
    /// The error for a listener that could not bind `address`.
    pub(crate) fn bind(
        what: &'static str,
        address: String,
        hint: &'static str,
        source: std::io::Error,
    ) -> Self {
        Error::Bind {
            what,
            address,
            hint,
            source,
        }
    }
}

/// A `Result` whose error is rayai-http's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

use rayai_core::Error as CoreError;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut out = BytesMut::with_capacity(64);
    let _ = serde_json::to_writer((&mut out).writer(), value);
    let mut resp = Response::new(Body::full(out.freeze()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, JSON);
    resp
}

/// `{"detail": message}` with a status, as FastAPI writes `HTTPException`.
#[cold]
pub(crate) fn detail(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "detail": message }))
}

/// A plain-text response, as Ray Serve's proxy writes its own errors.
pub(crate) fn text(status: StatusCode, message: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::full(message));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, TEXT);
    resp
}

/// A `307 Temporary Redirect` to `location` (FastAPI's answer for a path with a trailing slash
/// its route does not have): the client repeats the same request there.
#[cold]
pub(crate) fn redirect(location: &str) -> Response<Body> {
    let mut resp = Response::new(Body::full(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    if let Ok(value) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, value);
    }
    resp
}

/// The proxy's 404 for a path no application serves.
#[cold]
pub(crate) fn no_route(path: &str) -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        format!("Path '{path}' not found. Ping http://.../-/routes for available routes."),
    )
}

/// FastAPI's 404 inside an application.
#[cold]
pub(crate) fn not_found() -> Response<Body> {
    detail(StatusCode::NOT_FOUND, "Not Found")
}

/// FastAPI's 405 with the allowed method.
#[cold]
pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// The 413 for a body over the limit.
#[cold]
pub(crate) fn too_large(limit: u64) -> Response<Body> {
    detail(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("Request body is too large: the limit is {limit} bytes."),
    )
}

/// The 408 for a request whose response did not start in time.
#[cold]
pub(crate) fn timed_out(request_id: &str, timeout_s: f64) -> Response<Body> {
    text(
        StatusCode::REQUEST_TIMEOUT,
        timeout_message(request_id, timeout_s),
    )
}

/// `Request <id> timed out after <s>s.`, with the seconds as Python prints a float.
pub(crate) fn timeout_message(request_id: &str, timeout_s: f64) -> String {
    if timeout_s.fract() == 0.0 {
        format!("Request {request_id} timed out after {timeout_s:.1}s.")
    } else {
        format!("Request {request_id} timed out after {timeout_s}s.")
    }
}

/// The response for an error raised while serving a request.
#[cold]
pub(crate) fn from_error(error: &CoreError, retry_after_s: Option<u32>) -> Response<Body> {
    match error {
        CoreError::Agent(e) => {
            let mut resp = json_response(e.status(), &json!({ "detail": e.detail() }));
            if let Some(secs) = e.retry_after() {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
        CoreError::TextStreamUnsupported | CoreError::EventStreamUnsupported => {
            detail(StatusCode::BAD_REQUEST, &error.to_string())
        }
        CoreError::Service(cause) => {
            tracing::error!(error = %cause, "ingress service failed");
            detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        CoreError::Backpressure { .. } => match retry_after_s {
            Some(secs) => {
                let mut resp = text(StatusCode::TOO_MANY_REQUESTS, error.to_string());
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                resp
            }
            None => text(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
        },
        CoreError::ShuttingDown(_) => text(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
        CoreError::Unavailable { .. } => {
            let mut resp = text(StatusCode::SERVICE_UNAVAILABLE, error.to_string());
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_s.unwrap_or(1)),
            );
            resp
        }
        CoreError::ReplicaLost { .. } => detail(StatusCode::BAD_GATEWAY, &error.to_string()),
        _ => detail(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
}

/// The 401 of a protected endpoint.
#[cold]
pub(crate) fn unauthorized(message: &str) -> Response<Body> {
    let mut resp = detail(StatusCode::UNAUTHORIZED, message);
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// `403` for a request to the dashboard or the metrics export port that names a host they do
/// not answer (`host`, shortened, as the request named it; `None` when it named none).
#[cold]
pub(crate) fn host_not_allowed(host: Option<&str>) -> Response<Body> {
    let named = match host {
        Some(host) => {
            let short: String = host.chars().take(100).collect();
            format!("the host {short:?} is not allowed")
        }
        None => "a Host header is required".to_owned(),
    };
    text(
        StatusCode::FORBIDDEN,
        format!(
            "Forbidden: {named}. This listener answers the names of the address it is bound \
             to; allow other names with dashboard_allowed_hosts \
             (RAYAI_DASHBOARD_ALLOWED_HOSTS=name[:port],...)."
        ),
    )
}

/// `400` for an HTTP/1 request without a `Host`, with more than one, or with one that is not
/// `host[:port]` (RFC 9112 §3.2).
#[cold]
pub(crate) fn invalid_host() -> Response<Body> {
    text(StatusCode::BAD_REQUEST, "Invalid Host header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_seconds_print_as_python_floats() {
        assert_eq!(timeout_message("r", 1.0), "Request r timed out after 1.0s.");
        assert_eq!(timeout_message("r", 0.5), "Request r timed out after 0.5s.");
    }

    #[test]
    fn overload_is_503_text_or_429_with_retry_after() {
        let e = CoreError::Backpressure { queued: 1, max: 1 };
        let r = from_error(&e, None);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let r = from_error(&e, Some(3));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn agent_errors_answer_their_status_and_detail() {
        use rayai_core::AgentError;
        let r = from_error(&CoreError::Agent(AgentError::new("boom")), None);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let e = AgentError::too_many_requests("later").with_retry_after(7);
        let r = from_error(&CoreError::Agent(e), None);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        let r = from_error(&CoreError::Agent(AgentError::not_found("gone")), Some(3));
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(!r.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn debug_prints_the_message_and_its_causes() {
        let e = Error::bind(
            "the server",
            "127.0.0.1:8000".to_owned(),
            "choose another port with --port or RAYAI_PORT",
            std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use"),
        );
        assert_eq!(
            format!("{e:?}"),
            "could not listen on 127.0.0.1:8000 (the server); choose another port with --port \
             or RAYAI_PORT\n\nCaused by:\n    address in use"
        );
    }

    #[test]
    fn an_infeasible_plan_prints_as_a_table_not_a_debug_dump() {
        use rayai_core::{NodeResources, Plan, PlanRow, Resources};
        let per_replica = Resources {
            num_cpus: 1.0,
            num_gpus: 0.0,
            memory_bytes: 2 << 30,
        };
        let plan = Plan::new(
            NodeResources::new(2.0, 8 << 30),
            vec![PlanRow::new("echo", 4, per_replica)],
        );
        let e = Error::from(CoreError::Infeasible {
            plan: Box::new(plan),
            placement: rayai_core::Placement::Strict,
        });
        let printed = format!("{e:?}");
        assert!(
            printed.starts_with("the deployments do not fit on this node:\n"),
            "{printed}"
        );
        assert!(printed.lines().count() > 3, "{printed}");
        assert!(
            printed.contains("RAYAI_NUM_CPUS") && printed.contains("--strict"),
            "{printed}"
        );
        assert!(
            !printed.contains("\\n") && !printed.contains("Infeasible"),
            "{printed}"
        );
    }
}
