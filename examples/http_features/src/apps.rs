//! The applications of the http_features example.

use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::{any, get, post};
use rayai::handler::full;
use rayai::prelude::*;
use rayai::{BearerAuthLayer, Deployment, DeploymentConfig, Request, Response};
use tower_http::cors::CorsLayer;
use utoipa::OpenApi;

/// Answers `hello` at its route prefix.
#[deployment(num_cpus = 0.1, memory = "32MB", isolation = "shared")]
#[derive(Default)]
pub struct Hello;

impl Handler for Hello {
    async fn call(&self, _req: Request) -> Response {
        Response::new(full("hello"))
    }
}

/// Sleeps `?ms=N` milliseconds.
#[deployment(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
pub struct Slow;

impl Handler for Slow {
    async fn call(&self, req: Request) -> Response {
        let ms = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("ms="))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Response::new(full(format!("slept {ms} ms")))
    }
}

/// A FastAPI-style validation error: 422 with a JSON `detail`.
fn unprocessable(message: String) -> AxumResponse {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "detail": message })),
    )
        .into_response()
}

#[utoipa::path(get, path = "/items/{item_id}", params(("item_id" = u32, Path, description = "The item's id")),
    responses((status = 200, description = "The item"), (status = 422, description = "Not a u32")))]
async fn get_item(item_id: Result<Path<u32>, PathRejection>) -> AxumResponse {
    match item_id {
        Ok(Path(item_id)) => Json(json!({ "item_id": item_id })).into_response(),
        Err(rejection) => unprocessable(rejection.body_text()),
    }
}

#[utoipa::path(post, path = "/items/", request_body = Object,
    responses((status = 200, description = "The created item"), (status = 422, description = "Not JSON")))]
async fn create_item(body: Result<Json<Value>, JsonRejection>) -> AxumResponse {
    match body {
        Ok(Json(body)) => Json(json!({ "created": body })).into_response(),
        // A body over the server's limit keeps its 413; anything else is a validation error.
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({ "detail": rejection.body_text() })),
        )
            .into_response(),
        Err(rejection) => unprocessable(rejection.body_text()),
    }
}

#[utoipa::path(get, path = "/stream", responses((status = 200, description = "Ten chunks, as produced")))]
async fn stream() -> AxumResponse {
    let chunks = async_stream_chunks();
    axum::body::Body::from_stream(chunks).into_response()
}

/// `chunk 0\n` .. `chunk 9\n`, 50 ms apart.
fn async_stream_chunks()
-> impl rayai::stream::Stream<Item = Result<String, std::convert::Infallible>> {
    rayai::stream::stream! {
        for i in 0..10 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            yield Ok(format!("chunk {i}\n"));
        }
    }
}

#[utoipa::path(get, path = "/secret", security(("bearer" = [])),
    responses((status = 200, description = "Authorized"), (status = 401, description = "No or wrong token")))]
async fn secret() -> Json<Value> {
    Json(json!({ "ok": true }))
}

#[derive(OpenApi)]
#[openapi(
    paths(get_item, create_item, stream, secret),
    info(title = "rayai http_features", version = "1")
)]
struct ApiDoc;

/// The `/api/v1` ingress: one instance per replica.
pub fn api(token: &str) -> axum::Router {
    axum::Router::new()
        .route("/items/{item_id}", get(get_item))
        .route("/items/", post(create_item))
        .route("/stream", get(stream))
        .route(
            "/secret",
            get(secret).route_layer(BearerAuthLayer::new(token)),
        )
        // `/openapi.json` (the document) and `/docs` (Swagger UI, offline).
        .merge(rayai::docs::router(ApiDoc::openapi()))
}

/// The `/ws` ingress: `/echo` answers each text or binary message with the same, and a close
/// with a close. `any` takes HTTP/1.1's `GET` upgrade and HTTP/2's extended `CONNECT`.
pub fn websockets() -> axum::Router {
    axum::Router::new().route("/echo", any(ws_echo))
}

async fn ws_echo(upgrade: WebSocketUpgrade) -> AxumResponse {
    upgrade.on_upgrade(echo)
}

/// Echoes until the client closes or the connection drops.
async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        match message {
            Message::Text(_) | Message::Binary(_) => {
                if socket.send(message).await.is_err() {
                    break;
                }
            }
            // The socket answers pings, and a close with a close (sent as it reads on, after
            // which the stream ends).
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => {}
        }
    }
}

/// Every app of the example, with its route prefix.
pub fn apps(token: String) -> Vec<(App, &'static str)> {
    let ingress = Deployment::ingress(
        DeploymentConfig::new("api")
            .with_num_cpus(0.25)
            .with_memory_bytes(64 << 20)
            .with_num_replicas(2),
        move |_ctx| api(&token),
    );
    vec![
        (Hello::deployment(), "/"),
        (
            App::named("api")
                .deployment(ingress)
                .layer(CorsLayer::permissive()),
            "/api/v1",
        ),
        (App::named("slow").handler::<Slow>(), "/slow"),
        (
            App::named("ws").deployment(Deployment::ingress(
                DeploymentConfig::new("ws")
                    .with_num_cpus(0.1)
                    .with_memory_bytes(32 << 20),
                |_ctx| websockets(),
            )),
            "/ws",
        ),
    ]
}
