//! `rayai::docs::router` on the example's axum ingress: `/api/v1/openapi.json` and Swagger UI at
//! `/api/v1/docs`, its assets served from the binary, behind the route prefix and `root_path`.

use http::{Method, StatusCode};
use rayai::HttpOptions;

#[path = "../common/docs_page.rs"]
mod docs_page;

use crate::common::{self, Proto};
use crate::{call, example, options, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_docs_page_loads_its_assets_and_document() {
    let server = example().await;
    let doc = docs_page::assert_docs_page_loads(
        server.local_addr(),
        "/api/v1/docs",
        "rayai http_features",
        "/api/v1/openapi.json",
    )
    .await;
    assert_eq!(doc["info"]["title"], "rayai http_features");
    assert!(doc["paths"].get("/items/{item_id}").is_some(), "{doc:#}");
    // The routes hang below the prefix: the document says where (FastAPI's `servers`).
    assert_eq!(doc["servers"], rayai::json!([{"url": "/api/v1"}]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_docs_page_honours_the_root_path() {
    let server = start(HttpOptions {
        root_path: "/edge".to_owned(),
        ..options()
    })
    .await;
    let doc = docs_page::assert_docs_page_loads(
        server.local_addr(),
        "/edge/api/v1/docs",
        "rayai http_features",
        "/edge/api/v1/openapi.json",
    )
    .await;
    assert_eq!(doc["servers"], rayai::json!([{"url": "/edge/api/v1"}]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_docs_routes_answer_as_fastapi() {
    let server = example().await;
    let addr = server.local_addr();
    // The trailing slash redirects to the page.
    let slash = common::get(addr, "/api/v1/docs/").await;
    assert_eq!(slash.status, StatusCode::TEMPORARY_REDIRECT, "{slash:?}");
    assert_eq!(slash.header("location"), "/api/v1/docs");
    // HEAD as GET, without a body; another method is a 405.
    let head = call(addr, Proto::H1, Method::HEAD, "/api/v1/openapi.json", &[]).await;
    assert_eq!(head.status, StatusCode::OK, "{head:?}");
    assert_eq!(head.header("content-type"), "application/json");
    assert!(head.body.is_empty());
    let post = call(addr, Proto::H1, Method::POST, "/api/v1/docs", &[]).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED, "{post:?}");
    // An asset that does not exist.
    let missing = common::get(addr, "/api/v1/docs/nope.js").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
    // The OAuth2 landing page of Swagger UI.
    let oauth = common::get(addr, "/api/v1/docs/oauth2-redirect").await;
    assert_eq!(oauth.status, StatusCode::OK, "{oauth:?}");
    assert!(oauth.header("content-type").starts_with("text/html"));
    server.shutdown().await;
}
