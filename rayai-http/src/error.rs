//! The one place where errors become HTTP responses (the status codes of CONTRACT.md).

use bytes::{BufMut, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use rayai_core::Error;
use serde_json::{Value, json};

use crate::body::Body;

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

/// The proxy's 404 for a path no application serves.
pub(crate) fn no_route(path: &str) -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        format!("Path '{path}' not found. Ping http://.../-/routes for available routes."),
    )
}

/// FastAPI's 404 inside an application.
pub(crate) fn not_found() -> Response<Body> {
    detail(StatusCode::NOT_FOUND, "Not Found")
}

/// FastAPI's 405 with the allowed method.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// The 413 for a body over the limit.
pub(crate) fn too_large(limit: u64) -> Response<Body> {
    detail(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("Request body is too large: the limit is {limit} bytes."),
    )
}

/// The 408 for a request whose response did not start in time.
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
pub(crate) fn from_error(error: &Error, retry_after_s: Option<u32>) -> Response<Body> {
    match error {
        Error::TextStreamUnsupported | Error::EventStreamUnsupported => {
            detail(StatusCode::BAD_REQUEST, &error.to_string())
        }
        Error::Backpressure { .. } => match retry_after_s {
            Some(secs) => {
                let mut resp = text(StatusCode::TOO_MANY_REQUESTS, error.to_string());
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                resp
            }
            None => text(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
        },
        Error::ShuttingDown(_) => text(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
        _ => detail(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
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
        let e = Error::Backpressure { queued: 1, max: 1 };
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
}
