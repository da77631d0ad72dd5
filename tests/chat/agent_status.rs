//! Agents choose their status: an `AgentError` made with a client (or server) status answers
//! with it and `{"detail": ...}` as FastAPI writes `HTTPException`; inside a stream it stays an
//! error frame; through a handle it keeps its status.

use http::StatusCode;
use rayai::prelude::*;
use rayai::{DeploymentError, HttpOptions, Server};

use crate::common::{post, serve};
use crate::{agents, sse_events};

/// A server with the `picky` agent.
async fn picky() -> Server {
    serve(App::new().agent::<agents::Picky>(), HttpOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_answer_their_status_with_the_detail() {
    let server = picky().await;
    let addr = server.local_addr();
    for (status, detail) in [
        (StatusCode::BAD_REQUEST, "bad \"input\""),
        (StatusCode::NOT_FOUND, "no such document"),
        (StatusCode::CONFLICT, "already running"),
        (StatusCode::UNPROCESSABLE_ENTITY, "cannot process this"),
        (StatusCode::TOO_MANY_REQUESTS, "the quota is spent"),
        (StatusCode::IM_A_TEAPOT, "short and stout"),
        (StatusCode::SERVICE_UNAVAILABLE, "the model is loading"),
    ] {
        let body = json!({"data": {"status": status.as_u16(), "detail": detail}}).to_string();
        let r = post(addr, "/agents/picky/chat", &body).await;
        r.assert(
            status,
            "application/json",
            &json!({ "detail": detail }).to_string(),
        );
        assert!(r.headers.get("retry-after").is_none(), "{status}");
        assert!(!r.header("x-request-id").is_empty());
    }
    // The default status of the agent: a 400 with its message.
    let r = post(addr, "/agents/picky/chat", r#"{"data": {}}"#).await;
    r.assert(
        StatusCode::BAD_REQUEST,
        "application/json",
        r#"{"detail":"picky says no"}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_detail_is_sent_as_is() {
    let server = picky().await;
    let addr = server.local_addr();
    let r = post(
        addr,
        "/agents/picky/chat",
        r#"{"data": {"status": 422, "detail": [{"type": "value_error", "loc": ["body", "data", "date"], "msg": "Value error, in the past", "input": "2001-01-01"}]}}"#,
    )
    .await;
    r.assert(
        StatusCode::UNPROCESSABLE_ENTITY,
        "application/json",
        r#"{"detail":[{"type":"value_error","loc":["body","data","date"],"msg":"Value error, in the past","input":"2001-01-01"}]}"#,
    );
    let r = post(
        addr,
        "/agents/picky/chat",
        r#"{"data": {"status": 409, "detail": {"id": 7, "state": "running"}}}"#,
    )
    .await;
    r.assert(
        StatusCode::CONFLICT,
        "application/json",
        r#"{"detail":{"id":7,"state":"running"}}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_carries_retry_after() {
    let server = picky().await;
    let r = post(
        server.local_addr(),
        "/agents/picky/chat",
        r#"{"data": {"status": 429, "detail": "slow down", "retry_after": 30}}"#,
    )
    .await;
    r.assert(
        StatusCode::TOO_MANY_REQUESTS,
        "application/json",
        r#"{"detail":"slow down"}"#,
    );
    assert_eq!(r.header("retry-after"), "30");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_that_is_no_error_is_a_500() {
    let server = picky().await;
    for status in [200, 302, 100] {
        let body = json!({"data": {"status": status, "detail": "odd"}}).to_string();
        let r = post(server.local_addr(), "/agents/picky/chat", &body).await;
        r.assert(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            r#"{"detail":"odd"}"#,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_stream_a_client_error_is_an_error_frame() {
    let server = picky().await;
    let r = post(
        server.local_addr(),
        "/agents/picky/chat",
        r#"{"data": {"status": 404, "detail": "gone \"away\""}, "stream": "text"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "text/event-stream; charset=utf-8");
    assert_eq!(
        r.body,
        "data: checking\n\ndata: {\"type\": \"error\", \"content\": \"gone \\\"away\\\"\"}\n\n"
    );
    assert_eq!(sse_events(&r.body).len(), 2);
    // A JSON detail: the frame's content is the message (the detail's JSON).
    let r = post(
        server.local_addr(),
        "/agents/picky/chat",
        r#"{"data": {"status": 422, "detail": ["x"]}, "stream": "text"}"#,
    )
    .await;
    assert_eq!(
        r.body,
        "data: checking\n\ndata: {\"type\": \"error\", \"content\": \"[\\\"x\\\"]\"}\n\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_keeps_the_status_and_detail() {
    let server = picky().await;
    let handle = server.deployment("picky").expect("deployed");
    let error = handle
        .call(json!({"status": 404, "detail": {"id": 3}, "retry_after": 2}))
        .await
        .expect_err("picky refuses");
    let DeploymentError::Agent(e) = &error else {
        panic!("not the agent's error: {error:?}");
    };
    assert_eq!(e.status(), StatusCode::NOT_FOUND);
    assert_eq!(*e.detail(), json!({"id": 3}));
    assert_eq!(e.retry_after(), Some(2));
    // An agent that forwards it with `?` answers what picky answered.
    let forwarded = AgentError::from(error);
    assert_eq!(forwarded.status(), StatusCode::NOT_FOUND);
    assert_eq!(*forwarded.detail(), json!({"id": 3}));
}
