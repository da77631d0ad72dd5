//! `x-request-id`: the client's echoed verbatim, else a fresh UUID4, on every response.

use http::StatusCode;

use crate::common::{get, post, post_with};
use crate::{conformance, is_uuid4};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_echoed_verbatim() {
    let server = conformance().await;
    let id = "Client-Chosen id/42;x=1";
    let r = post_with(
        server.local_addr(),
        "/agents/echo/chat",
        &[("X-Request-ID", id)],
        r#"{"data": {}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-request-id"), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_a_fresh_uuid4_when_absent() {
    let server = conformance().await;
    let addr = server.local_addr();
    let a = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    let b = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    for r in [&a, &b] {
        let id = r.header("x-request-id");
        assert!(is_uuid4(id), "not a UUID4: {id:?}");
    }
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_on_404_405_and_422_responses() {
    let server = conformance().await;
    let addr = server.local_addr();
    let errors = [
        post(addr, "/agents/nope/chat", r#"{"data": {}}"#).await,
        post(addr, "/agents/echo/other", r#"{"data": {}}"#).await,
        get(addr, "/agents/echo/chat").await,
        post(addr, "/agents/echo/chat", "{").await,
    ];
    let statuses: Vec<u16> = errors.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [404, 404, 405, 422]);
    for r in &errors {
        assert!(is_uuid4(r.header("x-request-id")), "{r:?}");
    }
    let r = post_with(
        addr,
        "/agents/nope/chat",
        &[("x-request-id", "mine-404")],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-request-id"), "mine-404");
    let r = post_with(
        addr,
        "/agents/echo/chat",
        &[("x-request-id", "mine-422")],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.header("x-request-id"), "mine-422");
}
