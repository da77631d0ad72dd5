//! The example's handler and axum ingress: `hello`, typed routes and their validation, streaming
//! (over HTTP/1.1 and h2c), bearer auth, OpenAPI, CORS.

use std::net::SocketAddr;

use http::{Method, StatusCode};
use rayai::prelude::*;

use crate::common::{self, Proto};
use crate::handlers::{GATE, Gated};
use crate::{RAW_WAIT, assert_json_detail, call, example, get_with, is_uuid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_root_is_hello_with_a_fresh_request_id() {
    let server = example().await;
    let reply = common::get(server.local_addr(), "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "hello");
    let id = reply.header("x-request-id");
    assert!(is_uuid(id), "x-request-id is a UUID: {id:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_item_id_parses_and_a_bad_id_is_422_json_not_500() {
    let server = example().await;
    let addr = server.local_addr();
    let reply = common::get(addr, "/api/v1/items/42").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json(), json!({ "item_id": 42 }));
    for bad in ["abc", "99999999999", "-1", "4.2"] {
        let reply = common::get(addr, &format!("/api/v1/items/{bad}")).await;
        assert_json_detail(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_item_echoes_the_json_and_malformed_json_is_422() {
    let server = example().await;
    let addr = server.local_addr();
    let reply = common::post(addr, "/api/v1/items/", r#"{"a":1}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json(), json!({ "created": { "a": 1 } }));
    for malformed in [r#"{"a":"#, "not json", ""] {
        let reply = common::post(addr, "/api/v1/items/", malformed).await;
        assert_json_detail(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    }
    server.shutdown().await;
}

/// Reads the example's stream frame by frame: ten chunks, the first on its own.
async fn assert_example_stream(addr: SocketAddr, proto: Proto) {
    let req = common::request(addr, proto, Method::GET, "/api/v1/stream")
        .body(common::full(""))
        .expect("a valid request");
    let mut stream = common::open(addr, proto, req).await;
    assert_eq!(stream.status, StatusCode::OK);
    let first = stream.frame(RAW_WAIT).await.expect("a first chunk");
    assert_eq!(first, "chunk 0\n", "the first chunk comes alone");
    let rest = stream.rest(RAW_WAIT).await;
    let mut body = String::from_utf8(first.to_vec()).expect("UTF-8");
    for frame in &rest {
        body.push_str(std::str::from_utf8(frame).expect("UTF-8"));
    }
    let expected: String = (0..10).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(body, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_stream_sends_ten_chunks_frame_by_frame() {
    let server = example().await;
    assert_example_stream(server.local_addr(), Proto::H1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_chunk_is_readable_before_the_last_is_produced() {
    let server = example().await;
    server
        .deploy(App::named("gated").handler::<Gated>(), "/gated")
        .await
        .expect("the gated app deploys");
    let addr = server.local_addr();
    let mut stream = common::open(
        addr,
        Proto::H1,
        common::request(addr, Proto::H1, Method::GET, "/gated")
            .body(common::full(""))
            .expect("a valid request"),
    )
    .await;
    assert_eq!(stream.status, StatusCode::OK);
    // The last chunk cannot exist yet: the gate is shut until the first has been read.
    let first = stream.frame(RAW_WAIT).await.expect("the first chunk");
    assert_eq!(first, "first\n");
    GATE.notify_one();
    let last = stream.frame(RAW_WAIT).await.expect("the last chunk");
    assert_eq!(last, "last\n");
    assert_eq!(stream.frame(RAW_WAIT).await, None, "then the body ends");
    drop(stream);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_serves_hello_and_the_stream() {
    let server = example().await;
    let addr = server.local_addr();
    let hello = call(addr, Proto::H2, Method::GET, "/", &[]).await;
    assert_eq!(hello.status, StatusCode::OK, "{hello:?}");
    assert_eq!(hello.body, "hello");
    assert!(hello.headers.contains_key("x-request-id"));
    let item = call(addr, Proto::H2, Method::GET, "/api/v1/items/5", &[]).await;
    assert_eq!(item.json(), json!({ "item_id": 5 }));
    assert_example_stream(addr, Proto::H2).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_needs_the_exact_bearer_token() {
    let server = example().await;
    let addr = server.local_addr();
    let missing = common::get(addr, "/api/v1/secret").await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{missing:?}");
    assert_eq!(missing.header("www-authenticate"), "Bearer");
    for wrong in [
        "Bearer secre",
        "Bearer secrets",
        "Basic secret",
        "secret",
        "Bearer ",
    ] {
        let reply = get_with(addr, "/api/v1/secret", &[("authorization", wrong)]).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{wrong:?}: {reply:?}"
        );
        assert_eq!(reply.header("www-authenticate"), "Bearer");
    }
    let ok = get_with(
        addr,
        "/api/v1/secret",
        &[("authorization", "Bearer secret")],
    )
    .await;
    ok.assert(StatusCode::OK, "application/json", r#"{"ok":true}"#);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_typed_routes() {
    let server = example().await;
    let reply = common::get(server.local_addr(), "/api/v1/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let doc = reply.json();
    let paths = doc["paths"].as_object().expect("a `paths` object");
    for path in ["/items/{item_id}", "/items/", "/stream", "/secret"] {
        assert!(paths.contains_key(path), "{path} in {paths:?}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_is_answered_and_simple_requests_carry_allow_origin() {
    let server = example().await;
    let addr = server.local_addr();
    let preflight = call(
        addr,
        Proto::H1,
        Method::OPTIONS,
        "/api/v1/items/1",
        &[
            ("origin", "http://example.com"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert!(preflight.status.is_success(), "{preflight:?}");
    assert_eq!(preflight.header("access-control-allow-origin"), "*");
    assert!(
        preflight
            .headers
            .contains_key("access-control-allow-methods"),
        "{preflight:?}"
    );
    let plain = get_with(addr, "/api/v1/items/1", &[("origin", "http://example.com")]).await;
    assert_eq!(plain.status, StatusCode::OK, "{plain:?}");
    assert_eq!(plain.header("access-control-allow-origin"), "*");
    assert_eq!(plain.json(), json!({ "item_id": 1 }));
    server.shutdown().await;
}
