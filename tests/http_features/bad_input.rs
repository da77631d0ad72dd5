//! Bad input never reaches an app and never stops the server: dot segments and encoded slashes,
//! invalid UTF-8, a huge header, a body over the limit, headers that never end; and a handler
//! that panics is a 500 and is replaced.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use rayai::prelude::*;
use rayai::{HttpOptions, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, Proto, within};
use crate::handlers::Boom;
use crate::{RAW_WAIT, assert_json_detail, assert_still_serving, example, options, start};

/// Writes `bytes` on a new connection and reads until the server closes it. The server may hang
/// up before everything is written, or reset the connection: both end the exchange. Fails the
/// test when the whole exchange takes longer than `wait`.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    within(wait, "the server to answer and close", async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        // An error here is the server closing early: what it sent is still read below.
        let _ = tcp.write_all(bytes).await;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    })
    .await
}

/// The status code of a raw HTTP/1.1 response, `None` when the server sent nothing.
fn raw_status(response: &[u8]) -> Option<u16> {
    if response.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(response);
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .unwrap_or_else(|| panic!("not an HTTP/1.1 response: {text:?}"));
    Some(code.parse().expect("a numeric status"))
}

/// The body of a raw HTTP/1.1 response with a `content-length` (everything after the head).
fn raw_body(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response);
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// `GET path` as raw bytes, with `Connection: close`.
fn raw_get(path: &[u8]) -> Vec<u8> {
    let mut bytes = b"GET ".to_vec();
    bytes.extend_from_slice(path);
    bytes.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_encoded_slashes_are_400_and_never_escape_a_prefix() {
    let server = example().await;
    let addr = server.local_addr();
    for path in [
        "/api/v1/../slow",
        "/api/v1/%2e%2e/slow",
        "/api/v1/%2E%2E/slow",
        "/api/v1/.%2e/slow",
        "/api%2fv1/secret",
        "/api%2Fv1/secret",
        "/api/v1/..%2fslow",
        "/./",
        "/api/v1/./secret",
    ] {
        let response = raw_exchange(addr, &raw_get(path.as_bytes()), RAW_WAIT).await;
        assert_eq!(
            raw_status(&response),
            Some(400),
            "{path}: {}",
            String::from_utf8_lossy(&response)
        );
        let body = raw_body(&response);
        assert!(
            !body.contains("slept") && !body.contains("hello") && !body.contains("\"ok\""),
            "{path} reached an app: {body:?}"
        );
        let detail: Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(
            detail["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("Invalid path")),
            "{path}: {body}"
        );
    }
    assert_still_serving(addr).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_the_path_is_refused_and_the_server_keeps_serving() {
    let server = example().await;
    let addr = server.local_addr();
    for path in [
        &b"/\xff\xfe"[..],
        b"/api/v1/items/\xc3\x28",
        b"/slow\x80?ms=1",
    ] {
        let response = raw_exchange(addr, &raw_get(path), RAW_WAIT).await;
        let status = raw_status(&response);
        assert!(
            matches!(status, None | Some(400)),
            "{}: {}",
            String::from_utf8_lossy(path),
            String::from_utf8_lossy(&response)
        );
    }
    assert_still_serving(addr).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mebibyte_header_is_refused_without_a_hang() {
    let server = example().await;
    let addr = server.local_addr();
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 1 << 20));
    request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let response = raw_exchange(addr, &request, RAW_WAIT).await;
    let status = raw_status(&response);
    assert!(
        matches!(status, None | Some(400) | Some(431)),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_still_serving(addr).await;
    server.shutdown().await;
}

/// A server whose body limit is 1 KiB.
async fn small_body_limit() -> Server {
    start(HttpOptions {
        max_body_bytes: 1024,
        ..options()
    })
    .await
}

/// A JSON body of about `len` bytes.
fn json_of_len(len: usize) -> String {
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413() {
    let server = small_body_limit().await;
    let addr = server.local_addr();
    let fits = common::post(addr, "/api/v1/items/", &json_of_len(100)).await;
    assert_eq!(fits.status, StatusCode::OK, "{fits:?}");
    let reply = common::post(addr, "/api/v1/items/", &json_of_len(2048)).await;
    assert_json_detail(&reply, StatusCode::PAYLOAD_TOO_LARGE);
    assert_still_serving(addr).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_413() {
    let server = small_body_limit().await;
    let addr = server.local_addr();
    let body = json_of_len(4096);
    let chunks: Vec<Bytes> = body
        .as_bytes()
        .chunks(512)
        .map(Bytes::copy_from_slice)
        .collect();
    let req = common::request(addr, Proto::H1, Method::POST, "/api/v1/items/")
        .header("content-type", "application/json")
        .body(common::chunked(chunks))
        .expect("a valid request");
    let reply = common::send(addr, Proto::H1, req).await;
    assert_json_detail(&reply, StatusCode::PAYLOAD_TOO_LARGE);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_off_by_the_header_read_timeout() {
    let server = start(HttpOptions {
        header_read_timeout_s: 0.5,
        ..options()
    })
    .await;
    let addr = server.local_addr();
    // The request line and one header, then nothing: the server must hang up on its own.
    let began = std::time::Instant::now();
    let response = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n", RAW_WAIT).await;
    assert!(
        began.elapsed() >= Duration::from_millis(400),
        "closed by the header timeout, not at once: {:?}",
        began.elapsed()
    );
    assert!(
        matches!(raw_status(&response), None | Some(408) | Some(400)),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_still_serving(addr).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_500_and_its_replica_is_replaced() {
    let server = example().await;
    server
        .deploy(App::named("boom").handler::<Boom>(), "/boom")
        .await
        .expect("the boom app deploys");
    let addr = server.local_addr();
    let panicked = common::get(addr, "/boom/panic").await;
    assert_json_detail(&panicked, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(panicked.headers.contains_key("x-request-id"));
    let next = common::get(addr, "/boom/").await;
    assert_eq!(next.status, StatusCode::OK, "{next:?}");
    assert_eq!(next.body, "alive");
    let boom = server.deployment("boom").expect("deployed");
    common::eventually(RAW_WAIT, "a replacement replica", || {
        let boom = boom.clone();
        async move { boom.status().replicas_started >= 2 && boom.status().running_replicas == 1 }
    })
    .await;
    assert_still_serving(addr).await;
    server.shutdown().await;
}
