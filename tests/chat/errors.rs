//! Errors: an agent's error, a result that is no object and a panic are 500s with a detail; no
//! route is a 404 in text, a wrong sub-path a 404 in JSON, a wrong method a 405.

use http::StatusCode;
use rayai::HttpOptions;
use rayai::prelude::*;

use crate::common::{get, post, serve};
use crate::conformance;
use crate::fixtures::ReturnsList;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_error_is_500_with_its_message_as_detail() {
    let server = conformance().await;
    let r = post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"fail": "it \"broke\""}}"#,
    )
    .await;
    r.assert(
        StatusCode::INTERNAL_SERVER_ERROR,
        "application/json",
        r#"{"detail":"it \"broke\""}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_object_result_is_500_with_a_detail() {
    let server = serve(App::new().agent::<ReturnsList>(), HttpOptions::default()).await;
    let r = post(
        server.local_addr(),
        "/agents/returns_list/chat",
        r#"{"data": {}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.header("content-type"), "application/json");
    let body = r.json();
    let detail = body["detail"].as_str().expect("a string detail");
    assert!(detail.contains("object"), "detail: {detail:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_panic_is_500_and_the_agent_serves_the_next_request() {
    let server = conformance().await;
    let addr = server.local_addr();
    let r = post(addr, "/agents/panicky/chat", r#"{"data": {"panic": true}}"#).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = r.json();
    let detail = body["detail"].as_str().expect("a string detail");
    assert!(detail.contains("panicky was asked to panic"), "{detail:?}");

    let r = post(addr, "/agents/panicky/chat", r#"{"data": {}}"#).await;
    r.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"ok":true},"session_id":"default"}"#,
    );
    let r = post(addr, "/agents/echo/chat", r#"{"data": {"a": 1}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agent_is_404_text_naming_the_path() {
    let server = conformance().await;
    let addr = server.local_addr();
    for path in ["/agents/nope/chat", "/agents/echoX/chat"] {
        let r = post(addr, path, r#"{"data": {}}"#).await;
        r.assert(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            &format!("Path '{path}' not found. Ping http://.../-/routes for available routes."),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sub_path_of_a_known_agent_is_404_json() {
    let server = conformance().await;
    let addr = server.local_addr();
    for path in [
        "/agents/echo/chatx",
        "/agents/echo/chat/more",
        "/agents/echo",
    ] {
        let r = post(addr, path, r#"{"data": {}}"#).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.header("content-type"), "application/json", "{path}");
        assert_eq!(r.body, r#"{"detail":"Not Found"}"#, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_chat_is_405_with_allow_post() {
    let server = conformance().await;
    let r = get(server.local_addr(), "/agents/echo/chat").await;
    r.assert(
        StatusCode::METHOD_NOT_ALLOWED,
        "application/json",
        r#"{"detail":"Method Not Allowed"}"#,
    );
    assert_eq!(r.header("allow"), "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_slash_after_chat_is_fastapis_307_to_the_route_without_it() {
    let server = conformance().await;
    let addr = server.local_addr();
    let r = post(addr, "/agents/echo/chat/", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT, "{r:?}");
    assert_eq!(r.header("location"), "/agents/echo/chat");
    assert!(r.headers.contains_key("x-request-id"));
    assert!(r.body.is_empty(), "{r:?}");
    let r = post(addr, "/agents/echo/chat/?x=1", r#"{"data": {}}"#).await;
    assert_eq!(r.header("location"), "/agents/echo/chat?x=1");
    // Any other sub-path stays FastAPI's 404.
    let r = post(addr, "/agents/echo/chatter", r#"{"data": {}}"#).await;
    r.assert(
        StatusCode::NOT_FOUND,
        "application/json",
        r#"{"detail":"Not Found"}"#,
    );
}
