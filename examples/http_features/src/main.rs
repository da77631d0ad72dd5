//! Ray Serve's HTTP features, in rayai: handlers, route prefixes, an axum ingress with typed
//! routes, validation, streaming, CORS, bearer auth, OpenAPI, and a request timeout.
//!
//! ```text
//! cargo run -p http_features -- --port 8000
//! ```
//!
//! | route | what answers |
//! |---|---|
//! | `GET /` | the `Hello` handler: `hello` |
//! | `GET /api/v1/items/{item_id}` | `{"item_id": <u32>}`; a bad id is a 422 JSON error |
//! | `POST /api/v1/items/` | `{"created": <the JSON body>}`; a bad body is a 422 JSON error |
//! | `GET /api/v1/stream` | `chunk 0\n` .. `chunk 9\n`, each sent as produced |
//! | `GET /api/v1/secret` | `{"ok": true}` with `Authorization: Bearer $RAYAI_EXAMPLE_TOKEN` (default `secret`), else 401 |
//! | `GET /api/v1/openapi.json` | the OpenAPI document of the routes above |
//! | `GET /api/v1/docs` | Swagger UI for that document (its assets under `/api/v1/docs/`, served offline) |
//! | `GET /slow?ms=N` | sleeps N ms; the server's `request_timeout_s = 1` makes it a 408 past a second |
//! | `GET /ws/echo` (WebSocket) | each text or binary message answered with the same; a close answered with a close |
//!
//! The `/api/v1` app allows any origin (CORS, preflight answered).
//!
//! Declarative deploys (`rayai deploy FILE`, `PUT /api/serve/applications/` on the dashboard)
//! find the applications by the import paths `http_features:hello` (`/`), `http_features:api`
//! (`/api/v1`) and `http_features:slow` (`/slow`), or by their names as deployed here.

use clap::Parser;
use http_features::apps;
use rayai::HttpOptions;
use rayai::serve::ServeArgs;

// Memory from bursts of large bodies goes back to the system (see `rayai::alloc`).
#[global_allocator]
static ALLOCATOR: rayai::alloc::Allocator = rayai::alloc::Allocator;

/// The command line.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

#[tokio::main]
async fn main() -> rayai::Result<()> {
    // `serve::start` installs rayai's log subscriber: `RUST_LOG` (default `info`, one access log
    // line per request), `RAYAI_LOG_FORMAT=json`, and the dashboard's log view fed.
    let args = Args::parse();
    let token = std::env::var("RAYAI_EXAMPLE_TOKEN").unwrap_or_else(|_| "secret".to_owned());
    let options = args.serve.apply(HttpOptions {
        request_timeout_s: Some(1.0),
        // A fixture that test suites may start beside others: when the dashboard's port is
        // taken, serve without it (a warning) rather than refuse to start.
        dashboard_best_effort: true,
        // The other options from RAYAI_* variables (a pod sets its metrics port, its drain).
        ..HttpOptions::try_from_env()?
    });
    let server = rayai::serve::start(options).await?;
    for (app, _) in apps::apps(token.clone()) {
        let import_path = format!("http_features:{}", app.name());
        server.register_app(&import_path, move || app.clone());
    }
    for (app, prefix) in apps::apps(token) {
        server.deploy(app, prefix).await?;
    }
    println!("http_features serving on http://{}", server.local_addr());
    rayai::serve::shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}
