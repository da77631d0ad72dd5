//! [`router`]: `/openapi.json` and `/docs` for an axum ingress.

use std::sync::Arc;

use axum::extract::{OriginalUri, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use rayai_core::handler::RootPath;

use super::swagger::{self, DocsRequest};

/// What the routes serve: the document and its title.
struct Docs {
    document: serde_json::Value,
    title: String,
}

/// `GET /openapi.json` (the document) and `GET /docs` (Swagger UI showing it, its assets under
/// `/docs/`), to [`merge`](axum::Router::merge) into an axum ingress: FastAPI's two routes for a
/// utoipa document.
///
/// The viewer's assets are inside the binary (it works offline), and its links are absolute
/// paths built from where the request arrived: the application's route prefix and the server's
/// `root_path` (rayai's [`RootPath`]) and any [`nest`](axum::Router::nest) above it, so the
/// page finds its document at `/api/v1/openapi.json` when the ingress is served at `/api/v1`.
/// A document without `servers` gets that mount point as its server when it has one (as FastAPI
/// adds its `root_path`), so that "Try it out" reaches the routes. `HEAD` is answered as `GET`;
/// another method is a `405`.
///
/// # Examples
///
/// ```
/// use axum::{Json, Router, routing::get};
/// use utoipa::OpenApi;
///
/// #[utoipa::path(get, path = "/hello", responses((status = 200, description = "A greeting")))]
/// async fn hello() -> Json<&'static str> {
///     Json("hello")
/// }
///
/// #[derive(OpenApi)]
/// #[openapi(paths(hello), info(title = "greeter", version = "1"))]
/// struct ApiDoc;
///
/// // Served at `/api` (`server.deploy(app, "/api")`): the viewer is at `/api/docs`.
/// let ingress: Router = Router::new()
///     .route("/hello", get(hello))
///     .merge(rayai_http::docs::router(ApiDoc::openapi()));
/// # let _ = ingress;
/// ```
pub fn router(openapi: utoipa::openapi::OpenApi) -> axum::Router {
    // A utoipa document is plain data: serializing it cannot fail.
    let document = serde_json::to_value(&openapi).unwrap_or_default();
    let docs = Arc::new(Docs {
        document,
        title: openapi.info.title.clone(),
    });
    axum::Router::new()
        .route("/openapi.json", get(document_route))
        .route(
            "/docs",
            get(|state, req| docs_route(state, req, Kind::Page)),
        )
        .route(
            "/docs/",
            get(|state, req| docs_route(state, req, Kind::Redirect)),
        )
        .route(
            "/docs/{file}",
            get(|state, req| docs_route(state, req, Kind::Asset)),
        )
        .with_state(docs)
}

async fn document_route(State(docs): State<Arc<Docs>>, req: Request) -> Response {
    let path = request_path(&req);
    let base = format!(
        "{}{}",
        root_path(&req),
        path.strip_suffix("/openapi.json").unwrap_or_default()
    );
    let mut document = docs.document.clone();
    if !base.is_empty()
        && let serde_json::Value::Object(fields) = &mut document
        && !fields.contains_key("servers")
    {
        fields.insert("servers".into(), serde_json::json!([{ "url": base }]));
    }
    let body = serde_json::to_vec(&document).unwrap_or_default();
    let mut resp = (StatusCode::OK, Bytes::from(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Where the server is mounted and the application's route prefix: rayai's [`RootPath`]
/// (none outside rayai), without a trailing slash.
fn root_path(req: &Request) -> &str {
    req.extensions()
        .get::<RootPath>()
        .map_or("", |root| root.0.trim_end_matches('/'))
}

/// The path below the application's prefix, before any `nest` took its part.
fn request_path(req: &Request) -> &str {
    req.extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().path(), |original| original.path())
}

/// The page, its redirect and its assets: paths come from the request as the client sent it.
async fn docs_route(State(docs): State<Arc<Docs>>, req: Request, kind: Kind) -> Response {
    let root = root_path(&req);
    let path = request_path(&req);
    let Some((base, request)) = split_docs_path(path, kind) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let base = format!("{root}{base}");
    swagger::answer(
        request,
        &docs.title,
        &format!("{base}/openapi.json"),
        &format!("{base}/docs"),
        req.uri().query(),
    )
    .map(axum::body::Body::new)
}

/// Which docs route answers: the page, its redirect, or an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Page,
    Redirect,
    Asset,
}

/// The path of a docs route split into the part before `/docs` and what it asks for.
fn split_docs_path(path: &str, kind: Kind) -> Option<(&str, DocsRequest<'_>)> {
    let base = match kind {
        Kind::Page => path.strip_suffix("/docs")?,
        Kind::Redirect => path.strip_suffix("/docs/")?,
        Kind::Asset => path.rsplit_once('/')?.0.strip_suffix("/docs")?,
    };
    Some((base, DocsRequest::of(&path[base.len()..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_paths_split_before_their_docs_segment() {
        assert_eq!(
            split_docs_path("/docs", Kind::Page),
            Some(("", DocsRequest::Page))
        );
        assert_eq!(
            split_docs_path("/v2/docs/", Kind::Redirect),
            Some(("/v2", DocsRequest::Redirect))
        );
        assert_eq!(
            split_docs_path("/docs/docs", Kind::Asset),
            Some(("", DocsRequest::Asset("docs")))
        );
        assert_eq!(
            split_docs_path("/a/docs/swagger-ui.css", Kind::Asset),
            Some(("/a", DocsRequest::Asset("swagger-ui.css")))
        );
        assert_eq!(split_docs_path("/a/b.css", Kind::Asset), None);
    }
}
