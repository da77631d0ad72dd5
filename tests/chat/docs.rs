//! Each agent's OpenAPI document and Swagger UI, as RayAI's FastAPI app serves them:
//! `{prefix}/agents/{name}/openapi.json` and `{prefix}/agents/{name}/docs`.

use http::{Method, StatusCode};
use rayai::prelude::*;
use rayai::{Controller, HttpOptions, NodeResources, Server};

#[path = "../common/docs_page.rs"]
mod docs_page;

use crate::agents;
use crate::common::{self, Proto, serve};

/// The schema a `$ref` points at; panics when it does not resolve in `components.schemas`.
fn resolve<'a>(document: &'a Value, reference: &Value) -> &'a Value {
    let target = reference.as_str().expect("a `$ref` string");
    let name = target
        .strip_prefix("#/components/schemas/")
        .unwrap_or_else(|| panic!("{target} is not a component"));
    document["components"]["schemas"]
        .get(name)
        .unwrap_or_else(|| panic!("{target} does not resolve"))
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    out.push(v);
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The parts of the document that a FastAPI client reads, for `POST /agents/{name}/chat`:
/// returns the `ChatRequest` and `ChatResponse` schemas.
fn chat_schemas<'a>(doc: &'a Value, name: &str) -> (&'a Value, &'a Value) {
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], format!("{name} Agent"));
    assert!(doc["info"]["version"].is_string());
    let post = &doc["paths"][format!("/agents/{name}/chat")]["post"];
    let body = &post["requestBody"];
    assert_eq!(body["required"], true);
    let request = resolve(doc, &body["content"]["application/json"]["schema"]["$ref"]);
    let ok = &post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
    let response = resolve(doc, ok);
    let invalid = &post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"];
    let validation = resolve(doc, invalid);
    assert_eq!(validation["title"], "HTTPValidationError");
    let item = resolve(doc, &validation["properties"]["detail"]["items"]["$ref"]);
    assert_eq!(item["required"], json!(["loc", "msg", "type"]));
    // Every reference in the document resolves.
    let mut all = Vec::new();
    refs(doc, &mut all);
    for reference in all {
        resolve(doc, reference);
    }
    assert_eq!(request["title"], "ChatRequest");
    assert_eq!(request["required"], json!(["data"]));
    let fields = &request["properties"];
    assert_eq!(fields["session_id"]["type"], "string");
    assert_eq!(fields["session_id"]["default"], "default");
    assert_eq!(fields["stream"]["enum"], json!([false, "text", "events"]));
    assert_eq!(fields["stream"]["default"], false);
    assert_eq!(response["title"], "ChatResponse");
    assert_eq!(response["required"], json!(["result", "session_id"]));
    (request, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_agents_document_takes_any_object() {
    let server = crate::conformance().await;
    let reply = common::get(server.local_addr(), "/agents/echo/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.header("content-type"), "application/json");
    let doc = reply.json();
    let (request, response) = chat_schemas(&doc, "echo");
    assert_eq!(request["properties"]["data"]["type"], "object");
    assert_eq!(response["properties"]["result"]["type"], "object");
    // Mounted at `/` without a root path: no `servers`, as FastAPI.
    assert!(doc.get("servers").is_none(), "{doc:#}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_agents_document_carries_its_types() {
    let server = serve(
        App::new().agent::<agents::TypedEcho>(),
        HttpOptions::default(),
    )
    .await;
    let reply = common::get(server.local_addr(), "/agents/typed_echo/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let doc = reply.json();
    let (request, response) = chat_schemas(&doc, "typed_echo");
    let data = resolve(&doc, &request["properties"]["data"]["$ref"]);
    assert_eq!(data["title"], "TypedEchoInput");
    for field in ["text", "times", "author", "tags"] {
        assert!(
            data["properties"].get(field).is_some(),
            "{field} in {data:#}"
        );
    }
    assert_eq!(data["required"], json!(["text", "author", "tags"]));
    let author = resolve(&doc, &data["properties"]["author"]["$ref"]);
    assert_eq!(author["properties"]["name"]["type"], "string");
    let result = resolve(&doc, &response["properties"]["result"]["$ref"]);
    assert_eq!(result["title"], "TypedEchoOutput");
    // Input and output share `Author`: one schema.
    assert_eq!(
        result["properties"]["author"]["$ref"],
        data["properties"]["author"]["$ref"]
    );
    server.shutdown().await;
}

/// A server with `root_path` and the conformance agents at `prefix`.
async fn mounted(root_path: &str, prefix: &str) -> Server {
    let options = HttpOptions {
        host: "127.0.0.1".to_owned(),
        port: 0,
        dashboard_port: None,
        root_path: root_path.to_owned(),
        ..HttpOptions::default()
    };
    let node = Controller::new(NodeResources::new(64.0, 64 << 30));
    let server = Server::start_with(options, node)
        .await
        .expect("the server starts");
    server
        .deploy(agents::app(), prefix)
        .await
        .expect("the app deploys");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_loads_its_assets_and_the_agents_document() {
    let server = crate::conformance().await;
    let doc = docs_page::assert_docs_page_loads(
        server.local_addr(),
        "/agents/echo/docs",
        "echo Agent",
        "/agents/echo/openapi.json",
    )
    .await;
    chat_schemas(&doc, "echo");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_honours_the_root_path_and_the_route_prefix() {
    let server = mounted("/edge", "/team").await;
    let doc = docs_page::assert_docs_page_loads(
        server.local_addr(),
        "/edge/team/agents/echo/docs",
        "echo Agent",
        "/edge/team/agents/echo/openapi.json",
    )
    .await;
    chat_schemas(&doc, "echo");
    // The chat path starts where the application is mounted.
    assert_eq!(doc["servers"], json!([{"url": "/edge/team"}]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_paths_answer_as_fastapi() {
    let server = crate::conformance().await;
    let addr = server.local_addr();
    let call = |method: Method, path: &'static str| {
        let req = common::request(addr, Proto::H1, method, path)
            .body(common::full(""))
            .expect("a valid request");
        common::send(addr, Proto::H1, req)
    };
    // HEAD as GET, without a body.
    let head = call(Method::HEAD, "/agents/echo/openapi.json").await;
    assert_eq!(head.status, StatusCode::OK, "{head:?}");
    assert_eq!(head.header("content-type"), "application/json");
    assert!(head.body.is_empty(), "{head:?}");
    let head = call(Method::HEAD, "/agents/echo/docs").await;
    assert_eq!(head.status, StatusCode::OK, "{head:?}");
    assert!(head.body.is_empty(), "{head:?}");
    // Any other method: FastAPI's 405.
    for (method, path) in [
        (Method::POST, "/agents/echo/openapi.json"),
        (Method::PUT, "/agents/echo/docs"),
        (Method::DELETE, "/agents/echo/docs/swagger-ui.css"),
    ] {
        let reply = call(method, path).await;
        reply.assert(
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            r#"{"detail":"Method Not Allowed"}"#,
        );
        assert_eq!(reply.header("allow"), "GET, HEAD");
    }
    // The trailing slash redirects, as `/chat/` does.
    let slash = call(Method::GET, "/agents/echo/docs/").await;
    assert_eq!(slash.status, StatusCode::TEMPORARY_REDIRECT, "{slash:?}");
    assert_eq!(slash.header("location"), "/agents/echo/docs");
    // An asset that does not exist, and a path that is no docs path.
    for path in ["/agents/echo/docs/nope.js", "/agents/echo/openapi.yaml"] {
        call(Method::GET, path).await.assert(
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"detail":"Not Found"}"#,
        );
    }
    // The chat endpoint is unchanged.
    let get_chat = call(Method::GET, "/agents/echo/chat").await;
    assert_eq!(get_chat.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get_chat.header("allow"), "POST");
    server.shutdown().await;
}
