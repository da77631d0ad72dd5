//! `x-request-id`: a client's id comes back on every kind of response, over HTTP/1.1 and h2c.

use http::{Method, StatusCode};

use crate::common::Proto;
use crate::{call, example, get_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_request_id_is_echoed_on_handler_auth_and_proxy_responses() {
    let server = example().await;
    let addr = server.local_addr();
    let id = [("x-request-id", "client-id-123")];
    for (path, status) in [
        ("/", StatusCode::OK),
        ("/api/v1/items/1", StatusCode::OK),
        ("/api/v1/items/abc", StatusCode::UNPROCESSABLE_ENTITY),
        ("/api/v1/secret", StatusCode::UNAUTHORIZED),
        ("/slow?ms=1", StatusCode::OK),
        ("/api/v1/../slow", StatusCode::BAD_REQUEST),
        ("/-/routes", StatusCode::OK),
    ] {
        let reply = get_with(addr, path, &id).await;
        assert_eq!(reply.status, status, "{path}: {reply:?}");
        assert_eq!(reply.header("x-request-id"), "client-id-123", "{path}");
    }
    let h2 = call(addr, Proto::H2, Method::GET, "/api/v1/secret", &id).await;
    assert_eq!(h2.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h2.header("x-request-id"), "client-id-123");
    let timed_out = get_with(addr, "/slow?ms=3000", &id).await;
    assert_eq!(timed_out.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(timed_out.header("x-request-id"), "client-id-123");
    assert_eq!(
        timed_out.body,
        "Request client-id-123 timed out after 1.0s."
    );
    server.shutdown().await;
}
