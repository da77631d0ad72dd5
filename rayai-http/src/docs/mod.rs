//! FastAPI's conveniences: an OpenAPI document and an interactive viewer (Swagger UI) for every
//! agent, at `{prefix}/agents/{name}/openapi.json` and `{prefix}/agents/{name}/docs`, as each
//! RayAI agent's FastAPI app serves them; and, with the `axum` feature, `router`, the same
//! two routes for an axum ingress and its utoipa document.
//!
//! The viewer's assets are inside the binary (Swagger UI, vendored at build time): the pages
//! work offline, under `{base}/docs/` (`swagger-ui.css`, `swagger-ui-bundle.js`, ...). Every link
//! of the page is an absolute path that includes the server's `root_path` and the route prefix,
//! so it works behind both.

use http::{Method, Response};
use rayai_core::DeploymentHandle;

use crate::body::Body;
use crate::error;

mod openapi;
mod swagger;

#[cfg(feature = "axum")]
mod axum_router;

#[cfg(feature = "axum")]
pub use axum_router::router;

pub(crate) use swagger::DocsRequest;

/// Answers a docs request to an agent: `mount` is where the agent's routes hang
/// (`{root_path}{route prefix}/agents/{name}`, no trailing slash), `query` the request's.
pub(crate) fn agent_docs(
    handle: &DeploymentHandle,
    request: DocsRequest<'_>,
    method: &Method,
    mount: &str,
    query: Option<&str>,
) -> Response<Body> {
    if !swagger::is_read(method) {
        return error::method_not_allowed(swagger::ALLOW);
    }
    let name = handle.name();
    let openapi_url = format!("{mount}/openapi.json");
    match request {
        DocsRequest::OpenApi => {
            // The document lists the chat path from the application's mount point, as RayAI's
            // `/agents/{name}/chat`; an agent mounted elsewhere lists its `/chat` from its own.
            let (server, chat_base) = match mount.strip_suffix(&format!("/agents/{name}")) {
                Some(server) => (server, format!("/agents/{name}")),
                None => (mount, String::new()),
            };
            let document = openapi::agent_document(name, &chat_base, handle.schema(), server);
            error::json_response(http::StatusCode::OK, &document)
        }
        other => swagger::answer(
            other,
            &format!("{name} Agent"),
            &openapi_url,
            &format!("{mount}/docs"),
            query,
        ),
    }
}
