//! rayai's errors as gRPC statuses, as Ray Serve's gRPC proxy and gRPC users expect them.

use std::time::Duration;

use http::{HeaderMap, Response, StatusCode};
use rayai_core::Error;
use rayai_core::handler::HttpBody;
use tonic::{Code, Status};

/// The status of a request that failed with `error`:
///
/// | error | status |
/// |---|---|
/// | backpressure (`max_queued_requests`) | `RESOURCE_EXHAUSTED` (as Ray maps it) |
/// | no replica, shutting down, replica lost | `UNAVAILABLE` |
/// | the agent's own error | the code of its HTTP status (400 `INVALID_ARGUMENT`, 401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404 `NOT_FOUND`, 409 `ABORTED`, 429 `RESOURCE_EXHAUSTED`, 501 `UNIMPLEMENTED`, 503 `UNAVAILABLE`, 504 `DEADLINE_EXCEEDED`, else `INTERNAL`) |
/// | a panic, anything else | `INTERNAL` |
pub(crate) fn status_of(error: &Error) -> Status {
    let code = match error {
        Error::Backpressure { .. } => Code::ResourceExhausted,
        Error::Unavailable { .. }
        | Error::ShuttingDown(_)
        | Error::ReplicaStopped
        | Error::ReplicaLost { .. } => Code::Unavailable,
        Error::UnknownDeployment(_) => Code::NotFound,
        Error::TextStreamUnsupported | Error::EventStreamUnsupported | Error::WrongKind { .. } => {
            Code::Unimplemented
        }
        Error::Agent(agent) => code_of_http(agent.status()),
        _ => Code::Internal,
    };
    Status::new(code, error.to_string())
}

/// The gRPC code closest to an HTTP status.
fn code_of_http(status: StatusCode) -> Code {
    match status.as_u16() {
        400 | 413 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        504 | 408 => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// The status of a call whose deadline passed.
pub(crate) fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("the deadline passed before the call was answered")
}

/// A trailers-only answer with `status`.
pub(crate) fn response(status: &Status) -> Response<HttpBody> {
    status.clone().into_http()
}

/// Trailers carrying `status`.
pub(crate) fn trailers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    // A message that cannot be a header value is dropped by tonic; the code always is one.
    let _ = status.add_header(&mut headers);
    headers
}

/// The code a header map (trailers, or a trailers-only answer's headers) carries.
pub(crate) fn code_in(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_i32(value.trim().parse().ok()?))
}

/// A `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub(crate) fn parse_timeout(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_says() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "100", "1x", "123456789S", "-1S", "1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_map_to_the_codes_grpc_users_expect() {
        let agent = |status: u16| {
            status_of(&Error::Agent(
                rayai_core::AgentError::new("no")
                    .with_status(StatusCode::from_u16(status).unwrap()),
            ))
            .code()
        };
        assert_eq!(agent(400), Code::InvalidArgument);
        assert_eq!(agent(404), Code::NotFound);
        assert_eq!(agent(500), Code::Internal);
        assert_eq!(
            status_of(&Error::Panicked("boom".into())).code(),
            Code::Internal
        );
        assert_eq!(status_of(&Error::ReplicaStopped).code(), Code::Unavailable);
    }

    #[test]
    fn statuses_round_trip_through_headers() {
        let t = trailers(&deadline_exceeded());
        assert_eq!(code_in(&t), Some(Code::DeadlineExceeded));
        let resp = response(&Status::resource_exhausted("full"));
        assert_eq!(code_in(resp.headers()), Some(Code::ResourceExhausted));
    }
}
