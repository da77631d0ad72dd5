//! Handlers of these tests only: one that answers with the path it sees, one that panics, a
//! stream gated by the test, a stream that never ends.

use std::convert::Infallible;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use rayai::handler::{full, stream_body};
use rayai::prelude::*;
use rayai::{Request, Response, RootPath};
use tokio::sync::Notify;

/// Answers with what it saw: its `RootPath` extension and the path of `req.uri()`.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
pub(crate) struct PathEcho;

impl Handler for PathEcho {
    async fn call(&self, req: Request) -> Response {
        let root_path = req.extensions().get::<RootPath>().map(|r| r.0.clone());
        let body = json!({ "root_path": root_path, "path": req.uri().path() });
        Response::new(full(body.to_string()))
    }
}

/// Panics on `/panic`, answers `alive` otherwise.
#[deployment(num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
pub(crate) struct Boom;

impl Handler for Boom {
    async fn call(&self, req: Request) -> Response {
        if req.uri().path() == "/panic" {
            panic!("boom on purpose");
        }
        Response::new(full("alive"))
    }
}

/// Opened by the test when the gated stream may produce its last chunk.
pub(crate) static GATE: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Streams `first\n`, then waits for [`GATE`] before it produces `last\n`.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
pub(crate) struct Gated;

impl Handler for Gated {
    async fn call(&self, _req: Request) -> Response {
        let chunks = rayai::stream::stream! {
            yield Ok::<_, Infallible>(Bytes::from_static(b"first\n"));
            GATE.notified().await;
            yield Ok(Bytes::from_static(b"last\n"));
        };
        Response::new(stream_body(chunks))
    }
}

/// Streams `tick\n` every 50 ms, forever: only the request timeout ends it.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
pub(crate) struct Ticker;

impl Handler for Ticker {
    async fn call(&self, _req: Request) -> Response {
        let ticks = rayai::stream::stream! {
            loop {
                yield Ok::<_, Infallible>(Bytes::from_static(b"tick\n"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        Response::new(stream_body(ticks))
    }
}
