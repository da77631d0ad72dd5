//! The connection itself: garbage bytes and a truncated body close it without harming the server,
//! and HTTP/2 with prior knowledge serves JSON and streams.

use http::StatusCode;

use crate::common::{self, Proto, json_post, open, post, raw};
use crate::{DONE, POLL, conformance, is_uuid4};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_the_connection_and_the_server_keeps_serving() {
    let server = conformance().await;
    let addr = server.local_addr();
    let answer = raw(addr, b"GARBAGE\r\n\r\n", false, POLL).await;
    if !answer.is_empty() {
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400"), "{text:?}");
    }
    let r = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_closes_the_connection_and_the_server_keeps_serving() {
    let server = conformance().await;
    let addr = server.local_addr();
    // The head promises 100 bytes; 10 come, then the client half-closes.
    let mut bytes = b"POST /agents/echo/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n".to_vec();
    bytes.extend_from_slice(br#"{"data":{}"#);
    let answer = raw(addr, &bytes, true, POLL).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 4"),
        "no success for a truncated body: {text:?}"
    );
    let r = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_serves_json_and_text_streams() {
    let server = conformance().await;
    let addr = server.local_addr();
    let r = common::send(
        addr,
        Proto::H2,
        json_post(
            addr,
            Proto::H2,
            "/agents/echo/chat",
            &[],
            r#"{"data": {"b": 1, "a": 2}}"#,
        ),
    )
    .await;
    r.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"echo":{"b":1,"a":2}},"session_id":"default"}"#,
    );
    assert!(is_uuid4(r.header("x-request-id")));

    let s = open(
        addr,
        Proto::H2,
        json_post(
            addr,
            Proto::H2,
            "/agents/echo/chat",
            &[],
            r#"{"data": {"chunks": ["x", "y\nz"]}, "stream": "text"}"#,
        ),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.header("content-type"), "text/event-stream; charset=utf-8");
    assert_eq!(s.header("cache-control"), "no-cache");
    assert!(!s.headers.contains_key("connection"));
    let r = s.into_reply().await;
    assert_eq!(r.body, format!("data: x\n\ndata: y\ndata: z\n\n{DONE}"));
}
