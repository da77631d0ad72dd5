//! Validation of the request: a 422 with FastAPI's `detail` list for each way a body can be
//! wrong, and a 413 past the body limit.

use bytes::Bytes;
use http::{Method, StatusCode};
use rayai::prelude::*;
use rayai::{HttpOptions, Server};

use crate::common::{self, Proto, open, post, serve};
use crate::{agents, conformance};

/// POSTs `body` to echo and returns the `detail` list of its 422.
async fn validation_errors(server: &Server, body: &str) -> Vec<Value> {
    let r = post(server.local_addr(), "/agents/echo/chat", body).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {r:?}");
    assert_eq!(r.header("content-type"), "application/json");
    match r.json() {
        Value::Object(mut m) => match m.remove("detail") {
            Some(Value::Array(list)) => list,
            other => panic!("detail is not a list: {other:?}"),
        },
        other => panic!("not an object: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_422_json_invalid_at_the_byte_offset() {
    let server = conformance().await;
    // Python's json module: "Expecting value: line 1 column 16 (char 15)".
    let e = validation_errors(&server, r#"{"data": {"a": }}"#).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["type"], "json_invalid");
    assert_eq!(e[0]["loc"], json!(["body", 15]));
    assert_eq!(e[0]["msg"], "JSON decode error");
    // Truncated: the offset is the end of the body.
    let e = validation_errors(&server, r#"{"data": {"#).await;
    assert_eq!(e[0]["type"], "json_invalid");
    assert_eq!(e[0]["loc"], json!(["body", 10]));
    // Past the first line, the offset still counts from the start of the body ("line 2 column 7
    // (char 19)").
    let e = validation_errors(&server, "{\"data\": {},\n \"k\": x}").await;
    assert_eq!(e[0]["loc"], json!(["body", 19]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_body_is_422_missing_body() {
    let server = conformance().await;
    let e = validation_errors(&server, "").await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["type"], "missing");
    assert_eq!(e[0]["loc"], json!(["body"]));
    assert_eq!(e[0]["msg"], "Field required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_data_is_422_missing_data() {
    let server = conformance().await;
    let e = validation_errors(&server, r#"{"session_id": "s"}"#).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["type"], "missing");
    assert_eq!(e[0]["loc"], json!(["body", "data"]));
    assert_eq!(e[0]["msg"], "Field required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_not_an_object_is_422_dict_type() {
    let server = conformance().await;
    for data in ["[1]", "\"x\"", "1", "null"] {
        let e = validation_errors(&server, &format!(r#"{{"data": {data}}}"#)).await;
        assert_eq!(e.len(), 1, "{data}");
        assert_eq!(e[0]["type"], "dict_type", "{data}");
        assert_eq!(e[0]["loc"], json!(["body", "data"]), "{data}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stream_values_are_422_literal_error() {
    let server = conformance().await;
    for stream in ["true", "null", "\"TEXT\"", "1", "\"\""] {
        let e =
            validation_errors(&server, &format!(r#"{{"data": {{}}, "stream": {stream}}}"#)).await;
        assert_eq!(e.len(), 1, "{stream}");
        assert_eq!(e[0]["type"], "literal_error", "{stream}");
        assert_eq!(e[0]["loc"], json!(["body", "stream"]), "{stream}");
        assert_eq!(
            e[0]["msg"], "Input should be False, 'text' or 'events'",
            "{stream}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_session_id_is_422_string_type() {
    let server = conformance().await;
    let e = validation_errors(&server, r#"{"data": {}, "session_id": 5}"#).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["type"], "string_type");
    assert_eq!(e[0]["loc"], json!(["body", "session_id"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_zero_is_accepted_as_false() {
    let server = conformance().await;
    let r = post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"x": 0}, "stream": 0}"#,
    )
    .await;
    r.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"echo":{"x":0}},"session_id":"default"}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_error_is_listed_together() {
    let server = conformance().await;
    let e = validation_errors(&server, r#"{"data": [1], "session_id": 5, "stream": true}"#).await;
    let mut found: Vec<(String, Value)> = e
        .iter()
        .map(|x| (x["type"].as_str().unwrap().to_owned(), x["loc"].clone()))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        [
            ("dict_type".to_owned(), json!(["body", "data"])),
            ("literal_error".to_owned(), json!(["body", "stream"])),
            ("string_type".to_owned(), json!(["body", "session_id"])),
        ]
    );
}

/// Options with a body limit of 1 KiB.
fn small_limit() -> HttpOptions {
    HttpOptions {
        max_body_bytes: 1024,
        ..HttpOptions::default()
    }
}

/// A valid chat body of exactly `len` bytes.
fn body_of_len(len: usize) -> String {
    let skeleton = r#"{"data": {"pad": ""}}"#;
    let pad = "p".repeat(len - skeleton.len());
    format!(r#"{{"data": {{"pad": "{pad}"}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_413_with_content_length() {
    let server = serve(App::new().agent::<agents::Echo>(), small_limit()).await;
    let addr = server.local_addr();
    let r = post(addr, "/agents/echo/chat", &body_of_len(1024)).await;
    assert_eq!(r.status, StatusCode::OK, "a body at the limit is accepted");

    let r = post(addr, "/agents/echo/chat", &body_of_len(1025)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.header("content-type"), "application/json");
    assert!(r.json()["detail"].is_string(), "{:?}", r.body);
    assert!(r.headers.contains_key("x-request-id"));

    let r = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_the_limit_is_413() {
    let server = serve(App::new().agent::<agents::Echo>(), small_limit()).await;
    let addr = server.local_addr();
    let body = body_of_len(1500);
    let chunks = body
        .as_bytes()
        .chunks(500)
        .map(Bytes::copy_from_slice)
        .collect();
    let req = common::request(addr, Proto::H1, Method::POST, "/agents/echo/chat")
        .header("content-type", "application/json")
        .body(common::chunked(chunks))
        .unwrap();
    let r = open(addr, Proto::H1, req).await.into_reply().await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert_eq!(r.header("content-type"), "application/json");
    assert!(r.json()["detail"].is_string(), "{:?}", r.body);

    // A chunked body under the limit is read whole.
    let body = body_of_len(900);
    let chunks = body
        .as_bytes()
        .chunks(300)
        .map(Bytes::copy_from_slice)
        .collect();
    let req = common::request(addr, Proto::H1, Method::POST, "/agents/echo/chat")
        .header("content-type", "application/json")
        .body(common::chunked(chunks))
        .unwrap();
    let r = open(addr, Proto::H1, req).await.into_reply().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["result"]["echo"]["pad"].as_str().unwrap().len(),
        900 - 21
    );

    let r = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}
