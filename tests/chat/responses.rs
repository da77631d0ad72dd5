//! What a successful exchange answers: the chat body in the client's key order, the request
//! context an agent sees, the proxy endpoints, and RayAI 0.1.3's query shape.

use http::StatusCode;
use rayai::HttpOptions;
use rayai::prelude::*;

use crate::common::{Proto, get, json_post, open, post, post_with, serve};
use crate::fixtures::WhoAmI;
use crate::{DONE, conformance, is_uuid4, sse_events};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_answers_result_then_session_id_in_client_key_order() {
    let server = conformance().await;
    let r = post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"z": 1, "a": [1, 2], "m": {"y": true, "b": null}, "s": "hé"}}"#,
    )
    .await;
    r.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"echo":{"z":1,"a":[1,2],"m":{"y":true,"b":null},"s":"hé"}},"session_id":"default"}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_returns_the_given_session_id() {
    let server = conformance().await;
    let r = post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"session_id": "abc-1", "data": {"k": "v"}, "extra": [1]}"#,
    )
    .await;
    r.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"echo":{"k":"v"}},"session_id":"abc-1"}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reads_request_and_session_ids_from_its_context() {
    let server = serve(App::new().agent::<WhoAmI>(), HttpOptions::default()).await;
    let addr = server.local_addr();
    let r = post_with(
        addr,
        "/agents/whoami/chat",
        &[("x-request-id", "req-42")],
        r#"{"data": {}, "session_id": "sess-7"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = r.json();
    assert_eq!(body["result"]["request_id"], "req-42");
    assert_eq!(body["result"]["request_id"], r.header("x-request-id"));
    assert_eq!(body["result"]["session_id"], "sess-7");
    assert_eq!(body["session_id"], "sess-7");

    // A generated id is the one the response carries; no session id is "default".
    let r = post(addr, "/agents/whoami/chat", r#"{"data": {}}"#).await;
    let body = r.json();
    assert_eq!(body["result"]["request_id"], r.header("x-request-id"));
    assert_eq!(body["result"]["session_id"], "default");

    // The stream sees the context too.
    let r = open(
        addr,
        Proto::H1,
        json_post(
            addr,
            Proto::H1,
            "/agents/whoami/chat",
            &[("x-request-id", "req-43")],
            r#"{"data": {}, "session_id": "sess-8", "stream": "text"}"#,
        ),
    )
    .await
    .into_reply()
    .await;
    let events = sse_events(&r.body);
    assert_eq!(events.len(), 2, "{:?}", r.body);
    assert_eq!(
        serde_json::from_str::<Value>(events[0]).unwrap(),
        json!({"request_id": "req-43", "session_id": "sess-8"})
    );
    assert_eq!(format!("data: {}\n\n", events[1]), DONE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_success() {
    let server = conformance().await;
    let r = get(server.local_addr(), "/-/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "success");
    assert!(r.header("content-type").starts_with("text/plain"));
    assert!(is_uuid4(r.header("x-request-id")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_maps_each_agent_prefix_to_its_name() {
    let server = conformance().await;
    let r = get(server.local_addr(), "/-/routes").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.json(),
        json!({
            "/agents/blocking": "blocking-service",
            "/agents/counter": "counter-service",
            "/agents/echo": "echo-service",
            "/agents/panicky": "panicky-service",
            "/agents/plain": "plain-service",
            "/agents/slow": "slow-service",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_shape_of_rayai_0_1_3_answers_response_and_session_id() {
    let server = conformance().await;
    let addr = server.local_addr();
    let r = post(addr, "/agents/echo/", r#"{"query": "hi"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.header("content-type"), "application/json");
    let body = r.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["response", "session_id"]);
    let response = body["response"].as_str().expect("response is a string");
    assert!(response.contains("hi"), "{response:?}");
    assert_eq!(body["session_id"], "default");

    let r = post(
        addr,
        "/agents/echo/",
        r#"{"query": "hi", "session_id": "s-3"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["session_id"], "s-3");
}
